import CReplicaShim
import Glibc
import ReplicaKit

/// A loop device bound to an image file, attached with `LOOP_CONFIGURE` (`losetup -f --show IMAGE`).
/// With `autoclear` the kernel detaches it when its last user (a mount) goes away, so a crashed
/// process cannot leave it attached once the filesystem on it is unmounted.
public struct LoopDevice: ~Copyable {
    /// `/dev/loopN`.
    public let path: String
    /// An open descriptor of the device; closing it alone does not detach an autoclear device
    /// that is mounted.
    public let fd: OwnedFD

    /// Attaches `image` (an open read-write descriptor) to a free loop device.
    public static func attach(_ image: borrowing OwnedFD, imagePath: String, autoclear: Bool = true) throws(ReplicaError) -> LoopDevice {
        let control = try OwnedFD.open("/dev/loop-control", O_RDWR)
        // LOOP_CTL_GET_FREE then LOOP_CONFIGURE can race with another attacher: EBUSY means retry.
        for _ in 0..<32 {
            let number = try syscall("ioctl(LOOP_CTL_GET_FREE)") { replica_loop_get_free(control.rawValue) }
            let path = "/dev/loop\(number)"
            let device = try OwnedFD.open(path, O_RDWR)
            if replica_loop_configure(device.rawValue, image.rawValue, imagePath, autoclear ? 1 : 0, 0) == 0 {
                return LoopDevice(path: path, fd: device)
            }
            let errno = Errno.current
            if errno != .EBUSY { throw ReplicaError("ioctl(LOOP_CONFIGURE)", [imagePath, path], errno: errno, reason: .init(errno, fromCall: true)) }
        }
        throw ReplicaError("ioctl(LOOP_CONFIGURE)", [imagePath], errno: .EBUSY, hint: "no free loop device after 32 tries")
    }

    /// The loop devices attached to `backingFile` (as the kernel names it), like `losetup -j FILE`.
    public static func devices(attachedTo file: String) -> [String] {
        guard let sys = try? OwnedFD.open("/sys/block", O_RDONLY | O_DIRECTORY),
              let names = try? DirectoryEntries.names(in: sys) else { return [] }
        return names.filter { $0.hasPrefix("loop") && backingFile(of: "/dev/\($0)") == file }.sorted().map { "/dev/\($0)" }
    }

    /// The backing file of `/dev/loopN` as `losetup` shows it (`/sys/block/loopN/loop/backing_file`),
    /// or nil when the device is not attached.
    public static func backingFile(of path: String) -> String? {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return try? OwnedFD.open("/sys/block/\(name)/loop/backing_file", O_RDONLY).readLine(limit: 8192)
    }
}
