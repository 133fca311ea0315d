import Glibc
import ReplicaKit

/// The embedded default store: one sparse btrfs image file, loop-mounted where Replica expects its
/// store. Nothing but a file is needed, so a demo or a small host runs without a spare disk.
public enum EmbeddedStore {
    /// `/var/lib/replica/store.img`.
    public static let defaultImage = "/var/lib/replica/store.img"
    /// `/run/replica/store`, where services expect their store.
    public static let defaultMountPoint = "/run/replica/store"
    /// Sparse: only what is written takes space on the host.
    public static let defaultSize: Int64 = 2 << 30

    /// What `mount(image:at:size:)` did.
    public struct Opened {
        /// The mounted image; it stays mounted when `leaveMounted()` is called on it.
        public let mounted: MountedImage
        /// True when the image did not exist and was made and formatted now.
        public let createdImage: Bool
    }

    /// Creates the image (and its directory) when missing, mounting nothing: what
    /// `replica-store.service` does before `run-replica-store.mount` mounts it (systemd makes the
    /// mount point). An existing image must be a btrfs filesystem (`LoopImage.check`). Returns
    /// whether it was made.
    @discardableResult
    public static func prepare(image: String = defaultImage, size: Int64 = defaultSize) throws(ReplicaError) -> Bool {
        try createDirectories(splitPath(image).directory, mode: 0o700)
        guard access(image, F_OK) == 0 else {
            try LoopImage.create(at: image, size: size)
            return true
        }
        try LoopImage.check(image)
        return false
    }

    /// Creates the image (and its directory) when missing, makes the mount point, and mounts it.
    /// Refuses a mount point that already has something mounted on it.
    public static func mount(
        image: String = defaultImage, at mountPoint: String = defaultMountPoint, size: Int64 = defaultSize
    ) throws(ReplicaError) -> Opened {
        for directory in [splitPath(image).directory, mountPoint] {
            try createDirectories(directory, mode: 0o700)
        }
        let mounts = try MountInfo.read()
        if let existing = mounts.last(where: { $0.mountPoint == mountPoint }) {
            throw ReplicaError("mount store", [image, mountPoint], errno: .EBUSY,
                             hint: "\(existing.fsType) from \(existing.source) is already mounted there; "
                                 + "unmount it (umount \(mountPoint)) or choose another mount point")
        }
        let created = access(image, F_OK) != 0
        if created { try LoopImage.create(at: image, size: size) } else { try LoopImage.check(image) }
        return Opened(mounted: try LoopImage.mount(image, at: mountPoint), createdImage: created)
    }

}
