import Glibc
import ReplicaKit
import Testing

@Suite struct SystemErrorTests {
    @Test func readsLikeTheCallWithItsPathsAndErrno() {
        let error = SystemError("mount", ["/src", "/dst"], errno: .EPERM)
        #expect(error.description == #"mount("/src" → "/dst"): Operation not permitted (EPERM)"#)
    }

    @Test func appendsTheHint() {
        let error = SystemError("openat2", ["/root", "a"], errno: .ELOOP, hint: "too many links")
        #expect(error.description == #"openat2("/root" → "a"): Too many levels of symbolic links (ELOOP): too many links"#)
    }

    @Test func syscallHelperCarriesErrnoAndPath() {
        #expect(throws: SystemError("open", ["/nonexistent/replica"], errno: .ENOENT)) {
            try syscall("open", "/nonexistent/replica") { open("/nonexistent/replica", O_RDONLY) }
        }
    }

    @Test func unknownErrnoStillHasAName() {
        #expect(Errno(rawValue: 4000).name == "E4000")
    }
}
