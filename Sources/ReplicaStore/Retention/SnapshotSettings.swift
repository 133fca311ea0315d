import ReplicaKit

/// A service's snapshot settings, from its profile's `[Snapshots]` section:
///
/// ```ini
/// [Snapshots]
/// Subvolume=web            # default: the unit name without .service
/// Preserve=24h 14d 8w *m   # btrbk's preserve, plus q
/// PreserveMin=2d
/// PreserveHourOfDay=0
/// PreserveDayOfWeek=sunday
/// Latest=3
/// MinAge=30m
/// MinFree=10%
/// AllowNested=no
/// ```
public struct SnapshotSettings: Equatable, Sendable {
    public var unit: String
    public var subvolume: String
    public var policy: RetentionPolicy
    public var allowNested: Bool

    /// Profile key → retention key.
    public static let policyKeys: [String: String] = [
        "Preserve": "preserve", "PreserveMin": "preserve_min", "PreserveHourOfDay": "preserve_hour_of_day",
        "PreserveDayOfWeek": "preserve_day_of_week", "Latest": "latest", "MinAge": "min_age", "MinFree": "min_free",
    ]
    public static let section = "Snapshots"

    /// Reads `[Snapshots]`. An unknown key or a value that cannot take effect is an error naming
    /// the file, the line and the key.
    public init(profile: Profile) throws(ProfileError) {
        unit = profile.unit
        let known = Set(Self.policyKeys.keys).union(["Subvolume", "AllowNested"])
        if let unknown = profile.unknownKeys(in: Self.section, known: known).first {
            throw ProfileError(unknown, "unknown key in [\(Self.section)]; known: \(known.sorted().joined(separator: ", "))")
        }
        var policy = RetentionPolicy()
        for setting in profile.settings where setting.section == Self.section {
            guard let key = Self.policyKeys[setting.key] else { continue }
            do throws(PolicyError) { try policy.set(key, setting.value) } catch {
                throw ProfileError(setting, error.reason)
            }
        }
        self.policy = policy
        subvolume = profile.value(Self.section, "Subvolume")?.value ?? profile.serviceName
        allowNested = try profile.value(Self.section, "AllowNested")?.boolean() ?? false
        do throws(StoreError) { try Btrfs.validate(name: subvolume, in: "store") } catch {
            let setting = profile.value(Self.section, "Subvolume")
            throw ProfileError(file: setting?.file ?? profile.files.first ?? unit, line: setting?.line ?? 0,
                               key: "Subvolume", reason: error.hint ?? "not a valid subvolume name")
        }
    }
}

extension SnapshotSettings {
    /// Settings for `name` (a unit, or a bare subvolume name): its profile's `[Snapshots]` when one
    /// exists, with `overrides` (retention key → value, from flags) applied on top. Without a profile,
    /// the overrides alone; nil when there is neither, which callers report as "not configured".
    public static func resolve(
        _ name: String, loader: ProfileLoader, overrides: [(key: String, value: String)]
    ) throws(ProfileError) -> SnapshotSettings? {
        var settings: SnapshotSettings
        if let profile = try loader.load(name) {
            settings = try SnapshotSettings(profile: profile)
        } else if !overrides.isEmpty {
            settings = try SnapshotSettings(profile: Profile(unit: ProfileLoader.unitName(name)))
        } else {
            return nil
        }
        for (key, value) in overrides {
            do throws(PolicyError) { try settings.policy.set(key, value) } catch {
                throw ProfileError(file: "command line", line: 0, key: "--\(key.replacingAll("_", with: "-"))", reason: error.reason)
            }
        }
        return settings
    }
}
