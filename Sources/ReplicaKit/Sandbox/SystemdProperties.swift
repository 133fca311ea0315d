extension SandboxPlan {
    /// What systemd reports for a unit whose drop-in says this plan, property by property, as the
    /// D-Bus values of `org.freedesktop.systemd1.Service` (`busctl get-property … NAME`):
    /// `replica-shift prepare` compares them with the unit systemd is starting, and refuses the start
    /// where they differ. Properties the plan leaves at systemd's default are listed with that
    /// default where it is fixed (an empty list, `false`, `""`) and left out where it depends on the
    /// system (an unset umask, an unset system call errno).
    public var systemdProperties: [String: BusValue] {
        let bind = { (bind: Bind) -> BusValue in
            .record([.string(bind.source), .string(bind.target), .bool(bind.optional), .unsigned(bind.recursive ? Self.recursiveBind : 0)])
        }
        let strings = { (values: [String]) in BusValue.list(values.map(BusValue.string)) }
        let access = { (writable: Bool) in strings(accessPaths.filter { $0.writable == writable }.map { ($0.optional ? "-" : "") + $0.path }) }
        var properties: [String: BusValue] = [
            "PrivateMounts": .bool(true),
            "ProtectSystem": .string(protectSystem.rawValue),
            "ProtectHome": .string(protectHome.rawValue),
            "TemporaryFileSystem": .list(temporaryDirectories.map { .record([.string($0.path), .string($0.systemdOptions)]) }),
            "BindPaths": .list(binds.filter { !$0.readOnly }.map(bind)),
            "BindReadOnlyPaths": .list(binds.filter(\.readOnly).map(bind)),
            "InaccessiblePaths": strings(inaccessiblePaths + hiddenPaths.map { "-" + $0 }),
            "ReadWritePaths": access(true),
            "ReadOnlyPaths": access(false),
            "NetworkNamespacePath": .string(networkNamespacePath ?? ""),
        ]
        for kind in ServiceDirectory.Kind.allCases {
            properties[kind.rawValue] = strings(serviceDirectories.filter { $0.kind == kind }.map(\.name))
        }
        properties.merge(confinement.systemdProperties) { plan, _ in plan }
        return properties
    }

    /// `MS_REC`: how systemd reports a recursive bind (`rbind`).
    static let recursiveBind: UInt64 = 16384

    /// A property as systemd reports it, reduced to what the plan can say: capability masks to the
    /// capabilities that exist (systemd's "every capability" sets all 64 bits), the system call
    /// filter to the calls of this architecture (`SyscallFilter.comparable`).
    public static func comparable(_ name: String, _ value: BusValue) -> BusValue {
        if name == "SystemCallFilter" { return SyscallFilter.comparable(value) }
        guard ["CapabilityBoundingSet", "AmbientCapabilities"].contains(name), case .unsigned(let mask) = value else { return value }
        return .unsigned(mask & CapabilitySet.all.mask)
    }
}

extension Confinement {
    /// The confinement's part of `SandboxPlan.systemdProperties`, following `systemdDirectives`.
    public var systemdProperties: [String: BusValue] {
        var properties: [String: BusValue] = [
            "User": .string(user ?? ""), "Group": .string(group ?? ""),
            "SupplementaryGroups": .list(supplementaryGroups.map(BusValue.string)),
            "AmbientCapabilities": .unsigned(ambientCapabilities.mask),
            "NoNewPrivileges": .bool(noNewPrivileges),
            "SystemCallArchitectures": .list(nativeArchitectureOnly || usesSeccomp ? [.string("native")] : []),
        ]
        for (on, key) in [(lockPersonality, "LockPersonality"), (memoryDenyWriteExecute, "MemoryDenyWriteExecute"),
                          (restrictRealtime, "RestrictRealtime"), (restrictSUIDSGID, "RestrictSUIDSGID"),
                          (protectKernelTunables, "ProtectKernelTunables"), (protectKernelModules, "ProtectKernelModules"),
                          (protectKernelLogs, "ProtectKernelLogs"), (protectControlGroups, "ProtectControlGroups"),
                          (protectClock, "ProtectClock"), (protectHostname, "ProtectHostname"), (privateDevices, "PrivateDevices")] {
            properties[key] = .bool(on)
        }
        if let umask { properties["UMask"] = .unsigned(UInt64(umask)) }
        // As systemd reports it once loaded: the settings that drop capabilities already applied.
        properties["CapabilityBoundingSet"] = .unsigned(effectiveBoundingSet.mask)
        if let syscallErrorNumber { properties["SystemCallErrorNumber"] = .integer(Int64(syscallErrorNumber)) }
        properties["SystemCallFilter"] = syscallFilter?.systemdValue ?? SyscallFilter.none
        if let restrictAddressFamilies {
            properties["RestrictAddressFamilies"] = .record([.bool(restrictAddressFamilies.allowList),
                                                             .list(restrictAddressFamilies.names.sorted().map(BusValue.string))])
        }
        if let allowedNamespaces { properties["RestrictNamespaces"] = .unsigned(allowedNamespaces.flags) }
        return properties
    }
}
