import Glibc
import ReplicaKit
import ReplicaTestSupport
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

    /// A file of several read chunks comes back whole, byte for byte; one over the limit is refused.
    @Test func readAllReadsEveryChunkAndRefusesMoreThanTheLimit() throws {
        let bytes = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/big", O_WRONLY | O_CREAT, mode: 0o644).writeAll(bytes)
            #expect(try OwnedFD.open("\(dir)/big", O_RDONLY).readAll(name: "big") == bytes)
        }
        let file = try OwnedFD.open("/proc/self/status", O_RDONLY)
        let error = #expect(throws: ReplicaError.self) { try file.readAll(limit: 100, name: "/proc/self/status") }
        #expect(error?.errno == .E2BIG)
    }
}
