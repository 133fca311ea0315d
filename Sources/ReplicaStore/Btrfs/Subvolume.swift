import CBtrfsUtil
import CReplicaShim
import Glibc
import ReplicaKit

/// A point in time as btrfs records it (`struct timespec`, UTC).
public struct BtrfsTime: Equatable, Comparable, Sendable {
    /// Seconds since the Unix epoch.
    public var seconds: Int64
    /// Nanoseconds within the second.
    public var nanoseconds: Int64
    public static func < (a: BtrfsTime, b: BtrfsTime) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// What `btrfs subvolume show` prints about a subvolume, from `btrfs_util_subvolume_info_fd`.
public struct SubvolumeInfo: Equatable, Sendable {
    /// The subvolume id (`btrfs subvolume show`'s "Subvolume ID").
    public var id: UInt64
    /// The subvolume containing this one (its tree parent), 0 for the top level.
    public var parentID: UInt64
    /// Its uuid, as `btrfs` prints it.
    public var uuid: String { rawUUID.description }
    /// The uuid of the subvolume this one is a snapshot of; nil when it is not a snapshot.
    public var parentUUID: String? { rawParentUUID.isZero ? nil : rawParentUUID.description }
    /// Set when it was made by `btrfs receive`.
    public var receivedUUID: String? { rawReceivedUUID.isZero ? nil : rawReceivedUUID.description }
    /// Whether it is read-only (`BTRFS_SUBVOL_RDONLY`).
    public var isReadOnly: Bool
    /// The generation (transaction) its root was last written in (a snapshot of it counts).
    public var generation: UInt64
    /// The generation its content last changed in (`ctransid`): snapshots of it leave it as it is.
    public var changedGeneration: UInt64
    /// When it was made (`otime`).
    public var createdAt: BtrfsTime
    /// The uuids as btrfs keeps them, written out only when asked for: a listing of 100,000
    /// snapshots reads three per snapshot and prints at most two.
    private let rawUUID, rawParentUUID, rawReceivedUUID: RawUUID

    init(_ info: replica_subvolume_info) {
        id = info.id
        parentID = info.parent_id
        rawUUID = RawUUID(info.uuid)
        rawParentUUID = RawUUID(info.parent_uuid)
        rawReceivedUUID = RawUUID(info.received_uuid)
        isReadOnly = info.flags & 1 != 0  // BTRFS_ROOT_SUBVOL_RDONLY
        generation = info.generation
        changedGeneration = info.changed_generation
        createdAt = BtrfsTime(seconds: Int64(info.otime_sec), nanoseconds: Int64(info.otime_nsec))
    }

    /// 16 bytes of a uuid, as the kernel gives them.
    private struct RawUUID: Equatable, Sendable, CustomStringConvertible {
        let bytes: (UInt64, UInt64)

        init(_ raw: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) {
            bytes = withUnsafeBytes(of: raw) { ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        }

        /// All zero: btrfs's "none" (a subvolume that is not a snapshot has no parent uuid).
        var isZero: Bool { bytes == (0, 0) }

        static func == (a: RawUUID, b: RawUUID) -> Bool { a.bytes == b.bytes }

        var description: String { withUnsafeBytes(of: bytes) { SubvolumeInfo.format(bytes: $0) } }
    }

    /// A 16-byte btrfs uuid (of a subvolume, or of a filesystem) as `btrfs` and sysfs write it.
    static func format(bytes: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 36) { out in
                var i = 0
                for (index, byte) in bytes.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 { out[i] = UInt8(ascii: "-"); i += 1 }
                    out[i] = digits[Int(byte >> 4)]
                    out[i + 1] = digits[Int(byte & 0x0f)]
                    i += 2
                }
                return i
        }
    }
}

/// Subvolume operations on open descriptors (libbtrfsutil's `_fd` calls), so each acts on the
/// directory that was checked. Names are single path components.
public enum Btrfs {
    /// Refuses what btrfs would not take as a name (`SubvolumeName.requireBtrfsName`: empty, `.`,
    /// `..`, `/`, NUL, over 255 bytes), naming the folder it was to be made in too.
    public static func validate(name: String, in parent: String) throws(ReplicaError) {
        do throws(ReplicaError) { try SubvolumeName.requireBtrfsName(name) } catch {
            throw ReplicaError("validate name", [parent, name], errno: error.errno, hint: error.hint, reason: .refused)
        }
    }

    /// `btrfs subvolume create PARENT/NAME`.
    public static func createSubvolume(in parent: borrowing OwnedFD, named name: String, parentPath: String) throws(ReplicaError) {
        try validate(name: name, in: parentPath)
        let fd = parent.rawValue
        try btrfs("create subvolume", parentPath, name) { btrfs_util_create_subvolume_fd(fd, name, 0, nil, nil) }
    }

    /// `btrfs subvolume snapshot [-r] SOURCE PARENT/NAME`. Not recursive: subvolumes nested inside
    /// the source appear as empty directories in the snapshot (callers check `nestedSubvolumes`).
    public static func snapshot(
        _ source: borrowing OwnedFD, into parent: borrowing OwnedFD, named name: String, readOnly: Bool,
        sourcePath: String, parentPath: String
    ) throws(ReplicaError) {
        try validate(name: name, in: parentPath)
        let (sourceFD, parentFD) = (source.rawValue, parent.rawValue)
        let flags = readOnly ? BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY : 0
        try btrfs("snapshot", sourcePath, "\(parentPath)/\(name)") {
            btrfs_util_create_snapshot_fd2(sourceFD, parentFD, name, Int32(flags), nil, nil)
        }
    }

    /// `btrfs subvolume delete PARENT/NAME` (not recursive).
    public static func deleteSubvolume(in parent: borrowing OwnedFD, named name: String, parentPath: String) throws(ReplicaError) {
        try validate(name: name, in: parentPath)
        let fd = parent.rawValue
        try btrfs("delete subvolume", parentPath, name) { btrfs_util_delete_subvolume_fd(fd, name, 0) }
    }

    /// `btrfs subvolume delete --subvolid ID PATH`: deletes exactly the subvolume with that ID on the
    /// filesystem `anyDirectory` is on, so what was verified is what goes (no name lookup in between).
    public static func deleteSubvolume(id: UInt64, on anyDirectory: borrowing OwnedFD, path: String) throws(ReplicaError) {
        let fd = anyDirectory.rawValue
        try btrfs("delete subvolume", path) { btrfs_util_delete_subvolume_by_id_fd(fd, id) }
    }

    /// Paths (relative to the subvolume) of subvolumes nested inside it, at any depth: what a
    /// snapshot of it would not contain (`btrfs subvolume list -o`).
    public static func nestedSubvolumes(_ subvolume: borrowing OwnedFD, path: String) throws(ReplicaError) -> [String] {
        var iterator: OpaquePointer?
        let fd = subvolume.rawValue
        try btrfs("list nested subvolumes", path) { btrfs_util_create_subvolume_iterator_fd(fd, 0, 0, &iterator) }
        defer { btrfs_util_destroy_subvolume_iterator(iterator) }
        var paths: [String] = []
        while true {
            var name: UnsafeMutablePointer<CChar>?
            var id: UInt64 = 0
            let result = btrfs_util_subvolume_iterator_next(iterator, &name, &id)
            if result == BTRFS_UTIL_ERROR_STOP_ITERATION { return paths }
            try btrfs("list nested subvolumes", path) { result }
            if let name {
                paths.append(String(cString: name))
                free(name)
            }
        }
    }

    /// `btrfs subvolume show PATH`: the subvolume containing the descriptor (its root, for a
    /// descriptor of a subvolume). One `BTRFS_IOC_GET_SUBVOL_INFO` ioctl.
    public static func info(_ subvolume: borrowing OwnedFD, path: String) throws(ReplicaError) -> SubvolumeInfo {
        var raw = replica_subvolume_info()
        let fd = subvolume.rawValue
        guard replica_btrfs_subvolume_info(fd, &raw) == 0 else {
            let errno = Errno.current
            throw ReplicaError("subvolume info", [path], errno: errno,
                             hint: errno == .ENOTSUP || errno.rawValue == ENOTTY ? "not on a btrfs filesystem" : nil)
        }
        return SubvolumeInfo(raw)
    }

    /// The subvolumes whose entries are in `directory`, read from the trees by
    /// `BTRFS_IOC_TREE_SEARCH_V2` (`btrfs subvolume list -o`, one folder): listing a folder of
    /// thousands of snapshots without opening each, at a cost that follows the folder's entries
    /// however many subvolumes the filesystem holds. Needs CAP_SYS_ADMIN, as tree searches do; nil
    /// without it (the caller opens each entry instead). The tree is the truth for what an entry is:
    /// a mount over an entry does not change it. It holds the folder's entries as of the last
    /// commit, though: an entry made or renamed since is missing (or stale) until the next, so a
    /// caller matches names and `d_ino`s to `DirectoryEntries.entries` and opens what differs.
    public static func childSubvolumes(in directory: borrowing OwnedFD, path: String) throws(ReplicaError) -> ChildSubvolumes? {
        var raw: UnsafeMutablePointer<replica_child_subvolume>?
        let count = replica_btrfs_child_subvolumes(directory.rawValue, &raw)
        guard count >= 0 else {
            let errno = Errno.current
            if errno == .EPERM { return nil }
            throw ReplicaError("list subvolumes", [path], errno: errno,
                               hint: errno == .ENOTSUP || errno.rawValue == ENOTTY ? "not on a btrfs filesystem" : nil)
        }
        return ChildSubvolumes(adopting: raw, count: count)
    }

    /// Whether the descriptor is the root of a btrfs subvolume: its inode is 256
    /// (`BTRFS_FIRST_FREE_OBJECTID`) on a btrfs filesystem, as `btrfs subvolume show` checks.
    public static func isSubvolume(_ fd: borrowing OwnedFD) -> Bool {
        guard let status = try? fd.status(), status.inode == 256, status.kind == .directory else { return false }
        return (try? fd.filesystemType()) == FilesystemMagic.btrfs
    }

    /// `btrfs filesystem sync PATH`: commits the current transaction, so deletions start freeing space.
    public static func sync(_ anyDirectory: borrowing OwnedFD, path: String) throws(ReplicaError) {
        let fd = anyDirectory.rawValue
        try btrfs("sync", path) { btrfs_util_sync_fd(fd) }
    }

    /// Starts committing the current transaction and returns without waiting for it
    /// (`BTRFS_IOC_START_SYNC`, `btrfs_util_start_sync_fd`).
    public static func startSync(_ anyDirectory: borrowing OwnedFD, path: String) throws(ReplicaError) {
        let fd = anyDirectory.rawValue
        try btrfs("start sync", path) { btrfs_util_start_sync_fd(fd, nil) }
    }

    /// `btrfs subvolume sync PATH ID`: waits (up to `timeout`) until the cleaner has dropped a deleted
    /// subvolume, so the space it held shows as free. Returns whether it is gone.
    public static func waitUntilCleaned(id: UInt64, on anyDirectory: borrowing OwnedFD, path: String,
                                        timeout: Duration = .seconds(30)) throws(ReplicaError) -> Bool {
        try sync(anyDirectory, path: path)
        let deadline = ContinuousClock.now + timeout
        var raw = btrfs_util_subvolume_info()
        while ContinuousClock.now < deadline {
            if btrfs_util_subvolume_info_fd(anyDirectory.rawValue, id, &raw) == BTRFS_UTIL_ERROR_SUBVOLUME_NOT_FOUND {
                try sync(anyDirectory, path: path)  // commit the freed space
                return true
            }
            usleep(20_000)
        }
        return false
    }

    /// `btrfs property set PATH ro true|false`.
    public static func setReadOnly(_ subvolume: borrowing OwnedFD, _ readOnly: Bool, path: String) throws(ReplicaError) {
        let fd = subvolume.rawValue
        try btrfs("set read-only", path) { btrfs_util_set_subvolume_read_only_fd(fd, readOnly) }
    }
}

/// A folder's subvolume entries as the tree has them (`Btrfs.childSubvolumes`), kept as the C
/// array it came in, sorted by id: an entry is found by its `d_ino` (a subvolume's entry reports
/// the subvolume's id) and its name compared in place, so listing 100,000 snapshots makes no
/// dictionary of names and no string but those of the entries the caller reads anyway.
public final class ChildSubvolumes {
    private let items: UnsafeMutablePointer<replica_child_subvolume>?
    /// How many subvolume entries the tree has for the folder.
    public let count: Int

    init(adopting items: UnsafeMutablePointer<replica_child_subvolume>?, count: Int) {
        (self.items, self.count) = (items, count)
    }

    deinit { free(items) }

    /// The subvolume of the entry `name` whose `d_ino` is `inode`; nil when the tree has no such
    /// entry (a plain file or folder, or an entry made or renamed since the last commit).
    public func subvolume(named name: String, inode: UInt64) -> SubvolumeInfo? {
        guard let items else { return nil }
        var low = 0, high = count
        while low < high {
            let middle = (low + high) / 2
            if items[middle].info.id < inode { low = middle + 1 } else { high = middle }
        }
        guard low < count, items[low].info.id == inode, Self.name(of: &items[low], is: name) else { return nil }
        return SubvolumeInfo(items[low].info)
    }

    /// Every entry by name, for a caller that wants them all at once.
    public var byName: [String: SubvolumeInfo] {
        var all: [String: SubvolumeInfo] = [:]
        for index in 0..<count { all[Self.name(of: &items![index])] = SubvolumeInfo(items![index].info) }
        return all
    }

    private static func name(of item: inout replica_child_subvolume) -> String {
        withUnsafeBytes(of: &item.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private static func name(of item: inout replica_child_subvolume, is name: String) -> Bool {
        var name = name
        return name.withUTF8 { wanted in
            withUnsafeBytes(of: &item.name) { stored in
                wanted.count < stored.count && stored[wanted.count] == 0 && stored.prefix(wanted.count).elementsEqual(wanted)
            }
        }
    }
}
