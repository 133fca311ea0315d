import Glibc
import ReplicaKit
import Testing

@Suite struct ReplicaErrorTests {
    @Test func readsLikeTheCallWithItsPathsAndErrno() {
        let error = ReplicaError("mount", ["/src", "/dst"], errno: .EPERM)
        #expect(error.description == #"mount("/src" → "/dst"): Operation not permitted (EPERM)"#)
    }

    @Test func appendsTheHint() {
        let error = ReplicaError("openat2", ["/root", "a"], errno: .ELOOP, hint: "too many links")
        #expect(error.description == #"openat2("/root" → "a"): Too many levels of symbolic links (ELOOP): too many links"#)
    }

    @Test func syscallHelperCarriesErrnoAndPath() {
        #expect(throws: ReplicaError("open", ["/nonexistent/replica"], errno: .ENOENT)) {
            try syscall("open", "/nonexistent/replica") { open("/nonexistent/replica", O_RDONLY) }
        }
    }

    /// Callers switch on the reason, not errno: a kernel's EINVAL is a failed call, ours is a rule.
    @Test func theReasonSaysWhatACallerDoes() {
        let kernel = #expect(throws: ReplicaError.self) { try syscall("lseek", "-1") { lseek(-1, 0, 99) } }
        #expect(kernel?.errno == .EBADF && kernel?.reason == .system)
        let invalid = #expect(throws: ReplicaError.self) { try syscall("mkdir", "") { mkdir("", 0o755) } }
        #expect(invalid?.reason == .notFound)
        #expect(ReplicaError("sandbox plan", ["x"], errno: .EINVAL, hint: "a target is absolute").reason == .refused)
        #expect(ReplicaError.Reason(.EINVAL, fromCall: true) == .system)
        #expect(ReplicaError.Reason(.EEXIST, fromCall: true) == .exists)
        #expect(ReplicaError.Reason(.ELOOP, fromCall: true) == .refused, "symlinks are refused by the flags we pass")
        #expect(ReplicaError.Reason(.ENOSPC) == .noSpace && ReplicaError.Reason(.EBUSY) == .busy)
        #expect(ReplicaError("lock", errno: .EWOULDBLOCK, reason: .lockHeld).reason == .lockHeld)
        #expect(ReplicaError.Reason(.EWOULDBLOCK) == .system, "EAGAIN is not a lock unless a lock says so")
    }

    @Test func theKernelsOrLibrarysWordsComeAfterErrno() {
        let error = ReplicaError("add route", ["0.0.0.0/0"], errno: .EINVAL, detail: "kernel says \"Nexthop has invalid gateway\"")
        #expect(error.description == #"add route("0.0.0.0/0"): Invalid argument (EINVAL): kernel says "Nexthop has invalid gateway""#)
    }

    @Test func unknownErrnoStillHasAName() {
        #expect(Errno(rawValue: 4000).name == "E4000")
    }
}
