import ReplicaKit

/// Everything a service profile says, read once, for the tools and programs that shift a service:
///
/// ```ini
/// [State]
/// Path=/var/lib/web              # state directories, each shifted onto its own subvolume
/// Store=/run/replica/store       # default: the embedded store's mount point
/// SnapshotOnStart=yes            # a read-only snapshot before each start
///
/// [Config]
/// Directory=/var/lib/replica/config/web.service   # default; files of its current generation
///                                                 # are bound read-only over their paths
/// [Network] …                    # replica-net: the drop-in joins its namespace
/// [Sandbox] …                    # SandboxPlan(profile:)
/// [Snapshots] …                  # SnapshotSettings(profile:)
/// ```
public struct ServiceSettings: Sendable {
    /// A state directory and the subvolume that holds it.
    public struct StateDirectory: Equatable, Sendable {
        public var path: String
        public var subvolume: String
    }

    public var unit: String
    public var sandbox: SandboxPlan
    public var snapshots: SnapshotSettings
    public var state: [StateDirectory]
    public var storePath: String
    public var snapshotOnStart: Bool
    public var config: ConfigStore
    /// The network namespace the service joins (`[Network]`, made by `replica-net@NAME.service`);
    /// nil when it shares the host's network.
    public var networkNamespace: String?
    /// The unit without `.service` (`Profile.serviceName`).
    public var serviceName: String

    public init(profile: Profile) throws(ProfileError) {
        unit = profile.unit
        sandbox = try SandboxPlan(profile: profile)
        snapshots = try SnapshotSettings(profile: profile)
        for (section, known) in [("State", Set(["Path", "Store", "SnapshotOnStart"])), ("Config", Set(["Directory"]))] {
            if let unknown = profile.unknownKeys(in: section, known: known).first {
                throw ProfileError(unknown, "unknown key in [\(section)]; known: \(known.sorted().joined(separator: ", "))")
            }
        }
        let paths = profile.list("State", "Path").flatMap { $0.value.split(separator: " ").map(String.init) }
        // One state directory takes the service's subvolume name; several get NAME-BASENAME.
        let name = snapshots.subvolume
        state = paths.map { path in
            let base = path.split(separator: "/").last.map(String.init) ?? "state"
            return StateDirectory(path: path, subvolume: paths.count == 1 ? name : "\(name)-\(base)")
        }
        for (directory, setting) in zip(state, profile.list("State", "Path")) {
            guard directory.path.hasPrefix("/"), !directory.path.split(separator: "/").contains("..") else {
                throw ProfileError(setting, "a state path is absolute, without ..")
            }
        }
        storePath = profile.value("State", "Store")?.value ?? EmbeddedStore.defaultMountPoint
        snapshotOnStart = try profile.value("State", "SnapshotOnStart")?.boolean() ?? false
        networkNamespace = profile.networkNamespace
        serviceName = profile.serviceName
        config = ConfigStore(directory: profile.value("Config", "Directory")?.value ?? "\(ConfigStore.defaultParent)/\(unit)")
    }

    /// Loads and reads the profile of `name`; nil when there is none.
    public static func load(_ name: String, loader: ProfileLoader = ProfileLoader()) throws(ProfileError) -> ServiceSettings? {
        guard let profile = try loader.load(name) else { return nil }
        return try ServiceSettings(profile: profile)
    }
}
