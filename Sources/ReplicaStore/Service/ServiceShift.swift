import Glibc
import ReplicaKit

/// Prepares what a sandboxed service needs and describes the sandbox: the one place `replica-shift`
/// (under systemd) and `replica-run` (without it) compose the store, the config overlay and the
/// profile's sandbox, so both give the service the same view.
public enum ServiceShift {
    /// What `prepare` did, one line each, for the journal or a terminal.
    public typealias Report = [String]

    /// Makes the filesystem objects: each state directory's subvolume (migrated once from the
    /// existing directory), a pre-start snapshot when the profile asks. Holds the lock of every
    /// state subvolume throughout (the lock snapshot runs take), waiting up to `wait` for another
    /// holder. Idempotent: a restart changes nothing but a new snapshot. Throws, so `ExecStartPre=`
    /// fails and the service never starts unsandboxed.
    public static func prepare(_ settings: ServiceProfile, now: UTCTimestamp = .now,
                               wait: Duration? = nil) throws(ReplicaError) -> Report {
        var report: Report = []
        guard !settings.state.isEmpty || settings.snapshotOnStart else { return report }
        let store = try Store(path: settings.storePath)
        // A boolean by the registry's check when the profile was parsed, so reading it cannot fail.
        let allowNested = (try? settings.raw.value("Snapshots", "AllowNested")?.boolean()) ?? false
        let state = settings.state.isEmpty ? [StatePath(path: "", subvolume: settings.subvolume)] : settings.state
        // A new state subvolume is the service's own, as systemd makes a StateDirectory=: User= and
        // Group= resolved now (a name that does not exist fails the start, naming it).
        let confinement = settings.sandbox.confinement
        var user: (uid: uid_t, gid: gid_t)?
        if confinement.user != nil || confinement.group != nil {
            let credentials = try confinement.resolveCredentials()
            user = (credentials.uid ?? uid_t.max, credentials.gid ?? gid_t.max)  // -1 leaves it as it is (chown(2))
        }
        try StateRollback.withLocks(state.map(\.subvolume).sorted()[...], in: store, wait: wait) { () throws(ReplicaError) in
            for directory in state where !directory.path.isEmpty {
                let owner = StateOwner(unit: settings.unit, path: directory.path)
                try StateRollback.discardLeftovers(directory.subvolume, owner: owner, in: store)
                try refuseCopyWhileRunning(settings.unit, directory, in: store)
                switch try StateMigration.shift(directory.subvolume, from: directory.path, owner: owner, user: user, in: store) {
                case .alreadyShifted: break
                case .createdEmpty: report.append("\(directory.path): new subvolume \(directory.subvolume)")
                case .migrated(let files, let bytes, let reflinked):
                    report.append("\(directory.path): migrated to subvolume \(directory.subvolume) "
                                  + "(\(files) files, \(bytes) bytes, \(reflinked) reflinked)")
                }
                // The path itself becomes a placeholder no start without Replica can use.
                if case .movedAside(let aside) = try StatePlaceholder.seal(directory.path, subvolume: directory.subvolume,
                                                                           store: store.path, at: now) {
                    report.append("\(directory.path): the original is kept at \(aside); an immutable placeholder is left in its place")
                }
            }
            guard settings.snapshotOnStart else { return }
            for directory in state {
                let taken = try store.snapshotUnlessTaken(directory.subvolume, at: now, allowNested: allowNested)
                report.append(taken.created ? "\(directory.subvolume): snapshot \(taken.name) before start"
                                            : "\(directory.subvolume): snapshot of this second already taken")
            }
        }
        return report
    }

    /// The moment a rollback goes back to: `snapshot` is one of `subvolumes`' snapshot names
    /// (`NAME.YYYYMMDDTHHMMSSZ`, as `replica-snap list` prints them) or the bare time. A name of
    /// another subvolume is refused: it would roll this service back to a time chosen by mistake.
    public static func rollbackTime(_ snapshot: String, subvolumes: [String], unit: String) throws(ReplicaError) -> UTCTimestamp {
        let name = SnapshotName(parsing: snapshot)
        if let name, subvolumes.contains(name.subvolume) { return name.time }
        if let time = UTCTimestamp(compact: snapshot.utf8) { return time }
        let listed = subvolumes.map { "\($0).YYYYMMDDTHHMMSSZ" }.joined(separator: " or ")
        throw ReplicaError("rollback", [unit, snapshot], errno: .EINVAL,
                           hint: name == nil ? "not a snapshot name: give one as replica-snap list \(unit) prints it (\(listed))"
                                             : "\(name!.subvolume) is not \(unit)'s state; its snapshots are named \(listed) (replica-snap list \(unit))")
    }

    /// A daemon that is running writes its directory while it is copied: the copy could be torn
    /// (a database's files from different moments). The first migration therefore waits until the
    /// unit is stopped; from its own `ExecStartPre=` the unit is `activating`, never `active`.
    /// Without a service manager to ask (replica-run, Nomad), nothing is refused.
    static func refuseCopyWhileRunning(_ unit: String, _ directory: StatePath, in store: borrowing Store) throws(ReplicaError) {
        // The copy is checked first (an openat): the service manager is asked only when one would
        // happen, so a start whose state is on the store already pays nothing for this.
        guard try StateMigration.wouldCopy(directory.subvolume, from: directory.path, in: store),
              let state = SystemdManager.activeState(of: unit), ["active", "reloading", "deactivating"].contains(state) else { return }
        throw ReplicaError("shift state", [unit, directory.path], errno: .EBUSY,
                           hint: "\(unit) is \(state): a running daemon's directory is not copied (the copy could be torn). "
                               + "Stop it first (systemctl stop \(unit)), then run replica-shift prepare \(unit) again; nothing was copied")
    }

    /// Rolls every state subvolume of the service back to the snapshot named `snapshot` as
    /// `replica-snap list` prints it (`NAME.YYYYMMDDTHHMMSSZ`; the service must be stopped), keeping
    /// the present state as a new snapshot. A service with several state subvolumes goes back to
    /// that moment in all of them. The bare time is taken too.
    public static func rollback(_ settings: ServiceProfile, to snapshot: String,
                                now: UTCTimestamp = .now) throws(ReplicaError) -> [StateRollback.Outcome] {
        guard !settings.state.isEmpty else {
            throw ReplicaError("rollback", [settings.unit], errno: .EINVAL, hint: "its profile has no [State] Path=")
        }
        let time = try rollbackTime(snapshot, subvolumes: settings.state.map(\.subvolume), unit: settings.unit)
        let store = try Store(path: settings.storePath)
        for directory in settings.state {
            try StateOwner(unit: settings.unit, path: directory.path).requireOwns(directory.subvolume, in: store)
        }
        return try StateRollback.rollback(settings.state.map(\.subvolume), to: time, in: store, now: now)
    }
}
