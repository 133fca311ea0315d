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
        try StateRollback.withLocks(state.map(\.subvolume).sorted()[...], in: store, wait: wait) { () throws(ReplicaError) in
            for directory in state where !directory.path.isEmpty {
                let owner = StateOwner(unit: settings.unit, path: directory.path)
                try StateRollback.discardLeftovers(directory.subvolume, owner: owner, in: store)
                switch try StateMigration.shift(directory.subvolume, from: directory.path, owner: owner, in: store) {
                case .alreadyShifted: break
                case .createdEmpty: report.append("\(directory.path): new subvolume \(directory.subvolume)")
                case .migrated(let files, let bytes, let reflinked):
                    report.append("\(directory.path): migrated to subvolume \(directory.subvolume) "
                                  + "(\(files) files, \(bytes) bytes, \(reflinked) reflinked; the original is kept)")
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

    /// Rolls every state subvolume of the service back to its snapshot of `time` (the service must
    /// be stopped), keeping the present state as a new snapshot. `time` may also be given as a
    /// snapshot name, `NAME.YYYYMMDDTHHMMSSZ`.
    public static func rollback(_ settings: ServiceProfile, to snapshot: String,
                                now: UTCTimestamp = .now) throws(ReplicaError) -> [StateRollback.Outcome] {
        guard !settings.state.isEmpty else {
            throw ReplicaError("rollback", [settings.unit], errno: .EINVAL, hint: "its profile has no [State] Path=")
        }
        let stamp = snapshot.split(separator: ".").last.map(String.init) ?? snapshot
        guard let time = UTCTimestamp(compact: stamp.utf8) else {
            throw ReplicaError("rollback", [settings.unit, snapshot], errno: .EINVAL,
                             hint: "give the snapshot's time as YYYYMMDDTHHMMSSZ or its name (replica-snap list)")
        }
        let store = try Store(path: settings.storePath)
        for directory in settings.state {
            try StateOwner(unit: settings.unit, path: directory.path).requireOwns(directory.subvolume, in: store)
        }
        return try StateRollback.rollback(settings.state.map(\.subvolume), to: time, in: store, now: now)
    }
}
