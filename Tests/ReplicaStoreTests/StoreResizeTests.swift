import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// `replica-store resize`: the mounted image grows and shrinks online, keeping every byte, and a
/// size it cannot honour changes nothing.
@Suite(.requiresBtrfs) struct StoreResizeTests {
    private func fileSize(_ path: String) throws -> Int64 { try OwnedFD.open(path, O_RDONLY).status().size }

    private func checksum(_ path: String) throws -> String {
        try Command.check(["sha256sum", path]).split(separator: " ").first.map(String.init) ?? ""
    }

    @Test func growsThenShrinksOnlineKeepingTheData() throws {
        try withBtrfsImage(size: 256 << 20) { image in
            let data = "\(image.mountPoint)/data"
            _ = try Command.check(["dd", "if=/dev/urandom", "of=\(data)", "bs=1M", "count=64", "status=none"])
            let sum = try checksum(data)
            let totalBefore = try Store(path: image.mountPoint).space().total

            #expect(try image.resize(to: 768 << 20) == 256 << 20)
            #expect(try fileSize(image.image) == 768 << 20)
            let grown = try Store(path: image.mountPoint).space().total
            #expect(grown > totalBefore + (400 << 20), "the filesystem, not only the file, grew: \(totalBefore) → \(grown)")

            #expect(try image.resize(to: 384 << 20) == 768 << 20)
            #expect(try fileSize(image.image) == 384 << 20)
            #expect(try Store(path: image.mountPoint).space().total < grown)
            #expect(try checksum(data) == sum)
            #expect(try image.resize(to: 384 << 20) == 384 << 20)  // the same size: nothing to do
        }
    }

    @Test(arguments: [Int64(64 << 20), 100 << 20])
    func belowWhatIsUsedOrTheSmallestImageIsRefusedAndNothingChanges(size: Int64) throws {
        try withBtrfsImage(size: 256 << 20) { image in
            _ = try Command.check(["dd", "if=/dev/urandom", "of=\(image.mountPoint)/data", "bs=1M", "count=120", "status=none"])
            _ = try Command.check(["sync"])
            let total = try Store(path: image.mountPoint).space().total
            let error = #expect(throws: ReplicaError.self) { try image.resize(to: size) }
            #expect(error?.reason == .refused)
            #expect(error?.hint?.contains(size < LoopImage.minimumSize ? "too small" : "cannot shrink") == true)
            #expect(try fileSize(image.image) == 256 << 20)
            #expect(try Store(path: image.mountPoint).space().total == total)
        }
    }
}
