/// `[Sandbox] Hardening=service`: the settings `systemd-analyze security` rewards, for a service that
/// needs no privilege, so an operator does not have to know two dozen directives. They take the
/// place of the `Hardening=` line, so the profile's own settings after it add to or override them:
///
/// ```ini
/// [Sandbox]
/// Hardening=service
/// # nginx binds port 80 and switches to www-data itself
/// CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID
/// RestrictAddressFamilies=AF_NETLINK
/// ```
public enum HardeningPreset {
    /// The settings of `Hardening=service`, in the order they apply.
    public static let service: [(key: String, value: String)] = [
        ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""), ("UMask", "0077"),
        ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"), ("ProtectClock", "yes"), ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"), ("LockPersonality", "yes"), ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"), ("RestrictSUIDSGID", "yes"), ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallArchitectures", "native"), ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"), ("SystemCallErrorNumber", "EPERM"),
    ]

    /// `Hardening=service` needs a `User=`: as root without capabilities a service still opens every
    /// root-owned file (/etc/shadow, other services' root-owned state) and signals root's processes,
    /// so the preset alone would promise more than it gives. `User=root` says it knowingly.
    static func requireUser(_ profile: Profile, section: String) throws(ProfileError) {
        guard let setting = profile.value(section, "Hardening"), setting.value == "service",
              (profile.value(section, "User")?.value ?? "").isEmpty else { return }
        throw ProfileError(setting, "Hardening=service as root still reads every root-owned file (/etc/shadow, other services' state) "
                           + "and signals root's processes: add User=NAME (a user of its own; a new state directory becomes its), "
                           + "or User=root to run as root knowingly")
    }

    /// `settings` with each `Hardening=` line replaced by its preset's settings (same file and
    /// line, so an error in what follows still names where it came from).
    public static func expand(_ settings: [ProfileSetting]) -> [ProfileSetting] {
        settings.flatMap { setting -> [ProfileSetting] in
            guard setting.key == "Hardening", setting.value == "service" else { return setting.key == "Hardening" ? [] : [setting] }
            return service.map { ProfileSetting(section: setting.section, key: $0.key, value: $0.value, file: setting.file, line: setting.line) }
        }
    }
}
