import CReplicaShim
import Glibc
import ReplicaKit

/// A snapshot of ours: its parsed name and what btrfs says about it.
public struct Snapshot: Equatable, Sendable {
    /// The name, parsed.
    public var name: SnapshotName
    /// What btrfs says about it.
    public var info: SubvolumeInfo
}

/// Something in a snapshot directory that is not ours, with the reason. Never deleted.
public struct ForeignEntry: Equatable, Sendable {
    /// Its name in the directory.
    public var name: String
    /// Why it is not ours (not read-only, another parent, a name we do not make …).
    public var reason: String
}

/// What a subvolume's snapshot directory holds.
public struct SnapshotInventory: Sendable {
    /// The subvolume.
    public var subvolume: String
    /// Its uuid: a snapshot of ours has it as parent uuid.
    public var sourceUUID: String
    /// Ours, oldest first.
    public var snapshots: [Snapshot]
    /// What else is in the directory: never deleted.
    public var foreign: [ForeignEntry]
}

/// A subvolume opened to take its snapshots: its source and its folder `snapshots/NAME/`, each
/// opened once, so that `create` takes its snapshot and reads the census stamps around it through
/// the same descriptors (`Store.snapshotSubject`).
final class SnapshotSubject {
    /// The subvolume's name.
    let name: String
    /// The subvolume itself.
    let source: OwnedFD
    /// `snapshots/NAME/`.
    let folder: OwnedFD

    init(name: String, source: consuming OwnedFD, folder: consuming OwnedFD) {
        self.name = name
        self.source = source
        self.folder = folder
    }
}

extension Store {
    /// `snapshots/`, created when missing, opened for reading.
    func makeSnapshotsDirectory() throws(ReplicaError) -> OwnedFD {
        try makeDirectory(Store.snapshotsDirectory, in: root.fd)
        return try directory(Store.snapshotsDirectory)
    }

    /// `snapshots/NAME/`, created when missing in `snapshots` (the store's `snapshots/`, open),
    /// opened for reading.
    func snapshotDirectory(for name: String, in snapshots: borrowing OwnedFD) throws(ReplicaError) -> OwnedFD {
        try makeDirectory(name, in: snapshots)
        return try directory("\(Store.snapshotsDirectory)/\(name)")
    }

    /// `snapshots/NAME/`, created when missing, opened for reading.
    func snapshotDirectory(for name: String) throws(ReplicaError) -> OwnedFD {
        try snapshotDirectory(for: name, in: makeSnapshotsDirectory())
    }

    /// Subvolume `name` opened to take its snapshots, refused before its folder is made when it
    /// cannot be: it must be a subvolume, with no subvolume nested in it unless `allowNested`
    /// (a snapshot is not recursive: their content would silently be missing).
    func snapshotSubject(_ name: String, allowNested: Bool = false) throws(ReplicaError) -> SnapshotSubject {
        try snapshotSubject(name, allowNested: allowNested, in: makeSnapshotsDirectory())
    }

    /// `snapshotSubject` with the store's `snapshots/` open already (`SubvolumeLock` holds it).
    func snapshotSubject(_ name: String, allowNested: Bool, in snapshots: borrowing OwnedFD) throws(ReplicaError) -> SnapshotSubject {
        let source = try directory(location(of: name))
        guard Btrfs.isSubvolume(source) else {
            throw ReplicaError("snapshot", ["\(path)/\(location(of: name))"], errno: .EINVAL,
                             hint: "is a plain directory, not a subvolume; only subvolumes can be snapshotted")
        }
        if !allowNested {
            let nested = try Btrfs.nestedSubvolumes(source, path: "\(path)/\(location(of: name))")
            if !nested.isEmpty {
                throw ReplicaError("snapshot", ["\(path)/\(location(of: name))"], errno: .EINVAL,
                                 hint: "contains nested subvolumes (\(nested.joined(separator: ", "))) that a snapshot "
                                     + "would not include; give each its own snapshot policy, or allow nested "
                                     + "subvolumes to appear as empty directories")
            }
        }
        return SnapshotSubject(name: name, source: source, folder: try snapshotDirectory(for: name, in: snapshots))
    }

    /// `mkdir PARENT/NAME` unless it exists (then it is opened as a directory by the caller, which
    /// refuses anything else).
    public func makeDirectory(_ name: String, in parent: borrowing OwnedFD, mode: mode_t = 0o700) throws(ReplicaError) {
        if mkdirat(parent.rawValue, name, mode) != 0 && Errno.current != .EEXIST {
            throw ReplicaError.current("mkdir", [path, name])
        }
    }

    /// Where subvolume `name` is, below the store: at its top (`web`), except the state of
    /// `replica-machine@NAME.service`, which is machine NAME's root (`machines/NAME`).
    func location(of name: String) -> String {
        guard name.hasPrefix(Store.machineSubvolumePrefix) else { return name }
        return "\(Store.machinesDirectory)/\(name.dropFirst(Store.machineSubvolumePrefix.count))"
    }

    /// Takes a read-only snapshot of subvolume `name` as `snapshots/NAME/NAME.YYYYMMDDTHHMMSSZ`
    /// (`btrfs subvolume snapshot -r`). Snapshots are not recursive: a subvolume with subvolumes
    /// nested in it is refused unless `allowNested`, because their content would silently be missing.
    @discardableResult
    public func snapshot(_ name: String, at time: UTCTimestamp, allowNested: Bool = false) throws(ReplicaError) -> String {
        try snapshot(snapshotSubject(name, allowNested: allowNested), at: time)
    }

    /// `snapshot` of a subvolume opened already.
    @discardableResult
    func snapshot(_ subject: SnapshotSubject, at time: UTCTimestamp) throws(ReplicaError) -> String {
        let name = subject.name
        let snapshotName = SnapshotName(subvolume: name, time: time).description
        do throws(ReplicaError) {
            try Btrfs.snapshot(subject.source, into: subject.folder, named: snapshotName, readOnly: true,
                               sourcePath: "\(path)/\(location(of: name))", parentPath: "\(path)/\(Store.snapshotsDirectory)/\(name)")
        } catch where error.reason == .exists {
            throw ReplicaError("snapshot", ["\(path)/\(name)", snapshotName], errno: .EEXIST,
                             hint: "a snapshot of that second exists; names have one-second resolution")
        }
        return snapshotName
    }

    /// `snapshot`, where a snapshot of ours already taken in the same second is not an error (a
    /// pre-start snapshot and a timer run, or two restarts, within one second): it returns that
    /// snapshot's name and `created: false`. Something of that name that is not ours still fails.
    public func snapshotUnlessTaken(_ name: String, at time: UTCTimestamp,
                                    allowNested: Bool = false) throws(ReplicaError) -> (name: String, created: Bool) {
        try snapshotUnlessTaken(snapshotSubject(name, allowNested: allowNested), at: time)
    }

    /// `snapshotUnlessTaken` of a subvolume opened already.
    func snapshotUnlessTaken(_ subject: SnapshotSubject, at time: UTCTimestamp) throws(ReplicaError) -> (name: String, created: Bool) {
        let name = subject.name
        do throws(ReplicaError) {
            return (try snapshot(subject, at: time), true)
        } catch where error.reason == .exists {
            let taken = SnapshotName(subvolume: name, time: time).description
            guard try inventory(of: name).snapshots.contains(where: { $0.name.description == taken }) else {
                throw ReplicaError("snapshot", ["\(path)/\(Store.snapshotsDirectory)/\(name)/\(taken)"], errno: .EEXIST,
                                 hint: "exists but is not a snapshot of ours (not read-only, or of another subvolume); move it aside")
            }
            return (taken, false)
        }
    }

    /// The uuids a snapshot's parent uuid may name for the snapshot to be ours: the subvolume's own,
    /// and those of the subvolumes it replaced by rollback (`Btrfs.lineage`).
    func ownUUIDs(of name: String) throws(ReplicaError) -> (current: String, all: Set<String>) {
        let source = try directory(location(of: name))
        let uuid = try Btrfs.info(source, path: "\(path)/\(location(of: name))").uuid
        return (uuid, Set(Btrfs.lineage(source) + [uuid]))
    }

    /// Every entry of `snapshots/NAME/`, sorted into ours (the name parses for this subvolume, it
    /// is a read-only subvolume, and its parent uuid is the source's uuid, or that of a subvolume
    /// the source replaced by rollback) and foreign.
    public func inventory(of name: String) throws(ReplicaError) -> SnapshotInventory {
        let uuids = try ownUUIDs(of: name)
        let parent = try snapshotDirectory(for: name)
        let children = try Btrfs.childSubvolumes(in: parent, path: "\(path)/\(Store.snapshotsDirectory)/\(name)")
        var ours: [Snapshot] = []
        var foreign: [ForeignEntry] = []
        for (entry, inode) in try DirectoryEntries.entries(in: parent) {
            // The tree lags the directory until the next commit (btrfs delays index items), so an
            // entry made or renamed since, or a name reused since, is opened instead.
            let subvolume: () -> Result<SubvolumeInfo, ReplicaError>
            if let found = children?.subvolume(named: entry, inode: inode) {
                subvolume = { .success(found) }
            } else {
                subvolume = { Self.open(entry, in: parent) }
            }
            switch Self.classify(entry, of: name, sourceUUIDs: uuids.all, subvolume: subvolume) {
            case .success(let snapshot): ours.append(snapshot)
            case .failure(let why): foreign.append(ForeignEntry(name: entry, reason: why.rule))
            }
        }
        return SnapshotInventory(subvolume: name, sourceUUID: uuids.current,
                                 snapshots: ours.sorted { $0.name.time < $1.name.time },
                                 foreign: foreign.sorted { $0.name < $1.name })
    }

    /// Our snapshots of `name`, oldest first.
    public func snapshots(of name: String) throws(ReplicaError) -> [Snapshot] { try inventory(of: name).snapshots }

    /// Why an entry of the snapshot folder is not one of ours (`hint`), as a `Result`'s failure.
    static func notOurs(_ entry: String, _ why: String) -> ReplicaError {
        ReplicaError("classify snapshot", [entry], errno: .EINVAL, hint: why, reason: .refused)
    }

    /// Whether `entry` is one of ours: its name parses for `name`, and the subvolume it is (as
    /// `subvolume` finds it, asked only for a name that parses) is read-only with a parent uuid of
    /// `sourceUUIDs`. The one set of rules, whether the entry was opened or found in the tree.
    private static func classify(_ entry: String, of name: String, sourceUUIDs: Set<String>,
                                 subvolume: () -> Result<SubvolumeInfo, ReplicaError>) -> Result<Snapshot, ReplicaError> {
        guard let parsed = SnapshotName(parsing: entry), parsed.subvolume == name else {
            return .failure(notOurs(entry, "name is not \(name).YYYYMMDDTHHMMSSZ"))
        }
        let info: SubvolumeInfo
        switch subvolume() {
        case .success(let found): info = found
        case .failure(let why): return .failure(why)
        }
        guard info.isReadOnly else { return .failure(notOurs(entry, "writable, so not a snapshot we took")) }
        guard let parentUUID = info.parentUUID, sourceUUIDs.contains(parentUUID) else {
            return .failure(notOurs(entry, "parent uuid \(info.parentUUID ?? "none") is not \(name)'s "
                                    + sourceUUIDs.sorted().joined(separator: " or ")))
        }
        return .success(Snapshot(name: parsed, info: info))
    }

    /// The subvolume `entry` is, opened by a single name with O_NOFOLLOW from the snapshot
    /// directory's descriptor.
    private static func open(_ entry: String, in parent: borrowing OwnedFD) -> Result<SubvolumeInfo, ReplicaError> {
        let raw = Glibc.openat(parent.rawValue, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard raw >= 0 else { return .failure(notOurs(entry, "not a directory (\(Errno.current.name))")) }
        let fd = OwnedFD(adopting: raw)
        // Inode 256 is a subvolume root; the ioctl only answers on btrfs (any other filesystem
        // mounted here fails it, and another btrfs's subvolume fails the parent uuid check).
        guard (try? fd.status().inode) == 256, let info = try? Btrfs.info(fd, path: entry) else {
            return .failure(notOurs(entry, "not a subvolume"))
        }
        return .success(info)
    }

    /// Deletes one of our snapshots of `name`, after checking again that the entry still is that
    /// snapshot (same subvolume ID, still ours), then deleting by ID.
    public func delete(_ snapshot: Snapshot, of name: String) throws(ReplicaError) {
        if let failure = try delete([snapshot], of: name).first { throw failure.error }
    }

    /// `replica-snap delete NAME SNAPSHOT…`: under the subvolume's lock (waiting up to `wait`),
    /// deletes each named snapshot that is ours; a name that is not a snapshot, or not ours, is a
    /// failure naming why, and does not stop the rest. Returns what was deleted and what was not.
    public func deleteSnapshots(named requested: [String], of name: String, wait: Duration? = nil,
                                deleted: (Snapshot) -> Void = { _ in }) throws(ReplicaError) -> [(name: String, error: ReplicaError)] {
        let lock = try SubvolumeLock.acquire(name, in: self, wait: wait)
        let inventory = try inventory(of: name)
        var chosen: [Snapshot] = []
        var failures: [(name: String, error: ReplicaError)] = []
        for snapshotName in requested {
            if let snapshot = inventory.snapshots.first(where: { $0.name.description == snapshotName }) {
                chosen.append(snapshot)
            } else if let foreign = inventory.foreign.first(where: { $0.name == snapshotName }) {
                failures.append((snapshotName, ReplicaError("delete snapshot", [snapshotName], errno: .EPERM,
                                                            hint: "not deleted: not ours (\(foreign.reason))", reason: .refused)))
            } else {
                failures.append((snapshotName, ReplicaError("delete snapshot", [snapshotName], errno: .ENOENT,
                                                            hint: "not deleted: no such snapshot of \(name)")))
            }
        }
        failures += try delete(chosen, of: name, deleted: deleted)
        _ = lock.subvolume
        return failures
    }

    /// Deletes several snapshots of `name`, each checked again and deleted by ID as above. A failure
    /// does not stop the rest; the failures are returned.
    public func delete(_ snapshots: [Snapshot], of name: String,
                       deleted: (Snapshot) -> Void = { _ in }) throws(ReplicaError) -> [(name: String, error: ReplicaError)] {
        let parent = try snapshotDirectory(for: name)
        let sourceUUIDs = try ownUUIDs(of: name).all
        var failures: [(name: String, error: ReplicaError)] = []
        for snapshot in snapshots {
            let entry = snapshot.name.description
            let entryPath = "\(path)/\(Store.snapshotsDirectory)/\(name)/\(entry)"
            guard case .success(let current) = Self.classify(entry, of: name, sourceUUIDs: sourceUUIDs,
                                                             subvolume: { Self.open(entry, in: parent) }),
                  current.info.id == snapshot.info.id else {
                failures.append((entry, ReplicaError("delete snapshot", [entryPath], errno: .ESTALE,
                                                   hint: "it changed since it was listed; nothing was deleted, list again")))
                continue
            }
            do throws(ReplicaError) {
                try Btrfs.deleteSubvolume(id: snapshot.info.id, on: parent, path: entryPath)
                deleted(snapshot)
            } catch {
                failures.append((entry, error))
            }
        }
        return failures
    }

    /// Free and total bytes of the store's filesystem, and whether it is mounted read-only (`statfs`).
    public func space() throws(ReplicaError) -> (available: UInt64, total: UInt64, readOnly: Bool) {
        var available: UInt64 = 0, total: UInt64 = 0, flags: UInt64 = 0
        let fd = root.fd.rawValue
        _ = try syscall("fstatfs", path) { replica_fstatfs_space(fd, &available, &total, &flags) }
        return (available, total, flags & UInt64(ST_RDONLY) != 0)
    }

    /// Refuses a store mounted read-only, before anything is attempted on it.
    public func requireWritable() throws(ReplicaError) {
        if try space().readOnly {
            throw ReplicaError("store", [path], errno: .EROFS, hint: "the store is mounted read-only; remount it read-write (mount -o remount,rw \(path))")
        }
    }
}
