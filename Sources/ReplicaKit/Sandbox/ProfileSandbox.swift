extension SandboxPlan {
    /// Builds the plan from `[Sandbox]`:
    ///
    /// ```ini
    /// [Sandbox]
    /// # default; yes: /usr /boot /efi read-only; full: and /etc; no: nothing
    /// ProtectSystem=strict
    /// # /home /root /run/user: yes (hidden), read-only or no
    /// ProtectHome=yes
    /// ReadWritePaths=/srv/spool -/var/lib/optional
    /// ReadOnlyPaths=/srv/static
    /// # /run/app, /var/log/app, /var/cache/app: made if missing, always writable
    /// RuntimeDirectory=app
    /// LogsDirectory=app
    /// CacheDirectory=app
    /// # private, empty /tmp and /var/tmp
    /// PrivateTmp=yes
    /// TemporaryFileSystem=/run/app:mode=0755,size=16M,noexec
    /// BindPaths=/srv/uploads:/var/lib/app/uploads
    /// BindReadOnlyPaths=-/etc/app/extra.conf:/etc/app/extra.conf:norbind
    /// InaccessiblePaths=/home /root
    /// ```
    ///
    /// List keys take several space-separated entries (double quotes for spaces) and an empty
    /// assignment resets them. Errors name the file, the line and the key.
    public init(profile: Profile) throws(ProfileError) {
        self.init()
        let section = "Sandbox"
        try HardeningPreset.requireUser(profile, section: section)
        let profile = Profile(unit: profile.unit, files: profile.files, settings: HardeningPreset.expand(profile.settings))
        if let setting = profile.value(section, "ProtectSystem"), !setting.value.isEmpty {
            let on = ProtectSystem(rawValue: setting.value) == nil ? try setting.boolean() : false
            protectSystem = ProtectSystem(rawValue: setting.value) ?? (on ? .yes : .no)
        }
        if let setting = profile.value(section, "ProtectHome"), setting.value == "tmpfs" {
            throw ProfileError(setting, "tmpfs is not applied as documented by this systemd (before 257 the tmpfs are writable, "
                               + "systemd issue 34825); use ProtectHome=yes, or TemporaryFileSystem=/home:ro for an empty read-only /home")
        }
        if let setting = profile.value(section, "ProtectHome"), !setting.value.isEmpty {
            let on = ProtectHome(rawValue: setting.value) == nil ? try setting.boolean() : false
            protectHome = ProtectHome(rawValue: setting.value) ?? (on ? .yes : .no)
        }
        for (key, writable) in [("ReadWritePaths", true), ("ReadOnlyPaths", false)] {
            for setting in profile.list(section, key) {
                for word in try ProfileWords.split(setting) {
                    let optional = word.hasPrefix("-")
                    accessPaths.append(AccessPath(try ProfilePath.normalized(optional ? String(word.dropFirst()) : word, setting),
                                                  writable: writable, optional: optional))
                }
            }
        }
        for kind in ServiceDirectory.Kind.allCases {
            for setting in profile.list(section, kind.rawValue) {
                for word in try ProfileWords.split(setting) { serviceDirectories.append(try Self.serviceDirectory(kind, word, setting)) }
            }
        }
        if let setting = profile.value(section, "PrivateTmp"), try setting.boolean() {
            temporaryDirectories += ["/tmp", "/var/tmp"].map { TemporaryDirectory($0, mode: 0o1777) }
        }
        for setting in profile.list(section, "TemporaryFileSystem") {
            for word in try ProfileWords.split(setting) { temporaryDirectories.append(try Self.temporaryDirectory(word, setting)) }
        }
        for (key, readOnly) in [("BindPaths", false), ("BindReadOnlyPaths", true)] {
            for setting in profile.list(section, key) {
                for word in try ProfileWords.split(setting) { binds.append(try Self.bind(word, readOnly: readOnly, setting)) }
            }
        }
        for setting in profile.list(section, "InaccessiblePaths") {
            for word in try ProfileWords.split(setting) { inaccessiblePaths.append(try ProfilePath.normalized(word, setting)) }
        }
        confinement = try Confinement(profile: profile)
        do throws(ReplicaError) { try validate() } catch {
            let setting = profile.settings.last { $0.section == section } ?? ProfileSetting(
                section: section, key: "Sandbox", value: "", file: profile.files.first ?? profile.unit, line: 0)
            throw ProfileError(setting, error.hint ?? error.description)
        }
    }

    /// A `RuntimeDirectory=`-style name: relative to its base, no `.` or `..`, and only characters
    /// every directive and mount option takes as they are (as state paths).
    static func serviceDirectory(_ kind: ServiceDirectory.Kind, _ word: String, _ setting: ProfileSetting) throws(ProfileError) -> ServiceDirectory {
        let parts = word.split(separator: "/", omittingEmptySubsequences: false)
        guard !word.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              word.allSatisfy(StatePath.isSafe) else {
            throw ProfileError(setting, "\"\(word)\" is not a name relative to \(kind.base) (letters, digits and / . _ - @ + ~, "
                               + "no . or .. components, no leading /); write e.g. \(kind.rawValue)=app")
        }
        return ServiceDirectory(kind, word)
    }

    /// `PATH[:OPTIONS]` with `mode=`, `size=` (K, M, G suffixes) and `ro`, `nosuid`, `nodev`, `noexec`.
    static func temporaryDirectory(_ word: String, _ setting: ProfileSetting) throws(ProfileError) -> TemporaryDirectory {
        let parts = word.split(separator: ":", maxSplits: 1).map(String.init)
        var tmp = TemporaryDirectory(try ProfilePath.normalized(parts[0], setting))
        guard parts.count > 1 else { return tmp }
        tmp.flags = []
        for option in parts[1].split(separator: ",").map(String.init) {
            if option.hasPrefix("mode="), let mode = UInt16(option.dropFirst(5), radix: 8), mode <= 0o7777 {
                tmp.mode = mode
            } else if option.hasPrefix("size="), let size = parseByteSize(String(option.dropFirst(5))) {
                tmp.size = size
            } else if let flag = ["ro": MountFlags.readOnly, "nosuid": .noSetUID, "nodev": .noDevices, "noexec": .noExec][option] {
                tmp.flags.insert(flag)
            } else {
                throw ProfileError(setting, "\"\(option)\" is not mode=OCTAL, size=N[KMG], ro, nosuid, nodev or noexec")
            }
        }
        return tmp
    }

    /// `[-]SOURCE[:TARGET[:rbind|norbind]]`, systemd's `BindPaths=` syntax.
    static func bind(_ word: String, readOnly: Bool, _ setting: ProfileSetting) throws(ProfileError) -> Bind {
        let optional = word.hasPrefix("-")
        let parts = (optional ? String(word.dropFirst()) : word).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...3).contains(parts.count), !parts[0].isEmpty else {
            throw ProfileError(setting, "\"\(word)\" is not [-]SOURCE[:TARGET[:rbind|norbind]]")
        }
        let target = parts.count > 1 && !parts[1].isEmpty ? parts[1] : parts[0]
        var recursive = true
        if parts.count == 3 {
            switch parts[2] {
            case "rbind": recursive = true
            case "norbind": recursive = false
            default: throw ProfileError(setting, "\"\(parts[2])\" is not rbind or norbind")
            }
        }
        return Bind(try ProfilePath.normalized(parts[0], setting), to: try ProfilePath.normalized(target, setting),
                    readOnly: readOnly, recursive: recursive, optional: optional)
    }
}
