import Glibc
import ReplicaKit

/// A profile's `[Replication]`: the targets `replica-snap run` sends each state subvolume's
/// snapshots to after its local prune, and the retention policy of those copies (the grammar of
/// `[Snapshots]`; without one, copies are kept until deleted by hand).
///
/// ```ini
/// [Replication]
/// Target=/mnt/backup ssh://backup.example.org/srv/replica
/// Preserve=7d 8w 12m
/// ```
public struct ReplicationSettings: Equatable, Sendable {
    /// Where the snapshots go, in order.
    public var targets: [ReplicationTarget]
    /// How long copies are kept on each target; nil keeps them all.
    public var policy: RetentionPolicy?

    /// The profile section these settings come from.
    public static let section = "Replication"
    /// Profile key → retention key, as in `[Snapshots]` (no `MinFree=`: a target's space is not ours to judge).
    public static let policyKeys = SnapshotSettings.policyKeys.filter { $0.key != "MinFree" }

    /// Reads `[Replication]`; nil when the profile has none. A target or a policy value that cannot
    /// take effect is an error naming the file, the line and the key.
    public init?(profile: ServiceProfile) throws(ProfileError) {
        guard profile.settings.contains(where: { $0.section == Self.section }) else { return nil }
        var targets: [ReplicationTarget] = []
        for setting in profile.raw.list(Self.section, "Target") {
            for word in try ProfileWords.split(setting) {
                do { targets.append(try ReplicationTarget(parsing: word)) } catch { throw ProfileError(setting, error.hint ?? error.description) }
            }
        }
        let policySettings = profile.settings.filter { $0.section == Self.section && Self.policyKeys[$0.key] != nil }
        var policy: RetentionPolicy?
        if !policySettings.isEmpty {
            var parsed = RetentionPolicy()
            for setting in policySettings {
                do throws(PolicyError) { try parsed.set(Self.policyKeys[setting.key]!, setting.value) } catch {
                    throw ProfileError(setting, error.rule)
                }
            }
            policy = parsed
        }
        guard !targets.isEmpty else {
            let first = profile.settings.first { $0.section == Self.section }!
            throw ProfileError(first, "[Replication] needs at least one Target= (/PATH or ssh://[USER@]HOST[:PORT]/PATH)")
        }
        self.targets = targets
        self.policy = policy
    }
}

extension Store {
    /// Deletes the copies of `name`'s snapshots in `target` that `policy` no longer keeps at `now`
    /// (the newest copy always stays: it is the parent of the next incremental send). Only copies
    /// of ours are judged — named as our snapshots, read-only, received — and each is deleted by its
    /// subvolume id. Returns the names deleted.
    public func pruneTarget(_ name: String, _ target: ReplicationTarget, policy: RetentionPolicy,
                            now: UTCTimestamp) throws(ReplicaError) -> [String] {
        let side = TargetSide(target: target, subvolume: name)
        let ours = try side.prepare(dryRun: true).copies.filter { copy in
            copy.readOnly && copy.receivedUUID != nil && SnapshotName(parsing: copy.name)?.subvolume == name
        }
        let times = ours.compactMap { SnapshotName(parsing: $0.name)?.time }
        let decisions = Retention.decide(times, policy: policy, now: now)
        let doomed = zip(ours, decisions).filter { !$0.1.keep }.map(\.0)
        return try side.delete(doomed)
    }
}
