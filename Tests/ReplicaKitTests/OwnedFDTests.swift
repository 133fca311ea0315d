import Glibc
import ReplicaKit
import Testing

@Suite struct OwnedFDTests {
    @Test func closesWhenTheOwnerGoesAway() throws {
        var raw: Int32 = -1
        do {
            let fd = try OwnedFD.open("/dev/null", O_RDONLY)
            raw = fd.rawValue
            #expect(fcntl(raw, F_GETFD) != -1)
        }
        #expect(fcntl(raw, F_GETFD) == -1 && errno == EBADF)
    }

    @Test func releaseGivesUpOwnershipWithoutClosing() throws {
        let raw = try OwnedFD.open("/dev/null", O_RDONLY).release()
        #expect(fcntl(raw, F_GETFD) != -1)
        #expect(close(raw) == 0)
    }

    @Test func opensWithCloseOnExec() throws {
        let fd = try OwnedFD.open("/dev/null", O_RDONLY)
        #expect(fcntl(fd.rawValue, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func reopenTurnsAPathDescriptorIntoAReadableOne() throws {
        let root = try RootDirectory("/proc/self")
        let path = try root.open("status", .regularFile)
        let readable = try path.reopen(O_RDONLY)
        let text = String(decoding: try readable.readAll(), as: UTF8.self)
        #expect(text.hasPrefix("Name:"))
    }
}
