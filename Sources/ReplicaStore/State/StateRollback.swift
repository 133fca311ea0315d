import CReplicaShim
import Glibc
import ReplicaKit

/// Puts a service's state subvolume back to one of its snapshots, without losing the present:
///
/// 1. take the subvolume's lock (no snapshot run in between) and refuse while any process has the
///    subvolume mounted (the service must be stopped);
/// 2. snapshot the present state read-only, like any snapshot (so the rollback can itself be undone);
/// 3. make a writable snapshot of the chosen snapshot as `.rollback-NAME`, recording the present
///    subvolume's uuid in its lineage (`Btrfs.lineage`) so every older snapshot stays ours;
/// 4. swap `.rollback-NAME` and `NAME` with one `renameat2(RENAME_EXCHANGE)`: a start sees the old
///    state or the new, never neither;
/// 5. delete the replaced subvolume (now `.rollback-NAME`), which step 2 preserved.
///
/// A run killed at any step leaves `NAME` whole; a leftover `.rollback-NAME` is always either an
/// unused copy of a snapshot or the replaced state already snapshotted, and the next rollback or
/// `discardLeftovers` removes it.
public enum StateRollback {
    /// What `rollback` did for one subvolume.
    public struct Outcome: Equatable, Sendable {
        /// The subvolume rolled back.
        public var subvolume: String
        /// The snapshot the state now equals.
        public var restored: String
        /// The snapshot that keeps the state as it was before the rollback.
        public var saved: String

        /// An outcome.
        public init(subvolume: String, restored: String, saved: String) {
            (self.subvolume, self.restored, self.saved) = (subvolume, restored, saved)
        }
    }

    /// The staging subvolume of a rollback of `name`: `.rollback-NAME`.
    public static func stagingName(_ name: String) -> String { ".rollback-\(name)" }

    /// Rolls each of `names` back to its snapshot taken at `time`, after checking all of them first.
    public static func rollback(_ names: [String], to time: UTCTimestamp, in store: borrowing Store,
                                now: UTCTimestamp = .now) throws(ReplicaError) -> [Outcome] {
        try withLocks(names.sorted()[...], in: store) { () throws(ReplicaError) in
            var chosen: [Snapshot] = []
            for name in names {
                guard let snapshot = try store.snapshots(of: name).first(where: { $0.name.time == time }) else {
                    let have = try store.snapshots(of: name).suffix(5).map(\.name.description)
                    throw ReplicaError("rollback", ["\(store.path)/\(name)", "\(name).\(time)"], errno: .ENOENT,
                                     hint: "no snapshot of \(name) taken at \(time)"
                                         + (have.isEmpty ? "; it has none" : "; the newest are \(have.joined(separator: ", "))"))
                }
                if let user = try users(of: name, in: store).first {
                    throw ReplicaError("rollback", ["\(store.path)/\(name)"], errno: .EBUSY,
                                     hint: "process \(user.pid) (\(user.command)) has it mounted at \(user.mountPoint); "
                                         + "stop the service first; nothing was changed")
                }
                chosen.append(snapshot)
            }
            try store.requireWritable()
            var outcomes: [Outcome] = []
            for (name, snapshot) in zip(names, chosen) {
                outcomes.append(try rollback(name, to: snapshot, in: store, now: now))
            }
            return outcomes
        }
    }

    /// Runs `body` holding the lock of each subvolume in `names` (taken in that order; callers
    /// that may contend pass them sorted), waiting up to `wait` for each.
    static func withLocks<T>(_ names: ArraySlice<String>, in store: borrowing Store, wait: Duration? = nil,
                             _ body: () throws(ReplicaError) -> T) throws(ReplicaError) -> T {
        guard let first = names.first else { return try body() }
        let lock = try SubvolumeLock.acquire(first, in: store, wait: wait)
        defer { _ = lock.subvolume }
        return try withLocks(names.dropFirst(), in: store, wait: wait, body)
    }

    private static func rollback(_ name: String, to snapshot: Snapshot, in store: borrowing Store,
                                 now: UTCTimestamp) throws(ReplicaError) -> Outcome {
        let top = try store.directory(".")
        try discardLeftovers(name, owner: StateOwner.of(try store.directory(name)), in: store)
        let saved = try store.snapshot(name, at: now)
        let staging = stagingName(name)
        let snapshotPath = "\(store.path)/\(Store.snapshotsDirectory)/\(name)/\(snapshot.name)"
        let source = try store.directory("\(Store.snapshotsDirectory)/\(name)/\(snapshot.name)")
        try Btrfs.snapshot(source, into: top, named: staging, readOnly: false, sourcePath: snapshotPath, parentPath: store.path)
        let present = try store.directory(name)
        let lineage = Btrfs.lineage(present) + [try Btrfs.info(present, path: "\(store.path)/\(name)").uuid]
        try Btrfs.setLineage(try store.directory(staging), lineage, path: "\(store.path)/\(staging)")
        _ = try syscall("renameat2(RENAME_EXCHANGE)", "\(store.path)/\(staging)", "\(store.path)/\(name)") {
            replica_renameat2(top.rawValue, staging, top.rawValue, name, replica_RENAME_EXCHANGE)
        }
        try Btrfs.deleteSubvolume(in: top, named: staging, parentPath: store.path)
        return Outcome(subvolume: name, restored: snapshot.name.description, saved: saved)
    }

    /// Deletes a `.rollback-NAME` left by an interrupted rollback (see the type's comment for why
    /// that is always safe), unless it records an owner other than `owner`.
    public static func discardLeftovers(_ name: String, owner: StateOwner?, in store: borrowing Store) throws(ReplicaError) {
        let staging = stagingName(name)
        guard let leftover = try? store.directory(staging) else { return }
        guard Btrfs.isSubvolume(leftover) else {
            throw ReplicaError("rollback", ["\(store.path)/\(staging)"], errno: .EEXIST,
                             hint: "is not a subvolume, so not ours; move it aside")
        }
        if let recorded = StateOwner.of(leftover), let owner, recorded != owner {
            throw ReplicaError("rollback", ["\(store.path)/\(staging)"], errno: .EPERM,
                             hint: "a staging copy of \(recorded.unit)'s state, not \(owner.unit)'s; left alone")
        }
        try Btrfs.deleteSubvolume(in: try store.directory("."), named: staging, parentPath: store.path)
    }

    /// A process that has a subvolume mounted, directly or below a bind.
    public struct User: Sendable {
        /// Its process id.
        public var pid: Int32
        /// Its command name (`/proc/PID/comm`).
        public var command: String
        /// Where it has the subvolume mounted, in its own mount namespace.
        public var mountPoint: String
    }

    /// Processes in whose mount namespace subvolume `name` of the store is mounted (the store's
    /// device and a mount root at or below the subvolume), one per namespace; `fuser -m` for one
    /// subvolume. Namespaces we cannot read are skipped.
    public static func users(of name: String, in store: borrowing Store) throws(ReplicaError) -> [User] {
        // The store's mount (the longest mount point above its path) gives the filesystem's
        // device as mountinfo shows it, and its root: "/" for a whole filesystem, "/sub" for subvol=.
        let mounts = try MountInfo.read()
        func isAbove(_ mountPoint: String) -> Bool {
            mountPoint == "/" || store.path == mountPoint || store.path.hasPrefix(mountPoint + "/")
        }
        guard let storeMount = mounts.filter({ isAbove($0.mountPoint) }).max(by: { $0.mountPoint.count < $1.mountPoint.count }) else {
            return []
        }
        let below = storeMount.mountPoint == "/" ? store.path : String(store.path.dropFirst(storeMount.mountPoint.count))
        let subvolumeRoot = (storeMount.root == "/" ? "" : storeMount.root) + below + "/" + name
        let device = (storeMount.major, storeMount.minor)
        var seen: Set<String> = []
        var found: [User] = []
        let proc = try OwnedFD.open("/proc", O_RDONLY | O_DIRECTORY)
        for entry in try DirectoryEntries.names(in: proc) {
            guard let pid = Int32(entry), let namespace = readSymlink("/proc/\(pid)/ns/mnt"),
                  seen.insert(namespace).inserted,
                  let entries = try? MountInfo.read(pid: entry) else { continue }
            if let mount = entries.first(where: {
                $0.major == device.0 && $0.minor == device.1 && ($0.root == subvolumeRoot || $0.root.hasPrefix(subvolumeRoot + "/"))
            }) {
                let command = (try? OwnedFD.open("/proc/\(pid)/comm", O_RDONLY).readLine(limit: 64)) ?? "?"
                found.append(User(pid: pid, command: command, mountPoint: mount.mountPoint))
            }
        }
        return found
    }
}
