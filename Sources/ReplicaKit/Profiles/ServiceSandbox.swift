extension ServiceProfile {
    /// The full sandbox: the profile's `[Sandbox]`, each state subvolume bound writable over its
    /// directory, each file of the config overlay bound read-only over its path, and the network
    /// namespace of its `[Network]`; the store and the rest of Replica's own paths hidden
    /// (`replicaPaths`), so the service reaches its own state only through its binds.
    ///
    /// `forSystemd` renders it for the unit's drop-in, with three differences:
    /// - config sources go through the `current` link, so a switch takes effect at the next start
    ///   without a new drop-in (for `replica-run` they name the generation itself);
    /// - state binds are optional (`BindPaths=-…`): systemd sets up `BindPaths=` for the `+`
    ///   pre command too, before `replica-shift prepare` has made the subvolume on first start.
    ///   The service still never runs without its state: prepare fails the start when it cannot
    ///   make the subvolume, and ExecStart's namespace is set up after prepare succeeded;
    /// - `/run/credentials` is hidden only for `replica-run`: systemd itself shows a unit its own
    ///   credentials and no other unit's.
    public func sandbox(forSystemd: Bool = false) throws(ReplicaError) -> SandboxPlan {
        var plan = sandbox
        // systemd shows a unit only its own credentials; elsewhere every unit's are hidden.
        plan.hiddenPaths = replicaPaths + (forSystemd ? [] : [Self.credentialsDirectory])
        plan.networkNamespacePath = networkNamespace.map { "\(SandboxPlan.networkNamespaceDirectory)/\($0)" }
        for directory in state {
            plan.binds.append(Bind("\(storePath)/\(directory.subvolume)", to: directory.path, readOnly: false, optional: forSystemd))
        }
        guard let generation = try config.current() else { return plan }
        let prefix = "\(config.directory)/generations/\(generation)"
        for bind in try config.binds(generation: generation) {
            var bind = bind
            if forSystemd { bind.source = "\(config.directory)/current" + bind.source.dropFirst(prefix.count) }
            plan.binds.append(bind)
        }
        return plan
    }

    /// Where systemd keeps each unit's credentials (`LoadCredential=`, `SetCredential=`).
    public static let credentialsDirectory = "/run/credentials"
}
