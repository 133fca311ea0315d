/// One `Key=Value` line of a profile, with where it came from.
public struct ProfileSetting: Equatable, Sendable {
    /// The section it is in, without brackets (`State`).
    public var section: String
    /// The key (`Path`).
    public var key: String
    /// The value as written, whitespace around it dropped.
    public var value: String
    /// The file it was read from.
    public var file: String
    /// Its line number in that file (1-based; a continued line counts where it starts).
    public var line: Int

    /// A setting read from `file` at `line`.
    public init(section: String, key: String, value: String, file: String, line: Int) {
        (self.section, self.key, self.value, self.file, self.line) = (section, key, value, file, line)
    }

    /// `web.service.conf:12`, for messages.
    public var location: String { "\(file):\(line)" }

    /// The value as one of systemd's booleans (`1 yes true on` / `0 no false off`), or an error
    /// naming this line and key.
    public func boolean() throws(ProfileError) -> Bool {
        switch value.lowercased() {
        case "1", "yes", "true", "on": return true
        case "0", "no", "false", "off": return false
        default: throw ProfileError(self, "takes yes or no")
        }
    }
}

/// A service profile: systemd-style INI, merged from the main file and its drop-ins in the order
/// systemd merges unit files. Settings keep their order and origin.
public struct Profile: Equatable, Sendable {
    /// The unit this profile is for, e.g. `web.service`.
    public var unit: String
    /// Every file read, in merge order (main file first, then drop-ins).
    public var files: [String]
    /// All settings in merge order.
    public var settings: [ProfileSetting]

    /// The profile of `unit` made of `settings` read from `files`.
    public init(unit: String, files: [String] = [], settings: [ProfileSetting] = []) {
        self.unit = unit
        self.files = files
        self.settings = settings
    }

    /// The unit without `.service`: the default name of its subvolume and its network namespace.
    public var serviceName: String { unit.hasSuffix(".service") ? String(unit.dropLast(".service".count)) : unit }

    /// The network namespace the service joins: `[Network] Namespace=`, else its service name;
    /// nil when the profile has no `[Network]` section.
    public var networkNamespace: String? {
        guard settings.contains(where: { $0.section == "Network" }) else { return nil }
        return value("Network", "Namespace")?.value ?? serviceName
    }

    /// The values of a list key: each assignment appends, an empty assignment resets the list.
    public func list(_ section: String, _ key: String) -> [ProfileSetting] {
        var result: [ProfileSetting] = []
        for setting in settings where setting.section == section && setting.key == key {
            if setting.value.isEmpty { result.removeAll() } else { result.append(setting) }
        }
        return result
    }

    /// The value of a single-valued key: the last assignment wins; an empty one resets to unset.
    public func value(_ section: String, _ key: String) -> ProfileSetting? {
        guard let last = settings.last(where: { $0.section == section && $0.key == key }), !last.value.isEmpty else {
            return nil
        }
        return last
    }
}

/// A profile line that cannot be understood or cannot take effect: a `ReplicaError` with its file,
/// line and key (`location`) and the rule (`hint`), reason `refused`. One error type for every module.
public typealias ProfileError = ReplicaError

extension ReplicaError {
    /// An error at `file`:`line`, about `key`; `reason` says what is wrong and how to fix it.
    public init(file: String, line: Int, key: String?, reason: String) {
        self.init(file: file, line: line, key: key, rule: reason)
    }

    /// An error about one setting: its file, line and key.
    public init(_ setting: ProfileSetting, _ reason: String) {
        self.init(file: setting.file, line: setting.line, key: setting.key, rule: reason)
    }
}
