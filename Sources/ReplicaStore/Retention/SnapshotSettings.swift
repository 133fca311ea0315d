import ReplicaKit

/// A service's snapshot settings, from its profile's `[Snapshots]` section:
///
/// ```ini
/// [Snapshots]
/// # default: the unit name without .service
/// Subvolume=web
/// # btrbk's preserve, plus q
/// Preserve=24h 14d 8w *m
/// PreserveMin=2d
/// PreserveHourOfDay=0
/// PreserveDayOfWeek=sunday
/// Latest=3
/// MinAge=30m
/// MinFree=10%
/// AllowNested=no
/// ```
public struct SnapshotSettings: Equatable, Sendable {
    /// The unit the policy is for (`web.service`), or the subvolume named on the command line.
    public var unit: String
    /// The subvolume snapshotted.
    public var subvolume: String
    /// The retention policy.
    public var policy: RetentionPolicy
    /// `AllowNested=`: accept a state path whose snapshots would include another service's subvolume.
    public var allowNested: Bool
    /// The store the subvolume is on: the profile's `[State] Store=`.
    public var storePath: String
    /// `[Replication]`: where `run` sends the snapshots after pruning, and the targets' own policy.
    public var replication: ReplicationSettings?

    /// Profile key → retention key.
    public static let policyKeys: [String: String] = [
        "Preserve": "preserve", "PreserveMin": "preserve_min", "PreserveHourOfDay": "preserve_hour_of_day",
        "PreserveDayOfWeek": "preserve_day_of_week", "Latest": "latest", "MinAge": "min_age", "MinFree": "min_free",
    ]
    /// The profile section these settings come from.
    public static let section = "Snapshots"

    /// Reads `[Snapshots]` for `subvolume` (default: the profile's own subvolume name). A value
    /// that cannot take effect is an error naming the file, the line and the key.
    public init(profile: ServiceProfile, subvolume: String? = nil) throws(ProfileError) {
        unit = profile.unit
        var policy = RetentionPolicy()
        for setting in profile.settings where setting.section == Self.section {
            guard let key = Self.policyKeys[setting.key] else { continue }
            do throws(PolicyError) { try policy.set(key, setting.value) } catch {
                throw ProfileError(setting, error.rule)
            }
        }
        self.policy = policy
        self.subvolume = subvolume ?? profile.subvolume
        allowNested = try profile.raw.value(Self.section, "AllowNested")?.boolean() ?? false
        storePath = profile.storePath
        replication = try ReplicationSettings(profile: profile)
    }

    /// The settings of each subvolume the profile's state is on (its own subvolume when it has no
    /// `[State] Path=`): a timer run snapshots all of a service's state.
    public static func all(_ profile: ServiceProfile) throws(ProfileError) -> [SnapshotSettings] {
        let names = profile.state.isEmpty ? [profile.subvolume] : profile.state.map(\.subvolume)
        var all: [SnapshotSettings] = []
        for name in names { all.append(try SnapshotSettings(profile: profile, subvolume: name)) }
        return all
    }
}

extension SnapshotSettings {
    /// Settings for `name` (a unit, or a bare subvolume name): one per state subvolume of its
    /// profile when one exists, with `overrides` (retention key → value, from flags) applied on top.
    /// Without a profile, the overrides alone for the subvolume `name`; nil when there is neither,
    /// which callers report as "not configured".
    public static func resolve(
        _ name: String, loader: ProfileLoader, overrides: [(key: String, value: String)]
    ) throws(ProfileError) -> [SnapshotSettings]? {
        var all: [SnapshotSettings]
        if let profile = try loader.loadService(name) {
            all = try SnapshotSettings.all(profile)
        } else if !overrides.isEmpty {
            all = [try SnapshotSettings(profile: ServiceProfile.bare(name))]
        } else {
            return nil
        }
        for index in all.indices {
            for (key, value) in overrides {
                do throws(PolicyError) { try all[index].policy.set(key, value) } catch {
                    throw ProfileError(file: "command line", line: 0, key: "--\(key.replacingAll("_", with: "-"))", reason: error.rule)
                }
            }
        }
        return all
    }
}
