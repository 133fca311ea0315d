import Glibc

extension Confinement {
    /// Reads the confinement keys of `[Sandbox]`, each as systemd 252 reads it (merging repeated
    /// assignments the same way), refusing what systemd would only warn about and ignore: unknown
    /// system calls, groups, capabilities, address families, errno names, architectures.
    public init(profile: Profile, section: String = "Sandbox") throws(ProfileError) {
        self.init()
        func settings(_ key: String) -> [ProfileSetting] { profile.settings.filter { $0.section == section && $0.key == key } }
        func flag(_ key: String) throws(ProfileError) -> Bool { try profile.value(section, key)?.boolean() ?? false }

        if let setting = profile.value(section, "User"), !setting.value.isEmpty { user = try Self.name(setting) }
        if let setting = profile.value(section, "Group"), !setting.value.isEmpty { group = try Self.name(setting) }
        for setting in profile.list(section, "SupplementaryGroups") {
            for word in try ProfileWords.split(setting) { supplementaryGroups.append(try Self.name(setting, word)) }
        }
        if let setting = profile.value(section, "UMask"), !setting.value.isEmpty {
            guard let mask = mode_t(setting.value, radix: 8), mask <= 0o777 else {
                throw ProfileError(setting, "takes an octal mask from 0000 to 0777, e.g. 0027")
            }
            umask = mask
        }
        for setting in settings("CapabilityBoundingSet") { try Self.merge(setting, into: &capabilityBoundingSet, initial: .all) }
        var ambient: CapabilitySet?
        for setting in settings("AmbientCapabilities") { try Self.merge(setting, into: &ambient, initial: CapabilitySet()) }
        ambientCapabilities = ambient ?? CapabilitySet()
        noNewPrivileges = try flag("NoNewPrivileges")
        for setting in settings("SystemCallFilter") { try SyscallFilter.parse(setting.value, into: &syscallFilter, setting) }
        if let setting = profile.value(section, "SystemCallErrorNumber"), !setting.value.isEmpty {
            guard let number = SyscallFilter.errnoNumber(setting.value) else {
                throw ProfileError(setting, "\"\(setting.value)\" is not an errno name (EPERM), a number from 0 to 4095, or kill")
            }
            syscallErrorNumber = number == SyscallFilter.killNumber ? nil : number
        }
        for setting in profile.list(section, "SystemCallArchitectures") {
            for word in try ProfileWords.split(setting) {
                guard word == "native" || word == "x86-64" else {
                    throw ProfileError(setting, "\"\(word)\" cannot be honoured: Replica filters native calls only and kills every other "
                                       + "ABI (i386, x32); write SystemCallArchitectures=native")
                }
                nativeArchitectureOnly = true
            }
        }
        for setting in settings("RestrictAddressFamilies") { try Self.merge(setting, into: &restrictAddressFamilies) }
        for setting in settings("RestrictNamespaces") { try Self.merge(setting, into: &allowedNamespaces) }
        lockPersonality = try flag("LockPersonality")
        memoryDenyWriteExecute = try flag("MemoryDenyWriteExecute")
        restrictRealtime = try flag("RestrictRealtime")
        restrictSUIDSGID = try flag("RestrictSUIDSGID")
        protectKernelTunables = try flag("ProtectKernelTunables")
        protectKernelModules = try flag("ProtectKernelModules")
        protectKernelLogs = try flag("ProtectKernelLogs")
        protectControlGroups = try flag("ProtectControlGroups")
        protectClock = try flag("ProtectClock")
        protectHostname = try flag("ProtectHostname")
        privateDevices = try flag("PrivateDevices")
    }

    /// A user or group: a name as useradd takes it, or a number.
    static func name(_ setting: ProfileSetting, _ word: String? = nil) throws(ProfileError) -> String {
        let name = word ?? setting.value
        let valid = !name.isEmpty && name.utf8.count <= 31 && !name.hasPrefix("-")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
        guard valid else { throw ProfileError(setting, "\"\(name)\" is not a user or group name (letters, digits, _ . -, at most 31) or number") }
        // (uid_t)-1 means "unchanged" to setuid(2), and -2 and 65535 are nobody's old overflow IDs:
        // a profile naming them would keep or fake an identity. systemd refuses them too.
        if name.allSatisfy(\.isNumber) {
            guard let number = UInt32(name), number != .max, number != .max - 1, number != 65535 else {
                throw ProfileError(setting, "\(name) is not a user or group number a process can take (0 to 4294967293, not 65535)")
            }
        }
        return name
    }

    /// systemd's capability-set merge: the first assignment (or an empty one, or a lone `~`)
    /// replaces the set; later ones add (or, with `~`, take away) the names they list.
    static func merge(_ setting: ProfileSetting, into set: inout CapabilitySet?, initial: CapabilitySet) throws(ProfileError) {
        let (invert, words) = try ProfileWords.splitInvertible(setting)
        var listed = CapabilitySet()
        for word in words {
            guard let number = CapabilitySet.number(word) else {
                throw ProfileError(setting, "unknown capability \(word); names are as in capabilities(7), e.g. CAP_NET_BIND_SERVICE")
            }
            listed.numbers.insert(number)
        }
        let current = set ?? initial
        if listed.isEmpty || set == nil || current == initial {
            set = invert ? CapabilitySet(CapabilitySet.all.numbers.subtracting(listed.numbers)) : listed
        } else {
            set = invert ? CapabilitySet(current.numbers.subtracting(listed.numbers)) : CapabilitySet(current.numbers.union(listed.numbers))
        }
    }

    /// `RestrictAddressFamilies=`: empty resets, `none` allows no family, the first list decides
    /// allow (`AF_UNIX AF_INET`) or deny (`~AF_PACKET`), later ones add or, with the other sign, remove.
    static func merge(_ setting: ProfileSetting, into families: inout AddressFamilies?) throws(ProfileError) {
        guard !setting.value.isEmpty else { families = nil; return }
        guard setting.value != "none" else { families = AddressFamilies(allowList: true, families: []); return }
        let (invert, words) = try ProfileWords.splitInvertible(setting)
        var current = families ?? AddressFamilies(allowList: !invert, families: [])
        for word in words {
            guard let number = AddressFamilies.known[word] else {
                throw ProfileError(setting, "unknown address family \(word); e.g. AF_UNIX AF_INET AF_INET6 AF_NETLINK")
            }
            if current.allowList != invert { current.families.insert(number) } else { current.families.remove(number) }
        }
        families = current
    }

    /// `RestrictNamespaces=`: yes (none allowed), no (all), or the types allowed (`~` the types
    /// refused); a later list adds allowed types, a later `~` list takes them away.
    static func merge(_ setting: ProfileSetting, into allowed: inout NamespaceTypes?) throws(ProfileError) {
        if setting.value.isEmpty { allowed = nil; return }
        if let on = try? setting.boolean() { allowed = on ? NamespaceTypes(flags: 0) : nil; return }
        let (invert, words) = try ProfileWords.splitInvertible(setting)
        var listed: UInt64 = 0
        for word in words {
            guard let flag = NamespaceTypes.all.first(where: { $0.name == word })?.flag else {
                throw ProfileError(setting, "unknown namespace type \(word); one of " + NamespaceTypes.all.map(\.name).joined(separator: " "))
            }
            listed |= flag
        }
        if let current = allowed {
            allowed = NamespaceTypes(flags: invert ? current.flags & ~listed : current.flags | listed)
        } else {
            allowed = NamespaceTypes(flags: invert ? NamespaceTypes.allFlags & ~listed : listed)
        }
    }
}
