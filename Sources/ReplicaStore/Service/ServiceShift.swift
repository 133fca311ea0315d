import ReplicaKit

/// Prepares what a sandboxed service needs and describes the sandbox: the one place `replica-shift`
/// (under systemd) and `replica-run` (without it) compose the store, the config overlay and the
/// profile's sandbox, so both give the service the same view.
public enum ServiceShift {
    /// What `prepare` did, one line each, for the journal or a terminal.
    public typealias Report = [String]

    /// Makes the filesystem objects: each state directory's subvolume (migrated once from the
    /// existing directory), a pre-start snapshot when the profile asks. Idempotent: a restart changes
    /// nothing but a new snapshot. Throws, so `ExecStartPre=` fails and the service never starts
    /// unsandboxed.
    public static func prepare(_ settings: ServiceSettings, now: UTCTimestamp = .now) throws(StoreError) -> Report {
        var report: Report = []
        guard !settings.state.isEmpty || settings.snapshotOnStart else { return report }
        let store = try Store(path: settings.storePath)
        for directory in settings.state {
            try StateRollback.discardLeftovers(directory.subvolume, in: store)
            switch try StateMigration.shift(directory.subvolume, from: directory.path, in: store) {
            case .alreadyShifted: break
            case .createdEmpty: report.append("\(directory.path): new subvolume \(directory.subvolume)")
            case .migrated(let files, let bytes, let reflinked):
                report.append("\(directory.path): migrated to subvolume \(directory.subvolume) "
                              + "(\(files) files, \(bytes) bytes, \(reflinked) reflinked; the original is kept)")
            }
            if settings.snapshotOnStart {
                do throws(StoreError) {
                    let name = try store.snapshot(directory.subvolume, at: now, allowNested: settings.snapshots.allowNested)
                    report.append("\(directory.subvolume): snapshot \(name) before start")
                } catch where error.errno == .EEXIST {
                    // A restart within the same second: that second's snapshot is already there.
                    report.append("\(directory.subvolume): snapshot of this second already taken")
                }
            }
        }
        return report
    }

    /// Rolls every state subvolume of the service back to its snapshot of `time` (the service must
    /// be stopped), keeping the present state as a new snapshot. `time` may also be given as a
    /// snapshot name, `NAME.YYYYMMDDTHHMMSSZ`.
    public static func rollback(_ settings: ServiceSettings, to snapshot: String,
                                now: UTCTimestamp = .now) throws(StoreError) -> [StateRollback.Outcome] {
        guard !settings.state.isEmpty else {
            throw StoreError("rollback", [settings.unit], errno: .EINVAL, hint: "its profile has no [State] Path=")
        }
        let stamp = snapshot.split(separator: ".").last.map(String.init) ?? snapshot
        guard let time = UTCTimestamp(compact: stamp.utf8) else {
            throw StoreError("rollback", [settings.unit, snapshot], errno: .EINVAL,
                             hint: "give the snapshot's time as YYYYMMDDTHHMMSSZ or its name (replica-snap list)")
        }
        let store = try Store(path: settings.storePath)
        return try StateRollback.rollback(settings.state.map(\.subvolume), to: time, in: store, now: now)
    }

    /// The full sandbox: the profile's `[Sandbox]`, each state subvolume bound writable over its
    /// directory, each file of the config overlay bound read-only over its path, and the network
    /// namespace of its `[Network]`.
    ///
    /// `forSystemd` renders it for the unit's drop-in, with two differences:
    /// - config sources go through the `current` link, so a switch takes effect at the next start
    ///   without a new drop-in (for `replica-run` they name the generation itself);
    /// - state binds are optional (`BindPaths=-…`): systemd sets up `BindPaths=` for the `+`
    ///   pre command too, before `replica-shift prepare` has made the subvolume on first start.
    ///   The service still never runs without its state: prepare fails the start when it cannot
    ///   make the subvolume, and ExecStart's namespace is set up after prepare succeeded.
    public static func sandbox(_ settings: ServiceSettings, forSystemd: Bool = false) throws(SystemError) -> SandboxPlan {
        var plan = settings.sandbox
        plan.networkNamespacePath = settings.networkNamespace.map { "\(SandboxPlan.networkNamespaceDirectory)/\($0)" }
        for directory in settings.state {
            plan.binds.append(Bind("\(settings.storePath)/\(directory.subvolume)", to: directory.path, readOnly: false,
                                   optional: forSystemd))
        }
        guard let generation = try settings.config.current() else { return plan }
        let prefix = "\(settings.config.directory)/generations/\(generation)"
        for bind in try settings.config.binds(generation: generation) {
            var bind = bind
            if forSystemd { bind.source = "\(settings.config.directory)/current" + bind.source.dropFirst(prefix.count) }
            plan.binds.append(bind)
        }
        return plan
    }

    /// The unit drop-in, `/run/systemd/system/UNIT.d/replica.conf`: the sandbox as directives and
    /// `replica-shift` as a privileged `ExecStartPre=`.
    public static func dropIn(_ settings: ServiceSettings, shiftCommand: String = "/usr/bin/replica-shift") throws(SystemError) -> String {
        let plan = try sandbox(settings, forSystemd: true)
        // The embedded store is mounted by a unit of its own; a store elsewhere is the operator's mount.
        let storeUnit = settings.storePath == EmbeddedStore.defaultMountPoint
            ? ["Wants=replica-store.service", "After=replica-store.service"] : []
        // Its own network: replica-net@NAME.service makes the namespace before the service starts
        // (and removes it after, StopWhenUnneeded=); the service joins it.
        let service = settings.serviceName
        let network = settings.networkNamespace == nil ? [] : ["Requires=replica-net@\(service).service", "After=replica-net@\(service).service"]
        return (["# Generated by replica-shift from the profile of \(settings.unit); edit the profile, not this file.",
                 "[Unit]"] + storeUnit + network + ["RequiresMountsFor=\(settings.storePath)", "",
                 "[Service]", "ExecStartPre=+\(shiftCommand) prepare %n"] + plan.systemdDirectives)
            .joined(separator: "\n") + "\n"
    }
}
