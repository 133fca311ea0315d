import Glibc
import Logging
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// Takes snapshots of `name` dated at `times` (their names carry the time; btrfs records now).
func takeSnapshots(_ store: borrowing Store, _ name: String, at times: [UTCTimestamp]) throws {
    for time in times { try store.snapshot(name, at: time) }
}

func names(in directory: String) throws -> [String] {
    try DirectoryEntries.names(in: OwnedFD.open(directory, O_RDONLY | O_DIRECTORY)).sorted()
}

@Suite(.requiresBtrfs) struct PruneTests {
    @Test func aRealPruneDeletesExactlyWhatTheDryRunShowed() throws {
        var rng = SeededRandom(seed: 77)
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            for round in 0..<12 {
                let name = "svc\(round)"
                try store.ensureSubvolume(name)
                let c = RetentionCase.random(&rng, btrbkGrammarOnly: false)
                var policy = c.policy
                if !policy.keepsAnything { policy.latest = 1 }
                try takeSnapshots(store, name, at: c.times)
                let plan = try store.planPrune(name, policy: policy, now: c.now)
                let shown = Set(plan.deletions.map(\.name.description))
                let before = Set(try names(in: "\(image.mountPoint)/snapshots/\(name)"))
                let outcome = try store.prune(plan)
                let after = Set(try names(in: "\(image.mountPoint)/snapshots/\(name)"))
                #expect(before.subtracting(after) == shown, "round \(round)")
                #expect(Set(outcome.deleted.map(\.name.description)) == shown)
                // And a second prune finds nothing more to delete.
                #expect(try store.planPrune(name, policy: policy, now: c.now).deletions.isEmpty)
            }
        }
    }

    @Test func foreignEntriesAreNeverDeleted() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            try store.ensureSubvolume("other")
            let old = (1...5).map { UTCTimestamp(secondsSinceEpoch: 1_700_000_000 + Int64($0) * 86_400) }
            try takeSnapshots(store, "svc", at: old)
            let dir = "\(image.mountPoint)/snapshots/svc"
            try Command.check(["btrfs", "subvolume", "snapshot", "\(image.mountPoint)/svc", "\(dir)/svc.20200101T000000Z"])
            try Command.check(["btrfs", "subvolume", "snapshot", "-r", "\(image.mountPoint)/other", "\(dir)/svc.20200102T000000Z"])
            try Command.check(["btrfs", "subvolume", "snapshot", "-r", "\(image.mountPoint)/svc", "\(dir)/hand-made"])
            mkdir("\(dir)/svc.20200103T000000Z", 0o700)
            let plan = try store.planPrune("svc", policy: try policy("preserve_min latest"), now: .now)
            #expect(plan.foreign.count == 4)
            _ = try store.prune(plan)
            #expect(try names(in: dir) == ["hand-made", "svc.20200101T000000Z", "svc.20200102T000000Z",
                                            "svc.20200103T000000Z", old.last.map { SnapshotName(subvolume: "svc", time: $0).description }!])
        }
    }

    @Test func aPolicyThatKeepsNothingIsRefusedAndNothingIsDeleted() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            try takeSnapshots(store, "svc", at: [UTCTimestamp(secondsSinceEpoch: 1_700_000_000), .now])
            let error = #expect(throws: ReplicaError.self) { _ = try store.planPrune("svc", policy: RetentionPolicy(), now: .now) }
            #expect(error?.hint?.contains("keeps nothing but the newest") == true)
            #expect(try store.snapshots(of: "svc").count == 2)
        }
    }

    @Test func nestedSubvolumesAreNeverSilentlyLeftOut() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            try Command.check(["btrfs", "subvolume", "create", "\(image.mountPoint)/svc/cache"])
            let error = #expect(throws: ReplicaError.self) { try store.snapshot("svc", at: .now) }
            #expect(error?.hint?.contains("nested subvolumes (cache)") == true, "\(String(describing: error))")
            #expect(try store.snapshots(of: "svc").isEmpty)
            let name = try store.snapshot("svc", at: .now, allowNested: true)
            #expect(try names(in: "\(image.mountPoint)/snapshots/svc/\(name)") == ["cache"])
        }
    }

    @Test func aDeletionChecksTheSnapshotIsStillTheOneListed() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            let time = UTCTimestamp(secondsSinceEpoch: 1_700_000_000)
            try store.snapshot("svc", at: time)
            let listed = try store.snapshots(of: "svc")[0]
            // Swapped for another read-only snapshot of the same source, under the same name.
            let path = "\(image.mountPoint)/snapshots/svc/\(listed.name)"
            try Command.check(["btrfs", "subvolume", "delete", path])
            try Command.check(["btrfs", "subvolume", "snapshot", "-r", "\(image.mountPoint)/svc", path])
            let error = #expect(throws: ReplicaError.self) { try store.delete(listed, of: "svc") }
            #expect(error?.errno == .ESTALE)
            #expect(try store.snapshots(of: "svc").count == 1, "the replacement is untouched")
        }
    }

    @Test func aFreeSpaceFloorDeletesTheOldestDeletableFirstAndNeverAFloor() throws {
        try withBtrfsImage(size: 512 << 20) { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            let day: Int64 = 86_400
            let start: Int64 = 1_790_000_000
            // Each snapshot holds its own 48 MiB file, deleted from the source afterwards, so deleting
            // the snapshot frees it.
            for i in 0..<6 {
                try store.root.writeFileAtomically("svc/blob", contents: [UInt8](repeating: UInt8(i), count: 48 << 20))
                try store.snapshot("svc", at: UTCTimestamp(secondsSinceEpoch: start + Int64(i) * day))
                unlink("\(image.mountPoint)/svc/blob")
            }
            let total = try store.space().total
            let available = try store.space().available
            var policy = try policy("preserve *d\nlatest 2")
            // Ask for about 100 MiB more than is free: two or three old snapshots must go.
            policy.minimumFree = .bytes(available + (100 << 20))
            #expect(available + (100 << 20) < total)
            let plan = try store.planPrune("svc", policy: policy, now: UTCTimestamp(secondsSinceEpoch: start + 6 * day))
            #expect(plan.deletions.isEmpty, "the calendar policy alone keeps all")
            let outcome = try store.prune(plan)
            let freeNow = try store.space().available
            #expect(outcome.spaceShortfall == nil, "the floor was met; deleted \(outcome.deletedForSpace.count), free \(available >> 20) → \(freeNow >> 20) MiB")
            let deleted = outcome.deletedForSpace.map(\.name.time.secondsSinceEpoch)
            #expect(deleted.count >= 2 && deleted.count <= 4, "\(deleted.count) deleted")
            #expect(deleted == (0..<deleted.count).map { start + Int64($0) * day }, "oldest first")
            #expect(try store.snapshots(of: "svc").count >= 2, "latest 2 is a floor")
        }
    }

    @Test func aFloorThatCannotBeMetIsRefusedUpFront() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            try store.snapshot("svc", at: .now)
            var policy = try policy("preserve 1d")
            policy.minimumFree = .bytes(1 << 40)
            let error = #expect(throws: ReplicaError.self) { _ = try store.planPrune("svc", policy: policy, now: .now) }
            #expect(error?.hint?.contains("min_free asks for") == true)
        }
    }
}

@Suite(.requiresBtrfs) struct LockTests {
    @Test func oneWriterPerSubvolumeAndTheContenderLearnsWho() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            let held = try SubvolumeLock.acquire("svc", in: store)
            // flock locks belong to open file descriptions, so a second open in this process contends too.
            let error = #expect(throws: ReplicaError.self) { _ = try SubvolumeLock.acquire("svc", in: store) }
            #expect(error?.reason == .lockHeld && error?.errno == .EWOULDBLOCK)
            #expect(error?.hint?.contains("process \(getpid())") == true, "\(String(describing: error))")
            let start = ContinuousClock.now
            #expect(throws: ReplicaError.self) { _ = try SubvolumeLock.acquire("svc", in: store, wait: .milliseconds(300)) }
            #expect(ContinuousClock.now - start >= .milliseconds(300))
            _ = held.subvolume
        }
    }

    @Test func aHolderKilledWithSIGKILLBlocksNobody() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            let lockFile = "\(image.mountPoint)/snapshots/svc.lock"
            _ = try SubvolumeLock.acquire("svc", in: store)  // makes the lock file
            // One process that takes the lock on fd 9, then becomes `sleep` still holding it.
            let holder = try Command.spawn(["sh", "-c", "exec 9<>'\(lockFile)'; flock 9; exec sleep 60"])
            for _ in 0..<100 where (try? SubvolumeLock.acquire("svc", in: store)) != nil { usleep(10_000) }
            #expect(throws: ReplicaError.self) { _ = try SubvolumeLock.acquire("svc", in: store) }
            kill(holder, SIGKILL)
            _ = try ExitStatus.wait(for: holder)
            _ = try SubvolumeLock.acquire("svc", in: store)
            #expect(access(lockFile, F_OK) == 0, "the lock file is never deleted")
        }
    }
}

@Suite struct MetricsTests {
    @Test func eachSubvolumeKeepsItsLinesAndAFailureKeepsTheLastSuccess() throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/metrics/replica.prom"
            let t1 = UTCTimestamp(secondsSinceEpoch: 1_790_000_000), t2 = UTCTimestamp(secondsSinceEpoch: 1_790_003_600)
            try MetricsTextfile.update([SnapshotMetrics(subvolume: "web", runAt: t1, succeeded: true, runSeconds: 0.5, snapshots: [])], at: path)
            try MetricsTextfile.update([SnapshotMetrics(subvolume: "db", runAt: t1, succeeded: true, runSeconds: 0.25, snapshots: [])], at: path)
            try MetricsTextfile.update([SnapshotMetrics(subvolume: "web", runAt: t2, succeeded: false, runSeconds: 1, snapshots: [])], at: path)
            let text = String(decoding: try OwnedFD.open(path, O_RDONLY).readAll(), as: UTF8.self)
            #expect(text.contains("replica_snapshot_last_success_timestamp_seconds{subvolume=\"web\"} 1790000000\n"))
            #expect(text.contains("replica_snapshot_last_run_timestamp_seconds{subvolume=\"web\"} 1790003600\n"))
            #expect(text.contains("replica_snapshot_last_run_success{subvolume=\"web\"} 0\n"))
            #expect(text.contains("replica_snapshot_last_success_timestamp_seconds{subvolume=\"db\"} 1790000000\n"))
            #expect(text.components(separatedBy: "# TYPE replica_snapshot_count gauge").count == 2, "one TYPE line per metric")
            #expect(try names(in: "\(dir)/metrics") == [".replica.prom.spare", "replica.prom"], "no temporary file left, one spare")
        }
    }

    /// The textfile is shared: lines another writer left, even with `}` before `{`, are dropped and
    /// the run goes on, keeping the other subvolumes' lines. Before, such a line stopped every run.
    @Test func linesItCannotReadAreDroppedNotFatal() throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/replica.prom"
            let left = "a}b{c\n}{\nreplica_snapshot_count} {subvolume=\"x\"} 3\nno braces 1\n\u{FF}{}\n"
                + "replica_snapshot_count{subvolume=\"db\"} 7\n"
                + "replica_snapshot_oldest_timestamp_seconds{subvolume=\"db\"} \t5 \r\n"  // CRLF, blanks around the value
                + "replica_snapshot_newest_timestamp_seconds{subvolume=\"db\"} \t\n"  // no value
                + "replica_snapshot_last_run_success{subvolume=\"db\"} 1"  // no newline at the end
            try OwnedFD.open(path, O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(left.utf8))
            let t1 = UTCTimestamp(secondsSinceEpoch: 1_790_000_000)
            try MetricsTextfile.update([SnapshotMetrics(subvolume: "web", runAt: t1, succeeded: true, runSeconds: 0.5, snapshots: [])], at: path)
            let text = String(decoding: try OwnedFD.open(path, O_RDONLY).readAll(), as: UTF8.self)
            #expect(text.contains("replica_snapshot_count{subvolume=\"db\"} 7\n"), "the other subvolume's line is kept")
            #expect(text.contains("replica_snapshot_count{subvolume=\"web\"} 0\n"))
            #expect(!text.contains("a}b{c") && !text.contains("no braces") && !text.contains("subvolume=\"x\""))
            #expect(text.contains("replica_snapshot_oldest_timestamp_seconds{subvolume=\"db\"} 5\n"), "the value without the blanks")
            #expect(text.contains("replica_snapshot_last_run_success{subvolume=\"db\"} 1\n"), "the last line, without its newline")
            #expect(!text.contains("replica_snapshot_newest_timestamp_seconds{subvolume=\"db\"}"), "a line without a value")
        }
    }
}

extension String {
    func components(separatedBy separator: String) -> [Substring] {
        var parts: [Substring] = []
        var rest = self[...]
        while let range = rest.firstRange(of: separator) {
            parts.append(rest[..<range.lowerBound])
            rest = rest[range.upperBound...]
        }
        return parts + [rest]
    }
}
