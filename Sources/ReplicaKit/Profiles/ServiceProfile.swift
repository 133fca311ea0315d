/// A service's whole profile as one typed value: parsed by `ProfileParser`, merged by
/// `ProfileLoader`, each section read here once. ReplicaStore reads `[Snapshots]` and ReplicaNet
/// `[Network]` from `settings` (already checked against `ProfileKeys`); everything else is typed:
///
/// ```ini
/// [State]
/// # each on a subvolume of its own (see `StatePath`)
/// Path=/var/lib/web /var/cache/web
/// # default: the embedded store's mount point
/// Store=/run/replica/store
/// # a read-only snapshot before each start
/// SnapshotOnStart=yes
///
/// [Config]
/// # default
/// Directory=/var/lib/replica/config/web.service
///
/// [Sandbox] …                        # SandboxPlan(profile:)
/// [Network] …                        # the service joins its own network namespace
/// [Snapshots] …                      # retention, read by ReplicaStore
/// ```
public struct ServiceProfile: Equatable, Sendable {
    /// The unit, e.g. `web.service`.
    public var unit: String
    /// Every file read, in merge order.
    public var files: [String]
    /// Every setting in merge order, each checked against `ProfileKeys`.
    public var settings: [ProfileSetting]
    /// The state directories and the subvolumes that hold them.
    public var state: [StatePath]
    /// Where the store is mounted.
    public var storePath: String
    /// `[State] SnapshotOnStart=`: snapshot the state before each start.
    public var snapshotOnStart: Bool
    /// The name the service's subvolumes are derived from: `[Snapshots] Subvolume=`, else the
    /// service name.
    public var subvolume: String
    /// The config generations (`[Config] Directory=`, else `/var/lib/replica/config/UNIT`).
    public var config: ConfigStore
    /// The profile's own `[Sandbox]`; `sandbox(forSystemd:)` adds state, config and network.
    public var sandbox: SandboxPlan
    /// The network namespace the service joins (`[Network] Namespace=`, else its service name);
    /// nil when the profile has no `[Network]` section.
    public var networkNamespace: String?

    /// The unit without `.service`.
    public var serviceName: String { raw.serviceName }

    /// The merged settings, for the sections other modules read (`value`, `list`).
    public var raw: Profile { Profile(unit: unit, files: files, settings: settings) }

    /// The profile of a unit that has no file: every default (for commands given a bare name).
    public static func bare(_ name: String) throws(ProfileError) -> ServiceProfile {
        try ServiceProfile(Profile(unit: try ProfileLoader.unit(name).rawValue))
    }

    /// Reads and checks every section of `profile`; the first setting that cannot be honoured is the error.
    public init(_ profile: Profile) throws(ProfileError) {
        unit = profile.unit
        files = profile.files
        settings = profile.settings
        storePath = try profile.value("State", "Store").map { (s) throws(ProfileError) in try ProfilePath.normalized(s.value, s) }
            ?? Self.embeddedStore
        snapshotOnStart = try profile.value("State", "SnapshotOnStart")?.boolean() ?? false
        let configDirectory = try profile.value("Config", "Directory").map { (s) throws(ProfileError) in
            try ProfilePath.normalized(s.value, s)
        } ?? "\(ConfigStore.defaultParent)/\(profile.unit)"
        config = ConfigStore(directory: configDirectory)
        if let setting = profile.value("Snapshots", "Subvolume") {
            try StatePath.validateBaseName(setting.value, setting)
            subvolume = setting.value
        } else {
            subvolume = profile.serviceName
        }
        try Self.refuseMachineRoot(subvolume, of: profile, profile.value("Snapshots", "Subvolume"))
        var paths: [(path: String, setting: ProfileSetting)] = []
        for setting in profile.list("State", "Path") {
            for word in try ProfileWords.split(setting) { paths.append((try ProfilePath.normalized(word, setting), setting)) }
        }
        state = []
        for (index, entry) in paths.enumerated() {
            try StatePath.refuse(entry.path, store: storePath, config: configDirectory, entry.setting)
            for earlier in paths[..<index] {
                if earlier.path == entry.path || StatePath.isBelow(entry.path, earlier.path) || StatePath.isBelow(earlier.path, entry.path) {
                    throw ProfileError(entry.setting, "\(entry.path) and \(earlier.path) (line \(earlier.setting.line)) would map to one "
                                       + "subvolume or nest one in the other; list each state directory once, none inside another")
                }
            }
            let name = paths.count == 1 ? subvolume : StatePath.subvolumeName(base: subvolume, path: entry.path)
            do throws(ReplicaError) { try StatePath.validateName(name) } catch {
                throw ProfileError(entry.setting, error.hint ?? "\(error)")
            }
            try Self.refuseMachineRoot(name, of: profile, profile.value("Snapshots", "Subvolume") ?? entry.setting)
            state.append(StatePath(path: entry.path, subvolume: name))
        }
        sandbox = try SandboxPlan(profile: profile)
        networkNamespace = profile.networkNamespace
        try Self.refuseReplicaTargets(sandbox, hidden: replicaPaths, of: profile)
    }

    /// What no service reaches, whatever its profile says: its store, its config generations
    /// (bound in file by file), and Replica's own folders, outermost first.
    public var replicaPaths: [String] {
        let all = Set([storePath, config.directory] + Self.replicaDirectories)
        return all.filter { path in !all.contains { StatePath.isBelow(path, $0) } }.sorted()
    }

    /// Replica's folders: profiles and sets, runtime (the embedded store, leases' records, machines),
    /// state (the store image, config generations, leases, metrics).
    public static let replicaDirectories = ["/etc/replica", "/run/replica", "/var/lib/replica"]

    /// A `[Sandbox]` mount at or below one of Replica's paths would land in what is hidden.
    static func refuseReplicaTargets(_ plan: SandboxPlan, hidden: [String], of profile: Profile) throws(ProfileError) {
        for target in plan.targets {
            guard let own = hidden.first(where: { target == $0 || StatePath.isBelow(target, $0) }) else { continue }
            let reason = "\(target) is \(target == own ? "" : "below \(own), ")Replica's own (the store, profiles, leases, config "
                + "generations), which no service may reach; choose another path"
            // The line that asked for it: the path itself, or a service directory's name below its base.
            let asked = { (setting: ProfileSetting) -> Bool in
                guard setting.section == "Sandbox" else { return false }
                guard let kind = ServiceDirectory.Kind(rawValue: setting.key) else { return setting.value.contains(target) }
                return target.hasPrefix(kind.base + "/") && setting.value.contains(target.dropFirst(kind.base.count + 1))
            }
            guard let setting = profile.settings.last(where: asked) else {
                throw ProfileError(file: profile.files.first ?? profile.unit, line: 0, key: nil, reason: reason)
            }
            throw ProfileError(setting, reason)
        }
    }

    /// A machine's root (`replica-machine@NAME`) is its own unit's alone: another profile naming it
    /// would snapshot, prune or roll back that machine.
    static func refuseMachineRoot(_ name: String, of profile: Profile, _ setting: ProfileSetting?) throws(ProfileError) {
        guard name.hasPrefix(SubvolumeName.machineRootPrefix), name != profile.serviceName else { return }
        let reason = "\(name) is how snapshot runs name machine \(name.dropFirst(SubvolumeName.machineRootPrefix.count))'s root, "
            + "kept for \(name).service itself; choose another [Snapshots] Subvolume="
        guard let setting else { throw ProfileError(file: profile.files.first ?? profile.unit, line: 0, key: nil, reason: reason) }
        throw ProfileError(setting, reason)
    }

    /// `/run/replica/store`, where `replica-store` mounts the embedded store.
    public static let embeddedStore = "/run/replica/store"
}

/// A state directory of a service and the store subvolume that holds it.
///
/// Names are derived so that no two services, and no two paths of one service, ever share one:
/// a service with one state directory uses its own name (`web`); with several, each is
/// `NAME+ESCAPED` where ESCAPED is the path as `systemd-escape --path` writes it
/// (`web+var-lib-web`, `web+var-cache-my\x2dapp`). Unit names never contain `+` and escaped paths
/// never do, so the split is unambiguous. Names starting with `.` are the store's own (staging)
/// and `snapshots` is its snapshot folder: both are refused.
public struct StatePath: Equatable, Sendable {
    /// The state directory, absolute (`/var/lib/web`).
    public var path: String
    /// The subvolume on the store that holds it (`web`, `web+var-lib-web`).
    public var subvolume: String

    /// A state directory and its subvolume.
    public init(path: String, subvolume: String) { (self.path, self.subvolume) = (path, subvolume) }

    /// The subvolume of `path` for a service with several state directories.
    public static func subvolumeName(base: String, path: String) -> String { "\(base)+\(SystemdEscape.path(path))" }

    /// Characters a state path may hold: what is safe in every systemd directive and mount option
    /// it ends up in (no spaces, quotes, `:`, `%` or backslashes).
    static func isSafe(_ c: Character) -> Bool {
        guard let byte = c.asciiValue else { return false }
        return IdentityText.isLetterOrDigit(byte) || "/._-@+~".utf8.contains(byte)
    }

    /// Below `parent` (not equal to it).
    public static func isBelow(_ path: String, _ parent: String) -> Bool {
        parent == "/" ? path != "/" : path.hasPrefix(parent + "/")
    }

    /// Directories whose whole content is the system's, never one service's state.
    static let systemDirectories: Set<String> = [
        "/", "/bin", "/boot", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt", "/root",
        "/run", "/sbin", "/srv", "/tmp", "/usr", "/var", "/var/lib", "/var/cache", "/var/log", "/var/tmp", "/var/spool",
    ]
    /// Kernel filesystems: nothing in them can be copied or bound as state.
    static let kernelDirectories = ["/proc", "/sys", "/dev"]

    /// Refuses a state path the store cannot take: a system directory, anything in /proc, /sys or
    /// /dev, the store or the config directory (or anything inside or above them: a copy would
    /// copy itself), and paths with characters that systemd directives would read differently.
    static func refuse(_ path: String, store: String, config: String, _ setting: ProfileSetting) throws(ProfileError) {
        if let bad = path.first(where: { !isSafe($0) }) {
            throw ProfileError(setting, "\(path): the character \"\(bad)\" is not allowed in a state path "
                               + "(letters, digits and / . _ - @ + ~ only); move the state to a plainer path")
        }
        if systemDirectories.contains(path) {
            throw ProfileError(setting, "\(path) is a system directory, not one service's state; name the service's own directory below it")
        }
        if let kernel = kernelDirectories.first(where: { path == $0 || isBelow(path, $0) }) {
            throw ProfileError(setting, "\(path) is in \(kernel), a kernel filesystem; it cannot be state")
        }
        for (what, other) in [("the store", store), ("the config directory", config)] + ServiceProfile.replicaDirectories.map({ ("Replica's own folder", $0) })
            where path == other || isBelow(path, other) || isBelow(other, path) {
            throw ProfileError(setting, "\(path) overlaps \(what) (\(other)); state must be outside it, or it would copy into itself")
        }
    }

    /// `[Snapshots] Subvolume=`: letters, digits, `_ . : @ -` (safe in every directive), at most
    /// `maxNameLength` bytes, and a name the store does not keep for itself (`SubvolumeName`).
    static func validateBaseName(_ name: String, _ setting: ProfileSetting) throws(ProfileError) {
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.:@-".contains($0)) }),
              name.utf8.count <= maxNameLength else {
            throw ProfileError(setting, "a subvolume name is letters, digits and _ . : @ -, at most \(maxNameLength) bytes")
        }
        do throws(ReplicaError) { try validateName(name) } catch { throw ProfileError(setting, error.hint ?? error.description) }
    }

    /// Longest subvolume name: btrfs allows 255 bytes, and a snapshot adds `.YYYYMMDDTHHMMSSZ`.
    public static let maxNameLength = 255 - 17

    /// Refuses a derived name that is too long or reserved.
    static func validateName(_ name: String) throws(ReplicaError) {
        guard name.utf8.count <= maxNameLength else {
            throw ReplicaError("state subvolume", [name], errno: .ENAMETOOLONG,
                              hint: "\(name.utf8.count) bytes; at most \(maxNameLength); choose a shorter path or [Snapshots] Subvolume=")
        }
        do throws(ReplicaError) { _ = try SubvolumeName(name) } catch {
            throw ReplicaError("state subvolume", error.objects, errno: error.errno,
                               hint: (error.hint ?? "") + "; set [Snapshots] Subvolume=", reason: .refused)
        }
    }
}
