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

    /// Opens a mounted btrfs filesystem (or a directory on one) as a store.
    public init(path: String) throws(StoreError) {
        let root = try kit { () throws(SystemError) in try RootDirectory(path) }
        let type = try kit { () throws(SystemError) in try root.fd.filesystemType() }
        guard type == FilesystemMagic.btrfs else {
            throw StoreError("open store", [path], errno: .EINVAL,
                             hint: "not a btrfs filesystem (magic 0x\(String(UInt64(bitPattern: type), radix: 16))); "
                                 + "mount btrfs there, or use the embedded loop image")
        }
        self.path = path
        self.root = root
    }

    /// An open, readable descriptor for a directory inside the store (no symlinks allowed).
    public func directory(_ relativePath: String) throws(StoreError) -> OwnedFD {
        try kit { () throws(SystemError) in
            try root.openForReading(relativePath, [.noSymlinks, .directory])
        }
    }

    /// Creates the subvolume `name` at the top of the store, unless it exists (then checks it is one).
    public func ensureSubvolume(_ name: String) throws(StoreError) {
        try Btrfs.validate(name: name, in: path)
        let top = try directory(".")
        if let existing = try? directory(name) {
            guard Btrfs.isSubvolume(existing) else {
                throw StoreError("ensure subvolume", [path, name], errno: .EEXIST,
                                 hint: "exists but is not a subvolume; move it aside or migrate it")
            }
            return
        }
        try Btrfs.createSubvolume(in: top, named: name, parentPath: path)
    }

    /// Takes a read-only snapshot of subvolume `name` as `snapshots/NAME/NAME.YYYYMMDDTHHMMSSZ`.
    /// Returns the snapshot's name. `btrfs subvolume snapshot -r`.
    @discardableResult
    public func snapshot(_ name: String, at time: UTCTimestamp) throws(StoreError) -> String {
        let source = try directory(name)
        let parent = try snapshotDirectory(for: name)
        let snapshotName = SnapshotName(subvolume: name, time: time).description
        try Btrfs.snapshot(source, into: parent, named: snapshotName, readOnly: true,
                           sourcePath: "\(path)/\(name)", parentPath: "\(path)/\(Store.snapshotsDirectory)/\(name)")
        return snapshotName
    }

    /// The snapshots of subvolume `name` that are ours: the name parses, it is read-only, and its
    /// parent uuid is the source's uuid. Oldest first.
    public func snapshots(of name: String) throws(StoreError) -> [Snapshot] {
        let sourceInfo = try Btrfs.info(try directory(name), path: "\(path)/\(name)")
        let parent = try snapshotDirectory(for: name)
        var found: [Snapshot] = []
        for entry in try kit({ () throws(SystemError) in try DirectoryEntries.names(in: parent) }) {
            guard let parsed = SnapshotName(parsing: entry), parsed.subvolume == name,
                  let fd = try? kit({ () throws(SystemError) in
                      try RootDirectory(adopting: parent.duplicate(), path: "").openForReading(entry, [.noSymlinks, .directory])
                  }),
                  Btrfs.isSubvolume(fd),
                  let info = try? Btrfs.info(fd, path: entry),
                  info.isReadOnly, info.parentUUID == sourceInfo.uuid
            else { continue }
            found.append(Snapshot(name: parsed, info: info))
        }
        return found.sorted { $0.name.time < $1.name.time }
    }

    /// `snapshots/NAME`, created (with its parent) when missing.
    func snapshotDirectory(for name: String) throws(StoreError) -> OwnedFD {
        try makeDirectory(Store.snapshotsDirectory, in: directory("."))
        try makeDirectory(name, in: directory(Store.snapshotsDirectory))
        return try directory("\(Store.snapshotsDirectory)/\(name)")
    }

    /// `mkdir PARENT/NAME` (mode 0700) unless it exists.
    private func makeDirectory(_ name: String, in parent: borrowing OwnedFD) throws(StoreError) {
        if mkdirat(parent.rawValue, name, 0o700) != 0 && Errno.current != .EEXIST {
            throw StoreError("mkdir", [path, name], errno: .current)
        }
    }
}

/// A snapshot of ours: its parsed name and what btrfs says about it.
public struct Snapshot: Equatable, Sendable {
    public var name: SnapshotName
    public var info: SubvolumeInfo
}
