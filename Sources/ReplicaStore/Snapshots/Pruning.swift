import Glibc
import ReplicaKit

/// What pruning one subvolume will do: every snapshot of ours with its decision, and the foreign
/// entries it leaves alone. `--dry-run` prints this; a real run executes exactly this.
public struct PrunePlan: Sendable {
    /// One snapshot and what the policy decided about it.
    public struct Entry: Sendable {
        /// The snapshot.
        public var snapshot: Snapshot
        /// The decision, with its reasons.
        public var decision: RetentionDecision
    }

    /// The subvolume pruned.
    public var subvolume: String
    /// The time the policy was judged at.
    public var now: UTCTimestamp
    /// The policy.
    public var policy: RetentionPolicy
    /// Oldest first.
    public var entries: [Entry]
    /// What the snapshot directory holds that is not ours: left alone.
    public var foreign: [ForeignEntry]

    /// What the policy deletes.
    public var deletions: [Snapshot] { entries.filter { !$0.decision.keep }.map(\.snapshot) }
    /// What a free-space floor may delete next, oldest first: kept by `preserve` only.
    public var spaceCandidates: [Snapshot] {
        Retention.spaceCandidates(entries.map(\.decision)).map { entries[$0].snapshot }
    }
}

/// What a prune did.
public struct PruneOutcome: Sendable {
    /// Deleted because the policy no longer keeps them.
    public var deleted: [Snapshot] = []
    /// Deleted beyond the policy to meet the free-space floor.
    public var deletedForSpace: [Snapshot] = []
    /// Snapshots that could not be deleted, with why.
    public var failures: [(name: String, error: ReplicaError)] = []
    /// Bytes still missing below the free-space floor after every deletable snapshot went.
    public var spaceShortfall: UInt64?

    /// Whether every deletion succeeded and the free-space floor is met.
    public var succeeded: Bool { failures.isEmpty && spaceShortfall == nil }
}

extension Store {
    /// Decides every snapshot of `name` under `policy` at `now`, refusing a policy that cannot take
    /// effect: one that keeps nothing but the newest, or a free-space floor the filesystem cannot meet.
    public func planPrune(_ name: String, policy: RetentionPolicy, now: UTCTimestamp) throws(ReplicaError) -> PrunePlan {
        guard policy.keepsAnything else {
            throw ReplicaError("prune", [name], errno: .EINVAL,
                             hint: "the policy keeps nothing but the newest snapshot; set preserve, preserve_min, "
                                 + "latest or min_age (preserve_min latest says so explicitly)")
        }
        if let floor = policy.minimumFree {
            let total = try space().total
            if floor.bytes(ofTotal: total) >= total {
                throw ReplicaError("prune", [name], errno: .EINVAL,
                                 hint: "min_free asks for \(floor.bytes(ofTotal: total)) bytes free on a \(total)-byte filesystem")
            }
        }
        let inventory = try inventory(of: name)
        let decisions = Retention.decide(inventory.snapshots.map(\.name.time), policy: policy, now: now)
        return PrunePlan(subvolume: name, now: now, policy: policy,
                         entries: zip(inventory.snapshots, decisions).map { PrunePlan.Entry(snapshot: $0, decision: $1) },
                         foreign: inventory.foreign)
    }

    /// Executes a plan: deletes what the policy deletes, then, with a free-space floor, the oldest
    /// space candidates one at a time until the floor is met. One failed deletion does not stop the
    /// others. `deleted` is told about each deletion as it happens.
    public func prune(_ plan: PrunePlan, deleted: (Snapshot, _ forSpace: Bool) -> Void = { _, _ in }) throws(ReplicaError) -> PruneOutcome {
        var outcome = PruneOutcome()
        outcome.failures = try delete(plan.deletions, of: plan.subvolume) { snapshot in
            outcome.deleted.append(snapshot)
            deleted(snapshot, false)
        }
        guard let floor = plan.policy.minimumFree else { return outcome }
        let current = try space()
        var available = current.available
        let total = current.total
        let needed = floor.bytes(ofTotal: total)
        var candidates = plan.spaceCandidates[...]
        while available < needed, let snapshot = candidates.popFirst() {
            do throws(ReplicaError) {
                try delete(snapshot, of: plan.subvolume)
                outcome.deletedForSpace.append(snapshot)
                deleted(snapshot, true)
                _ = try Btrfs.waitUntilCleaned(id: snapshot.info.id, on: directory("."), path: path)
                available = try space().available
            } catch {
                outcome.failures.append((snapshot.name.description, error))
            }
        }
        if available < needed { outcome.spaceShortfall = needed - available }
        return outcome
    }
}
