import CReplicaShim
import Glibc
import ReplicaKit

/// A btrfs filesystem holding one subvolume per service's state, and a snapshot directory per
/// subvolume under `snapshots/NAME/`. Opening it refuses anything that is not btrfs.
public struct Store: ~Copyable {
    /// Where the store is mounted.
    public let path: String
    /// The store's top directory, confined: every path below it is resolved inside it.
    public let root: RootDirectory

    /// Directory holding each subvolume's snapshot directory.
    public static let snapshotsDirectory = "snapshots"
    /// Directory holding machines' roots: `machines/NAME`, the subvolume `replica-machine@NAME`.
    public static let machinesDirectory = "machines"
    /// The name snapshot runs give machine NAME's root: the state of `replica-machine@NAME.service`.
    public static let machineSubvolumePrefix = SubvolumeName.machineRootPrefix

    /// Opens a mounted btrfs filesystem (or a directory on one) as a store.
    public init(path: String) throws(ReplicaError) {
        let root = try RootDirectory(path)
        let type = try root.fd.filesystemType()
        guard type == FilesystemMagic.btrfs else {
            throw ReplicaError("open store", [path], errno: .EINVAL,
                             hint: "not a btrfs filesystem (magic 0x\(String(UInt64(bitPattern: type), radix: 16))); "
                                 + "mount btrfs there, or use the embedded loop image")
        }
        self.path = path
        self.root = root
    }

    /// An open, readable descriptor for a directory inside the store (no symlinks allowed).
    public func directory(_ relativePath: String) throws(ReplicaError) -> OwnedFD {
        try root.openForReading(relativePath, [.noSymlinks, .directory])
    }

    /// Creates the subvolume `name` at the top of the store, unless it exists (then checks it is one).
    public func ensureSubvolume(_ name: String) throws(ReplicaError) {
        try Btrfs.validate(name: name, in: path)
        let top = try directory(".")
        if let existing = try? directory(name) {
            guard Btrfs.isSubvolume(existing) else {
                throw ReplicaError("ensure subvolume", [path, name], errno: .EEXIST,
                                 hint: "exists but is not a subvolume; move it aside or migrate it")
            }
            return
        }
        try Btrfs.createSubvolume(in: top, named: name, parentPath: path)
    }

    /// The service subvolumes at the top of the store, sorted: every subvolume but hidden ones
    /// (a migration or rollback under way) and the snapshot directory.
    public func subvolumes() throws(ReplicaError) -> [String] {
        let top = try directory(".")
        return try DirectoryEntries.names(in: top)
            .filter { !$0.hasPrefix(".") && $0 != Store.snapshotsDirectory }
            .filter { name in
                guard let fd = try? directory(name) else { return false }
                return Btrfs.isSubvolume(fd)
            }
            .sorted()
    }

    /// A staging subvolume a crashed migration or rollback left at the top of the store.
    public struct Leftover: Equatable, Sendable {
        /// Its name at the top of the store (starting with `.`).
        public var name: String
        /// Its recorded owner, when it had one yet.
        public var owner: StateOwner?
    }

    /// Hidden subvolumes at the top of the store (`.migrating-NAME`, `.rollback-NAME`): work a
    /// crash interrupted. The owner's next prepare or rollback removes them; until then they hold
    /// space, so `status` shows them.
    public func leftovers() throws(ReplicaError) -> [Leftover] {
        let top = try directory(".")
        return try DirectoryEntries.names(in: top)
            .filter { $0.hasPrefix(".") }
            .sorted()
            .compactMap { name in
                guard let fd = try? directory(name), Btrfs.isSubvolume(fd) else { return nil }
                return Leftover(name: name, owner: StateOwner.of(fd))
            }
    }
}
