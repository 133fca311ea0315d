import CReplicaShim
import Glibc
import ReplicaKit

/// The embedded default store: a btrfs filesystem in a sparse image file, loop-mounted. No spare
/// disk needed; the same code path as a real btrfs once mounted.
public enum LoopImage {
    /// Smallest image `mkfs.btrfs` accepts with its default profiles, rounded up.
    public static let minimumSize: Int64 = 128 << 20

    /// Creates a sparse image of `size` bytes and formats it (`truncate -s SIZE IMAGE && mkfs.btrfs IMAGE`).
    /// Refuses to touch an existing file. On failure the half-made image is removed.
    public static func create(at image: String, size: Int64, label: String = "replica") throws(ReplicaError) {
        guard size >= minimumSize else {
            throw ReplicaError("create image", [image], errno: .EINVAL,
                             hint: "\(size) bytes is too small; btrfs needs at least \(minimumSize)")
        }
        let fd = try OwnedFD.open(image, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        do throws(ReplicaError) {
            _ = try syscall("ftruncate", image) { ftruncate(fd.rawValue, off_t(size)) }
            try Command.check(["mkfs.btrfs", "-q", "-L", label, image])
        } catch {
            unlink(image)
            throw error
        }
    }

    /// Refuses an image that is not a regular file holding a btrfs filesystem: its superblock, at
    /// 64 KiB, carries the magic `_BHRfS_M` at byte 0x40 (what `blkid` looks for).
    public static func check(_ image: String) throws(ReplicaError) {
        let fd = try OwnedFD.open(image, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        var st = stat()
        _ = try syscall("fstat", image) { fstat(fd.rawValue, &st) }
        guard FileStatus(st).kind == .regular else {
            throw ReplicaError("check image", [image], errno: .EINVAL, hint: "is not a regular file; move it aside", reason: .refused)
        }
        var magic = [UInt8](repeating: 0, count: 8)
        let read = magic.withUnsafeMutableBytes { pread(fd.rawValue, $0.baseAddress, 8, 0x10000 + 0x40) }
        guard read == 8, magic == Array("_BHRfS_M".utf8) else {
            throw ReplicaError("check image", [image], errno: .EINVAL,
                               hint: "holds no btrfs filesystem; move it aside (a new one is made in its place), or format it with mkfs.btrfs",
                               reason: .refused)
        }
    }

    /// Attaches the image to an autoclear loop device and mounts it on `mountPoint` (`mount -o loop`).
    /// The loop device goes away with the mount.
    public static func mount(_ image: String, at mountPoint: String) throws(ReplicaError) -> MountedImage {
        let imageFD = try OwnedFD.open(image, O_RDWR | O_NOFOLLOW)
        let target = try OwnedFD.open(mountPoint, replica_O_PATH | O_DIRECTORY | O_NOFOLLOW)
        // Two loop devices on one image would be two live filesystems writing one file.
        if let kernelPath = imageFD.kernelPath(), let busy = LoopDevice.devices(attachedTo: kernelPath).first {
            throw ReplicaError("mount image", [image], errno: .EBUSY,
                             hint: "already attached to \(busy) (mounted elsewhere, or still being released by a process "
                                 + "in another mount namespace); unmount it first")
        }
        let loop = try LoopDevice.attach(imageFD, imagePath: image)
        try FilesystemMount.mount(type: "btrfs", source: loop.path, onto: target, targetName: mountPoint)
        return MountedImage(image: image, mountPoint: mountPoint, device: loop.path, backingFile: imageFD.kernelPath() ?? image,
                            unmountsOnRelease: true)
    }
}

/// A mounted image; unmounting it (explicitly, or when the last reference goes away) also frees its
/// autoclear loop device.
public final class MountedImage {
    /// The image file, as given (or as the kernel names it, when found in mountinfo).
    public let image: String
    /// Where it is mounted.
    public let mountPoint: String
    /// The loop device (`/dev/loop0`).
    public let device: String
    /// The image as the kernel names it in `/sys/block/loopN/loop/backing_file`.
    let backingFile: String
    private var isMounted = true
    /// Whether this object made the mount and so unmounts it when it goes away (see `leaveMounted`).
    private var unmountsOnRelease: Bool

    init(image: String, mountPoint: String, device: String, backingFile: String, unmountsOnRelease: Bool) {
        self.unmountsOnRelease = unmountsOnRelease
        self.image = image
        self.mountPoint = mountPoint
        self.device = device
        self.backingFile = backingFile
    }

    /// Commits the filesystem, `umount MOUNTPOINT` (retrying while briefly busy), then waits (up to `timeout`) until the
    /// autoclear loop device has let go of the image. Until then the filesystem may still be alive in
    /// another mount namespace that copied it (where the host's root is not a shared mount, an
    /// unmount does not propagate), and mounting the image again would open a second, older
    /// instance of it. Unmounting twice is not an error.
    public func unmount(timeout: Duration = .seconds(10)) throws(ReplicaError) {
        guard isMounted else { return }
        if let top = try? OwnedFD.open(mountPoint, O_RDONLY | O_DIRECTORY) {
            try Btrfs.sync(top, path: mountPoint)
        }
        // A process that forked while holding a descriptor on the filesystem (close-on-exec only
        // acts at exec) keeps it busy for as long as it lives: retry until the deadline.
        let deadline = ContinuousClock.now + timeout
        while true {
            do throws(ReplicaError) {
                try FilesystemMount.unmount(mountPoint)
                break
            } catch where error.errno == .EBUSY && ContinuousClock.now < deadline {
                usleep(5_000)
            } catch {
                throw error
            }
        }
        isMounted = false
        while LoopDevice.backingFile(of: device) == backingFile {
            guard ContinuousClock.now < deadline else {
                throw ReplicaError("unmount", [mountPoint, device], errno: .EBUSY,
                                 hint: "unmounted here, but \(device) still holds \(image): a process in another mount "
                                     + "namespace keeps the filesystem; it is freed when that process exits")
            }
            usleep(5_000)
        }
    }

    /// The size `text` asks for: a new size (`8G`) or, with `+`, how much to add to the image's
    /// size now (`+2G`); a usage error for anything else.
    public func size(asked text: String) throws(ReplicaError) -> Int64 {
        let adding = text.hasPrefix("+")
        guard let amount = parseByteSize(adding ? String(text.dropFirst()) : text), amount <= UInt64(Int64.max) else {
            throw .usage("resize: \"\(text)\" is not a size; write e.g. 8G (the new size) or +2G (to add)")
        }
        guard adding else { return Int64(amount) }
        let (size, overflow) = try OwnedFD.open(backingFile, O_RDONLY | O_NOFOLLOW).status().size.addingReportingOverflow(Int64(amount))
        guard !overflow else { throw .usage("resize: \(text) is too large") }
        return size
    }

    /// Grows or shrinks the mounted store to `size` bytes, online: to grow, the image file
    /// (`truncate -s`), the loop device's capacity (`losetup -c`), then the filesystem
    /// (`btrfs filesystem resize max`); to shrink, the filesystem first (the kernel moves what lies
    /// beyond), then the device and file. Refused, changing nothing: below the smallest image btrfs
    /// takes, or below the bytes the filesystem uses. Returns the size before.
    @discardableResult
    public func resize(to size: Int64) throws(ReplicaError) -> Int64 {
        let file = try OwnedFD.open(backingFile, O_RDWR | O_NOFOLLOW)
        let before = try file.status().size
        guard size != before else { return before }
        guard size >= LoopImage.minimumSize else {
            throw ReplicaError("resize store", [image], errno: .EINVAL, hint: "\(size) bytes is too small; btrfs needs at least \(LoopImage.minimumSize)",
                               reason: .refused)
        }
        let top = try OwnedFD.open(mountPoint, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        if size < before {
            var available: UInt64 = 0, total: UInt64 = 0, flags: UInt64 = 0
            _ = try syscall("fstatfs", mountPoint) { replica_fstatfs_space(top.rawValue, &available, &total, &flags) }
            let used = Int64(total - available)
            guard size >= used else {
                throw ReplicaError("resize store", [image], errno: .ENOSPC, hint: "\(mountPoint) uses \(used >> 20) MiB; "
                                   + "it cannot shrink to \(size >> 20) MiB (delete snapshots first, or choose a larger size)", reason: .refused)
            }
            _ = try syscall("ioctl(BTRFS_IOC_RESIZE)", mountPoint) { replica_btrfs_resize(top.rawValue, "\(size)") }
        }
        _ = try syscall("ftruncate", backingFile) { ftruncate(file.rawValue, off_t(size)) }
        let loop = try OwnedFD.open(device, O_RDONLY)
        _ = try syscall("ioctl(LOOP_SET_CAPACITY)", device) { replica_loop_set_capacity(loop.rawValue) }
        if size > before {
            do throws(ReplicaError) {
                _ = try syscall("ioctl(BTRFS_IOC_RESIZE)", mountPoint) { replica_btrfs_resize(top.rawValue, "max") }
            } catch {
                // The filesystem kept its size: the file and device go back to theirs.
                _ = ftruncate(file.rawValue, off_t(before))
                _ = replica_loop_set_capacity(loop.rawValue)
                throw error
            }
        }
        return before
    }

    /// Leaves the image mounted when this object goes away: the mount now belongs to the system
    /// (`replica-store mount`, or a unit), to be unmounted later through `mounted(at:)`.
    public func leaveMounted() { unmountsOnRelease = false }

    /// The loop-mounted image at `mountPoint`, found in mountinfo and `/sys/block/loopN`, or nil
    /// when no loop device is mounted there. Unmounting it frees its autoclear loop device.
    public static func mounted(at mountPoint: String) throws(ReplicaError) -> MountedImage? {
        let mounts = try MountInfo.read()
        guard let entry = mounts.last(where: { $0.mountPoint == mountPoint }), entry.source.hasPrefix("/dev/loop"),
              let backingFile = LoopDevice.backingFile(of: entry.source) else { return nil }
        return MountedImage(image: backingFile, mountPoint: mountPoint, device: entry.source, backingFile: backingFile,
                            unmountsOnRelease: false)
    }

    deinit { if isMounted && unmountsOnRelease { try? FilesystemMount.unmount(mountPoint, detach: true) } }
}
