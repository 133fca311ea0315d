/// The one registry of what a profile may say: every section, every key, and the shape of its value.
/// The parser checks each line against it, so a typo (`[Stat]`, `Preserv=`) is an error naming the
/// nearest known name instead of a setting silently ignored; the modules that act on a section read
/// only keys listed here.
public enum ProfileKeys {
    /// The shape of a value. Every value is already free of control characters and valid UTF-8.
    public enum Kind: Equatable, Sendable {
        /// systemd's booleans: `1 yes true on`, `0 no false off`.
        case boolean
        /// One word: no spaces, quotes or backslashes (names, numbers, addresses).
        case word
        /// One of the listed words.
        case choice([String])
        /// One absolute path, normalised (no `.`, `..`, `//` or trailing `/`).
        case path
        /// Space-separated words (systemd's quoting), each checked by the section's owner.
        case words
        /// Space-separated absolute paths; `prefixes` are the characters a path may start with
        /// (`-` for "ignore if missing", as in `ReadWritePaths=-/srv`).
        case paths(prefixes: String)
    }

    /// One key: its kind, and whether each assignment appends (an empty one resets the list).
    public struct Key: Sendable {
        /// The key as written (`ProtectSystem`).
        public var name: String
        /// What its value must be.
        public var kind: Kind
        /// Whether each assignment appends to a list (an empty one resets it) instead of replacing.
        public var isList: Bool

        init(_ name: String, _ kind: Kind, list: Bool = false) { (self.name, self.kind, self.isList) = (name, kind, list) }
    }

    /// systemd's boolean words.
    static let booleans = ["yes", "no", "true", "false", "on", "off", "1", "0"]

    /// Every section and its keys.
    public static let sections: [String: [String: Key]] = [
        "State": index([
            Key("Path", .paths(prefixes: ""), list: true),
            Key("Store", .path),
            Key("SnapshotOnStart", .boolean),
        ]),
        "Config": index([
            Key("Directory", .path),
        ]),
        "Sandbox": index([
            Key("ProtectSystem", .choice(["strict", "full"] + booleans)),
            Key("ProtectHome", .choice(["read-only", "tmpfs"] + booleans)),
            Key("ReadWritePaths", .paths(prefixes: "-"), list: true),
            Key("ReadOnlyPaths", .paths(prefixes: "-"), list: true),
            Key("RuntimeDirectory", .words, list: true),
            Key("LogsDirectory", .words, list: true),
            Key("CacheDirectory", .words, list: true),
            Key("User", .word), Key("Group", .word), Key("SupplementaryGroups", .words, list: true), Key("UMask", .word),
            Key("CapabilityBoundingSet", .words, list: true), Key("AmbientCapabilities", .words, list: true),
            Key("NoNewPrivileges", .boolean), Key("SystemCallFilter", .words, list: true),
            Key("SystemCallArchitectures", .words, list: true), Key("SystemCallErrorNumber", .word),
            Key("RestrictAddressFamilies", .words, list: true), Key("RestrictNamespaces", .words, list: true),
            Key("LockPersonality", .boolean), Key("MemoryDenyWriteExecute", .boolean), Key("RestrictRealtime", .boolean),
            Key("RestrictSUIDSGID", .boolean), Key("ProtectKernelTunables", .boolean), Key("ProtectKernelModules", .boolean),
            Key("ProtectKernelLogs", .boolean), Key("ProtectControlGroups", .boolean), Key("ProtectClock", .boolean),
            Key("ProtectHostname", .boolean), Key("PrivateDevices", .boolean),
            Key("Hardening", .choice(["service"])),
            Key("PrivateTmp", .boolean),
            Key("TemporaryFileSystem", .words, list: true),
            Key("BindPaths", .words, list: true),
            Key("BindReadOnlyPaths", .words, list: true),
            Key("InaccessiblePaths", .paths(prefixes: ""), list: true),
        ]),
        "Network": index([
            Key("Namespace", .word), Key("Bridge", .word), Key("Macvlan", .word), Key("MacvlanMode", .word),
            Key("Subnet", .word), Key("Address", .word), Key("Gateway", .word), Key("HostLink", .word), Key("MTU", .word),
            Key("IPv6", .word), Key("IPv6Token", .word),
        ]),
        "Replication": index([
            Key("Target", .words, list: true), Key("Preserve", .words), Key("PreserveMin", .word), Key("PreserveHourOfDay", .word),
            Key("PreserveDayOfWeek", .word), Key("Latest", .word), Key("MinAge", .word),
        ]),
        "Snapshots": index([
            Key("Subvolume", .word), Key("Preserve", .words), Key("PreserveMin", .word), Key("PreserveHourOfDay", .word),
            Key("PreserveDayOfWeek", .word), Key("Latest", .word), Key("MinAge", .word), Key("MinFree", .word),
            Key("AllowNested", .boolean),
        ]),
    ]

    private static func index(_ keys: [Key]) -> [String: Key] {
        Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) })
    }

    /// The key `name` of `section`, or nil.
    public static func key(_ section: String, _ name: String, in grammar: [String: [String: Key]] = sections) -> Key? {
        grammar[section]?[name]
    }

    /// The sections of a service-set file (`/etc/replica/sets/NAME.conf`, read by the same parser).
    public static let setSections: [String: [String: Key]] = [
        "Set": index([Key("Machine", .words, list: true), Key("SSHKey", .paths(prefixes: ""), list: true), Key("Network", .word),
                      Key("Bridge", .word), Key("Subnet", .word), Key("PrivateUsers", .word), Key("MemoryMax", .word),
                      Key("TasksMax", .word), Key("CPUWeight", .word), Key("CPUQuota", .word), Key("IOWeight", .word),
                      Key("Forward", .words, list: true), Key("Allow", .words, list: true), Key("NAT", .word),
                      Key("Zone", .word), Key("IPv6", .word), Key("Macvlan", .word)]),
    ]

    /// Why `section` is not a known section, with the nearest one.
    static func unknownSection(_ section: String, in grammar: [String: [String: Key]] = sections) -> String {
        "unknown section [\(section)]" + suggestion(section, among: Array(grammar.keys), format: { "[\($0)]" })
            + "; known: " + grammar.keys.sorted().map { "[\($0)]" }.joined(separator: " ")
    }

    /// Why `key` is not a key of `section`: the nearest key, or the section it belongs in.
    static func unknownKey(_ key: String, in section: String, grammar: [String: [String: Key]] = sections) -> String {
        let known = grammar[section].map { Array($0.keys) } ?? []
        let homes = grammar.keys.sorted().filter { grammar[$0]?[key] != nil }
        if !homes.isEmpty {
            return "unknown key in [\(section)]; \(key)= belongs in " + homes.map { "[\($0)]" }.joined(separator: " or ")
        }
        return "unknown key in [\(section)]" + suggestion(key, among: known, format: { "\($0)=" })
            + "; known: " + known.sorted().joined(separator: ", ")
    }

    private static func suggestion(_ word: String, among candidates: [String], format: (String) -> String) -> String {
        let scored = candidates.map { (candidate: $0, distance: editDistance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { ($0.distance, $0.candidate) < ($1.distance, $1.candidate) }),
              best.distance <= max(2, best.candidate.count / 3) else { return "" }
        return "; did you mean \(format(best.candidate))?"
    }

    /// Levenshtein distance: insertions, deletions and substitutions of characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let (a, b) = (Array(a), Array(b))
        guard !a.isEmpty else { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 0..<b.count {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (a[i - 1] == b[j] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }

    /// Refuses a setting whose section or key is not in the registry, or whose value does not fit
    /// its key's kind: what the parser checks for every line, for settings made otherwise (flags).
    public static func validate(_ setting: ProfileSetting, in grammar: [String: [String: Key]] = sections) throws(ProfileError) {
        guard grammar[setting.section] != nil else { throw ProfileError(setting, unknownSection(setting.section, in: grammar)) }
        guard let known = key(setting.section, setting.key, in: grammar) else {
            throw ProfileError(setting, unknownKey(setting.key, in: setting.section, grammar: grammar))
        }
        try check(setting, known)
    }

    /// Checks `setting`'s value against its key's kind. An empty value (a reset) is always accepted.
    static func check(_ setting: ProfileSetting, _ key: Key) throws(ProfileError) {
        let value = setting.value
        guard !value.isEmpty else { return }
        func commentHint() -> String {
            value.contains(" #") || value.contains(" ;") || value.contains("\t#")
                ? "; a comment must be on a line of its own (a line starting with # or ;), as in systemd units" : ""
        }
        switch key.kind {
        case .boolean:
            _ = try setting.boolean()
        case .word:
            guard !value.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" || $0 == "\\" }) else {
                throw ProfileError(setting, "takes one word, without spaces, quotes or backslashes" + commentHint())
            }
        case .choice(let words):
            guard words.contains(value) else {
                throw ProfileError(setting, "takes one of \(words.joined(separator: ", "))" + commentHint())
            }
        case .path:
            guard !value.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" || $0 == "\\" }) else {
                throw ProfileError(setting, "takes one absolute path, without spaces, quotes or backslashes" + commentHint())
            }
            _ = try ProfilePath.normalized(value, setting)
        case .words:
            _ = try ProfileWords.split(setting)
        case .paths(let prefixes):
            for word in try ProfileWords.split(setting) {
                let path = word.first.map { prefixes.contains($0) } == true ? String(word.dropFirst()) : word
                do throws(ProfileError) { _ = try ProfilePath.normalized(path, setting) } catch {
                    throw ProfileError(setting, error.rule + commentHint())
                }
            }
        }
    }
}

/// Paths in profiles: absolute and normalised.
public enum ProfilePath {
    /// `path` with `//` collapsed and a trailing `/` removed; refused when relative or when it has a
    /// `.` or `..` component (a profile names exactly what it means).
    public static func normalized(_ path: String, _ setting: ProfileSetting) throws(ProfileError) -> String {
        guard path.hasPrefix("/") else {
            throw ProfileError(setting, "\"\(path)\" is not an absolute path; write it from / (every path word is checked)")
        }
        let parts = path.split(separator: "/")
        if parts.contains(where: { $0 == "." || $0 == ".." }) {
            throw ProfileError(setting, "\"\(path)\" has a . or .. component; write the path it means")
        }
        return "/" + parts.joined(separator: "/")
    }
}
