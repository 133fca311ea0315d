import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

@Suite(.requiresBtrfs) struct StateRollbackTests {
    static func at(_ minute: Int) -> UTCTimestamp { UTCTimestamp(year: 2026, month: 11, day: 22, hour: 5, minute: minute, second: 0)! }

    static func write(_ text: String, _ path: String) throws {
        try OwnedFD.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(text.utf8))
    }

    static func read(_ path: String) throws -> String {
        String(decoding: try OwnedFD.open(path, O_RDONLY).readAll(), as: UTF8.self)
    }

    /// A throwaway store (its path too) holding the subvolume `web`.
    static func withWeb(_ body: (_ store: borrowing Store, _ path: String) throws -> Void) throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("web")
            try body(store, image.mountPoint)
        }
    }

    @Test func theStateIsTheSnapshotsAndThePresentIsKept() throws {
        try Self.withWeb { store, path in
            try Self.write("1", "\(path)/web/counter")
            try store.snapshot("web", at: Self.at(1))
            try Self.write("2", "\(path)/web/counter")
            try store.snapshot("web", at: Self.at(2))
            try Self.write("3", "\(path)/web/counter")
            let before = try Btrfs.info(try store.directory("web"), path: "web").uuid

            let outcome = try StateRollback.rollback(["web"], to: Self.at(1), in: store, now: Self.at(3))
            #expect(outcome == [.init(subvolume: "web", restored: "web.20261122T050100Z", saved: "web.20261122T050300Z")])
            #expect(try Self.read("\(path)/web/counter") == "1")
            #expect(try Self.read("\(path)/snapshots/web/web.20261122T050300Z/counter") == "3")
            // A new subvolume, writable, with the one it replaced in its lineage: every snapshot,
            // older or newer than the rollback, is still ours, so retention keeps working on them.
            let after = try Btrfs.info(try store.directory("web"), path: "web")
            #expect(after.uuid != before && !after.isReadOnly)
            #expect(Btrfs.lineage(try store.directory("web")) == [before])
            try store.snapshot("web", at: Self.at(4))
            let inventory = try store.inventory(of: "web")
            #expect(inventory.foreign.isEmpty, "\(inventory.foreign)")
            #expect(inventory.snapshots.map(\.name.time) == [1, 2, 3, 4].map(Self.at))
            #expect(access("\(path)/\(StateRollback.stagingName("web"))", F_OK) == -1)

            // And it can be undone: back to the state saved at the rollback.
            _ = try StateRollback.rollback(["web"], to: Self.at(3), in: store, now: Self.at(5))
            #expect(try Self.read("\(path)/web/counter") == "3")
            #expect(Btrfs.lineage(try store.directory("web")) == [before, after.uuid])
            #expect(try store.inventory(of: "web").foreign.isEmpty)
        }
    }

    @Test func aSubvolumeInUseIsRefusedAndNothingChanges() throws {
        try Self.withWeb { store, path in
            try withTemporaryDirectory { dir in
                try Self.write("1", "\(path)/web/counter")
                try store.snapshot("web", at: Self.at(1))
                try Self.write("2", "\(path)/web/counter")
                // What systemd's BindPaths= does for a running service.
                try Command.check(["mount", "--bind", "\(path)/web", dir])
                defer { _ = try? Command.run(["umount", dir]) }

                #expect(try StateRollback.users(of: "web", in: store).contains { $0.mountPoint == dir })
                let error = #expect(throws: ReplicaError.self) {
                    try StateRollback.rollback(["web"], to: Self.at(1), in: store, now: Self.at(3))
                }
                #expect(error?.errno == .EBUSY && error?.hint?.contains("stop the service first") == true, "\(String(describing: error))")
                #expect(try Self.read("\(path)/web/counter") == "2")
                #expect(try store.snapshots(of: "web").count == 1)
            }
        }
    }

    @Test func aMissingSnapshotIsRefusedNamingTheNewest() throws {
        try Self.withWeb { store, _ in
            try store.snapshot("web", at: Self.at(1))
            let error = #expect(throws: ReplicaError.self) {
                try StateRollback.rollback(["web"], to: Self.at(9), in: store, now: Self.at(10))
            }
            #expect(error?.errno == .ENOENT && error?.hint?.contains("20261122T050100Z") == true, "\(String(describing: error))")
            #expect(try store.snapshots(of: "web").count == 1)
        }
    }

    @Test func aSnapshotRunInProgressIsWaitedForByNoOne() throws {
        try Self.withWeb { store, _ in
            try store.snapshot("web", at: Self.at(1))
            let held = try SubvolumeLock.acquire("web", in: store)
            let error = #expect(throws: ReplicaError.self) {
                try StateRollback.rollback(["web"], to: Self.at(1), in: store, now: Self.at(2))
            }
            #expect(error?.reason == .lockHeld)
            _ = held.subvolume
        }
    }

    @Test func aLeftoverOfAnInterruptedRollbackIsDiscardedAndTheStateKept() throws {
        try Self.withWeb { store, path in
            try Self.write("present", "\(path)/web/counter")
            try store.snapshot("web", at: Self.at(1))
            // Killed between making the copy and the exchange.
            try Btrfs.snapshot(try store.directory("snapshots/web/web.20261122T050100Z"), into: try store.directory("."),
                               named: StateRollback.stagingName("web"), readOnly: false, sourcePath: "", parentPath: path)
            try StateRollback.discardLeftovers("web", owner: nil, in: store)
            #expect(access("\(path)/\(StateRollback.stagingName("web"))", F_OK) == -1)
            #expect(try Self.read("\(path)/web/counter") == "present")
        }
    }
}
