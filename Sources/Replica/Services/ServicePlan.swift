import ReplicaKit
import ReplicaNet
import ReplicaStore

/// A service as Replica runs it, made once from its profile and checked once: the typed profile
/// (state, config, sandbox, confinement), the snapshot policy of each state subvolume and the shape
/// of its network. What one doorway accepts, every other accepts: the generator and
/// `replica-shift drop-in` render the same plan, so a profile cannot pass one and fail the other.
public struct ServicePlan: Sendable {
    /// The profile, every section read and checked.
    public let profile: ServiceProfile
    /// The snapshot policy of each state subvolume (`[Snapshots]`).
    public let snapshots: [SnapshotSettings]
    /// The network of its `[Network]` section, nil without one. An address to be leased is the one
    /// an empty pool gives first: the plan is checked without taking a lease, which only
    /// `replica-net up` does.
    public let network: NetworkPlan?

    /// Checks every section of `profile` that Replica acts on; the first setting that cannot be
    /// honoured is the error, naming its file, line and key.
    public init(_ profile: ServiceProfile) throws(ProfileError) {
        self.profile = profile
        snapshots = try SnapshotSettings.all(profile)
        network = try NetworkPlan(profile: profile.raw, lease: { (subnet) throws(ReplicaError) in try AddressPool(subnet: subnet).firstLease })
    }

    /// The plan of unit `name` from its profile, or nil when it has none.
    public static func load(_ name: String, loader: ProfileLoader = ProfileLoader()) throws(ProfileError) -> ServicePlan? {
        try loader.loadService(name).map { (profile) throws(ProfileError) in try ServicePlan(profile) }
    }
}
