import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

@Suite(.requiresBtrfs) struct StoreTests {
    @Test func snapshotsASubvolumeReadOnlyAndRecognizesItAsOurs() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            try store.ensureSubvolume("svc")  // idempotent
            let time = UTCTimestamp(year: 2026, month: 11, day: 22, hour: 2, minute: 30, second: 0)!
            let name = try store.snapshot("svc", at: time)
            #expect(name == "svc.20261122T023000Z")

            let snapshots = try store.snapshots(of: "svc")
            #expect(snapshots.map(\.name.description) == ["svc.20261122T023000Z"])
            let source = try Btrfs.info(try store.directory("svc"), path: "svc")
            #expect(snapshots[0].info.isReadOnly)
            #expect(snapshots[0].info.parentUUID == source.uuid)
            // The kernel agrees it is read-only.
            let snapshotDir = "\(image.mountPoint)/snapshots/svc/\(name)"
            #expect(mkdir("\(snapshotDir)/x", 0o700) == -1 && errno == EROFS)
        }
    }

    @Test func onlyOurSnapshotsAreListed() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            try store.ensureSubvolume("svc")
            try store.ensureSubvolume("other")
            let t = UTCTimestamp(secondsSinceEpoch: 1_790_000_000)
            try store.snapshot("svc", at: t)
            let dir = "\(image.mountPoint)/snapshots/svc"
            // Foreign objects that look like snapshots: a writable snapshot, one of another
            // subvolume, a plain directory and a name that does not parse.
            try Command.check(["btrfs", "subvolume", "snapshot", "\(image.mountPoint)/svc", "\(dir)/svc.20260101T000000Z"])
            try Command.check(["btrfs", "subvolume", "snapshot", "-r", "\(image.mountPoint)/other", "\(dir)/svc.20260102T000000Z"])
            mkdir("\(dir)/svc.20260103T000000Z", 0o700)
            try Command.check(["btrfs", "subvolume", "snapshot", "-r", "\(image.mountPoint)/svc", "\(dir)/svc.2026-01-04"])
            #expect(try store.snapshots(of: "svc").map(\.name.time) == [t])
        }
    }

    @Test func aDirectoryThatIsNotBtrfsIsRefusedAndNothingIsCreated() throws {
        try withTemporaryDirectory { dir in
            let error = #expect(throws: ReplicaError.self) { _ = try Store(path: dir) }
            #expect(error?.description.contains("not a btrfs filesystem") == true, "\(String(describing: error))")
            #expect(error?.description.contains("embedded loop image") == true)
            let fd = try OwnedFD.open(dir, O_RDONLY | O_DIRECTORY)
            #expect(try DirectoryEntries.names(in: fd).isEmpty)
        }
    }

    @Test(arguments: ["", ".", "..", "a/b", String(repeating: "n", count: 256)])
    func badSubvolumeNamesAreRefusedBeforeAnythingIsMade(name: String) throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            let error = #expect(throws: ReplicaError.self) { try store.ensureSubvolume(name) }
            #expect(error?.errno == .EINVAL)
            let top = try OwnedFD.open(image.mountPoint, O_RDONLY | O_DIRECTORY)
            #expect(try DirectoryEntries.names(in: top).isEmpty)
        }
    }

    @Test func aSymlinkedSubvolumePathIsRefused() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            symlink("/etc", "\(image.mountPoint)/svc")
            let error = #expect(throws: ReplicaError.self) { try store.snapshot("svc", at: .now) }
            #expect(error?.errno == .ELOOP)
        }
    }

    @Test func theImageFixtureLeavesNothingMountedOrAttached() throws {
        let before = try HostState.capture()
        var device = "", directory = ""
        try withBtrfsImage { image in
            device = image.device
            directory = String(image.mountPoint.dropLast("/mnt".count))
            #expect(LoopDevice.backingFile(of: image.device)?.hasSuffix("store.img") == true)
            let mounts = try MountInfo.read()
            #expect(mounts.contains { $0.mountPoint == image.mountPoint && $0.fsType == "btrfs" })
        }
        // An autoclear loop device detaches when its mount goes; give the kernel a moment.
        for _ in 0..<50 where LoopDevice.backingFile(of: device) != nil { usleep(20_000) }
        #expect(LoopDevice.backingFile(of: device) == nil)
        #expect(before.leftovers(in: try HostState.capture()) { $0.contains(directory) } == [])
        #expect(!directory.isEmpty && access(directory, F_OK) == -1)
    }

    @Test func tooSmallAnImageIsRefusedAndNoFileIsLeft() throws {
        try withTemporaryDirectory { dir in
            let error = #expect(throws: ReplicaError.self) { try LoopImage.create(at: "\(dir)/x.img", size: 1 << 20) }
            #expect(error?.hint?.contains("too small") == true)
            #expect(access("\(dir)/x.img", F_OK) == -1)
        }
    }
}

@Suite struct SnapshotNameTests {
    @Test func formatsAndParsesUTCNames() throws {
        let time = UTCTimestamp(year: 2026, month: 3, day: 29, hour: 1, minute: 30, second: 5)!
        let name = SnapshotName(subvolume: "web.data", time: time)
        #expect(name.description == "web.data.20260329T013005Z")
        #expect(SnapshotName(parsing: name.description) == name)
        #expect(time.description == "2026-03-29T01:30:05Z")
        // Every field zero-padded, the year to four digits: what the parsers take back.
        let early = UTCTimestamp(year: 999, month: 1, day: 2, hour: 3, minute: 4, second: 5)!
        #expect(early.description == "0999-01-02T03:04:05Z" && UTCTimestamp(iso8601: early.description) == early)
        #expect(SnapshotName(subvolume: "a", time: early).description == "a.09990102T030405Z")
        #expect(SnapshotName(parsing: "a.09990102T030405Z")?.time == early)
    }

    /// The calendar arithmetic agrees with glibc's `gmtime_r` and `timegm` from year 1 to 9999, on
    /// leap days and on the seconds around midnight, before 1970 too.
    @Test func utcFieldsAgreeWithGlibc() {
        var disagreements: [Int64] = []
        var seconds: Int64 = -62_135_596_800  // 0001-01-01T00:00:00Z
        while seconds < 253_402_300_800 {  // 10000-01-01
            for probe in [seconds, seconds + 86_399, seconds + 86_400] {
                var t = time_t(probe)
                var parts = tm()
                gmtime_r(&t, &parts)
                let time = UTCTimestamp(secondsSinceEpoch: probe), f = time.fields
                let expected = (Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                                Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
                if f != expected || UTCTimestamp(year: f.year, month: f.month, day: f.day, hour: f.hour, minute: f.minute,
                                                 second: f.second) != time || Int64(timegm(&parts)) != probe {
                    disagreements.append(probe)
                }
            }
            seconds += 86_400 * 37 + 3_601  // a day in each month and hour over the years
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(5))")
        #expect(UTCTimestamp(year: 2024, month: 2, day: 29, hour: 0, minute: 0, second: 0) != nil)
        #expect(UTCTimestamp(year: 2100, month: 2, day: 29, hour: 0, minute: 0, second: 0) == nil)
        #expect(UTCTimestamp(year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0) != nil)
        // The ends of the range name a time too (gmtime_r gives up there), without overflowing.
        #expect(UTCTimestamp(secondsSinceEpoch: .min).fields.second == 52 && UTCTimestamp(secondsSinceEpoch: .max).fields.second == 7)
    }

    /// `--now` takes exactly what `description` prints: the old parser kept only the digits, so
    /// `2026/11/22 02:30:00Z` and `20261122T023000Z------` passed.
    @Test func iso8601ParsesExactlyWhatDescriptionPrints() {
        let time = UTCTimestamp(year: 2026, month: 11, day: 22, hour: 2, minute: 30, second: 0)!
        #expect(UTCTimestamp(iso8601: time.description) == time)
        for bad in ["2026/11/22T02:30:00Z", "2026-11-22 02:30:00Z", "2026-11-22T02:30:00", "2026-02-30T00:00:00Z",
                    "2026-11-22T24:00:00Z", "20261122T023000Z----", "2026-11-22T02:30:0xZ", "", "２026-11-22T02:30:00Z"] {
            #expect(UTCTimestamp(iso8601: bad) == nil, "\(bad)")
        }
    }

    @Test(arguments: ["svc", "svc.20261122T023000", "svc.20261122 023000Z", "svc.20260230T000000Z",
                      "svc.20261122T246000Z", ".20261122T023000Z", "svc.2026112xT023000Z", "svc-20261122T023000Z"])
    func rejectsAnythingThatDoesNotParseFully(text: String) {
        #expect(SnapshotName(parsing: text) == nil)
    }
}

@Suite(.requiresBtrfs) struct EmbeddedStoreTests {
    @Test func makesTheImageOnFirstUseAndReusesItAfter() throws {
        try withTemporaryDirectory { dir in
            let image = "\(dir)/var/store.img", mountPoint = "\(dir)/run/store"
            let first = try EmbeddedStore.mount(image: image, at: mountPoint, size: 256 << 20)
            #expect(first.createdImage)
            try Store(path: mountPoint).ensureSubvolume("svc")
            try first.mounted.unmount()
            let second = try EmbeddedStore.mount(image: image, at: mountPoint, size: 256 << 20)
            #expect(!second.createdImage)
            #expect(try Btrfs.isSubvolume(Store(path: mountPoint).directory("svc")))
            try second.mounted.unmount()
        }
    }

    @Test func aBusyMountPointIsRefusedAndLeftAlone() throws {
        try withBtrfsImage { busy in
            try withTemporaryDirectory { dir in
                let error = #expect(throws: ReplicaError.self) {
                    _ = try EmbeddedStore.mount(image: "\(dir)/store.img", at: busy.mountPoint, size: 256 << 20)
                }
                #expect(error?.errno == .EBUSY)
                #expect(error?.hint?.contains("umount \(busy.mountPoint)") == true)
                #expect(access("\(dir)/store.img", F_OK) == -1, "no image may be made when refusing")
                let mounts = try MountInfo.read().filter { $0.mountPoint == busy.mountPoint }
                #expect(mounts.count == 1)
            }
        }
    }
}

@Suite(.requiresBtrfs) struct LoopImageTests {
    @Test func anImageStillAttachedIsNotMountedTwice() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let error = #expect(throws: ReplicaError.self) { _ = try LoopImage.mount(image.image, at: dir) }
                #expect(error?.errno == .EBUSY && error?.hint?.contains("already attached to \(image.device)") == true,
                        "\(String(describing: error))")
                let mounts = try MountInfo.read().filter { $0.mountPoint == dir }
                #expect(mounts.isEmpty)
            }
        }
    }
}

@Suite(.requiresBtrfs) struct PublishTests {
    /// A fork's systemd fsyncs `/etc/machine-id` early in its first boot, and while the rename that
    /// named the fork is uncommitted btrfs makes that fsync a whole commit, which the boot waits for.
    /// So `publish` starts the rename's commit itself: the top-level tree's generation (which a
    /// commit that changed it sets) passes the one its sync made, with no one else syncing. The
    /// control is the same steps by hand without that: the rename stays uncommitted, as btrfs
    /// commits on its own only every 30 s.
    @Test func publishCommitsTheNewNameWithoutWaitingForIt() throws {
        try withBtrfsImage { image in
            let path = image.mountPoint
            let top = try OwnedFD.open(path, O_RDONLY | O_DIRECTORY)
            func generation() throws -> UInt64 { try Btrfs.info(OwnedFD.open(path, O_RDONLY | O_DIRECTORY), path: path).generation }
            func changes(from before: UInt64, within seconds: Int) throws -> Bool {
                let deadline = ContinuousClock.now + .seconds(seconds)
                while ContinuousClock.now < deadline {
                    if try generation() != before { return true }
                    usleep(10_000)
                }
                return false
            }

            try Btrfs.createSubvolume(in: top, named: ".staging-a", parentPath: path)
            #expect(replica_syncfs(top.rawValue) == 0)
            let beforeRename = try generation()
            #expect(replica_renameat2(top.rawValue, ".staging-a", top.rawValue, "a", replica_RENAME_NOREPLACE) == 0)
            #expect(try !changes(from: beforeRename, within: 2), "nothing else commits this store")

            try Btrfs.sync(top, path: path)
            let committed = try generation()
            try Btrfs.publish("b", staging: ".staging-b", in: top, path: path) { _ in }
            // Its own sync made one commit; the started one makes the second.
            #expect(try changes(from: committed + 1, within: 5))
            #expect(try generation() >= committed + 2)
            #expect(try Btrfs.isSubvolume(OwnedFD.open("\(path)/b", O_RDONLY | O_DIRECTORY)))
        }
    }
}
