import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// `replica-store prepare`, what replica-store.service runs before run-replica-store.mount mounts
/// the image: it makes a btrfs image and mounts nothing, and refuses an image that is not btrfs.
@Suite(.requiresBtrfs) struct StorePrepareTests {
    static func store(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-store")] + arguments)
    }

    @Test func makesABtrfsImageMountingNothingAndRefusesOneThatIsNot() throws {
        try withTemporaryDirectory { dir in
            let image = "\(dir)/state/store.img"
            let mountsBefore = try MountInfo.read().count
            let made = try Self.store(["prepare", "--image", image])
            #expect(made.status == .exited(0) && made.output.contains("made"), "\(made.output)")
            #expect(try Command.check(["blkid", "-o", "value", "-s", "TYPE", image]) == "btrfs\n")
            #expect(try MountInfo.read().count == mountsBefore, "prepare mounted something")
            let again = try Self.store(["prepare", "--image", image, "--json"])
            #expect(try JSON.parse(again.output)["created"] == .bool(false), "\(again.output)")

            // What run-replica-store.mount runs (mount WHAT WHERE -t TYPE -o OPTIONS): the tools
            // find that store as their own (status, resize), and it goes with its loop device.
            let mountPoint = "\(dir)/store"
            _ = try Command.check(["mkdir", mountPoint])
            _ = try Command.check(["mount", image, mountPoint, "-t", "btrfs", "-o", "loop,nodev,nosuid"])
            var mounted = true
            defer { if mounted { _ = try? Command.run(["umount", mountPoint]) } }
            let status = try Self.store(["status", "--image", image, "--mount-point", mountPoint, "--json"])
            #expect(status.status == .exited(0) && status.output.contains("/dev/loop"), "\(status.output)")
            #expect(try Self.store(["resize", "--image", image, "--mount-point", mountPoint, "+64M"]).status == .exited(0))
            let device = try #require(try MountedImage.mounted(at: mountPoint)).device
            #expect(try Self.store(["unmount", "--image", image, "--mount-point", mountPoint]).status == .exited(0))
            mounted = false
            #expect(try Command.run(["losetup", device]).status != .exited(0), "\(device) still attached")

            // Not btrfs: refused by prepare and by mount alike, the file left as it was.
            let junk = "\(dir)/junk.img"
            _ = try Command.check(["dd", "if=/dev/urandom", "of=\(junk)", "bs=1M", "count=2", "status=none"])
            let sum = try Command.check(["sha256sum", junk])
            for action in ["prepare", "mount"] {
                let refused = try Self.store([action, "--image", junk, "--mount-point", "\(dir)/mnt"])
                #expect(refused.status == .exited(1) && refused.output.contains("holds no btrfs filesystem"), "\(action): \(refused.output)")
            }
            #expect(try Command.check(["sha256sum", junk]) == sum)
            #expect(try MountInfo.read().count == mountsBefore)
            _ = try Command.check(["mkdir", "\(dir)/folder.img"])
            let folder = try Self.store(["prepare", "--image", "\(dir)/folder.img"])
            #expect(folder.status == .exited(1) && folder.output.contains("is not a regular file"), "\(folder.output)")
        }
    }
}
