import ReplicaKit
import ReplicaStore

/// `replica-snap`'s reports: tables for people, and the JSON envelope's members for programs.
enum SnapRender {

    static func report(_ report: SnapshotReport, dryRun: Bool, explain: Bool) -> String {
        var lines: [String] = []
        if let created = report.created { lines.append("\(report.subvolume): created \(created)") }
        if let taken = report.alreadyTaken { lines.append("\(report.subvolume): \(taken) of this second exists already; nothing made") }
        if let plan = report.plan {
            let deleting = Set(plan.deletions.map(\.name.description))
            if explain || dryRun {
                var table = Table(["SNAPSHOT", "ACTION", "REASON"])
                for entry in plan.entries {
                    let name = entry.snapshot.name.description
                    table.append([name, deleting.contains(name) ? (dryRun ? "would delete" : "delete") : "keep",
                                  entry.decision.keep ? entry.decision.reasons.joined(separator: "; ") : "no rule keeps it"])
                }
                for foreign in plan.foreign { table.append([foreign.name, "ignore", "not ours: \(foreign.reason)"]) }
                lines.append(table.description)
                if dryRun, plan.policy.minimumFree != nil, !plan.spaceCandidates.isEmpty {
                    lines.append("if free space is short: would delete, oldest first, "
                                 + plan.spaceCandidates.map(\.name.description).joined(separator: ", "))
                }
            }
            if let outcome = report.outcome {
                lines.append("\(report.subvolume): deleted \(outcome.deleted.count)"
                             + (outcome.deletedForSpace.isEmpty ? "" : " + \(outcome.deletedForSpace.count) for free space")
                             + ", kept \(plan.entries.count - outcome.deleted.count - outcome.deletedForSpace.count)")
                for failure in outcome.failures { lines.append("\(report.subvolume): could not delete \(failure.name): \(failure.error)") }
                if let shortfall = outcome.spaceShortfall { lines.append("\(report.subvolume): still \(shortfall) bytes short of min_free") }
            } else if dryRun {
                lines.append("\(report.subvolume): would delete \(plan.deletions.count), keep \(plan.entries.count - plan.deletions.count) (dry run)")
            }
        }
        for (sent, pruned) in report.replication {
            lines.append(replication(sent, dryRun: dryRun))
            for name in pruned { lines.append("\(report.subvolume) → \(sent.target): deleted the copy \(name) (no rule keeps it)") }
        }
        if let error = report.error { lines.append("replica-snap: \(error)") }
        return lines.joined(separator: "\n")
    }

    static func inventory(_ inventory: SnapshotInventory) -> String {
        var table = Table(["SNAPSHOT", "TAKEN (UTC)", "ID", "GENERATION", "UUID"])
        for s in inventory.snapshots {
            table.append([s.name.description, s.name.time.description, String(s.info.id), String(s.info.generation), s.info.uuid])
        }
        var text = "\(inventory.subvolume) (uuid \(inventory.sourceUUID)): \(inventory.snapshots.count) snapshots\n\(table)"
        for foreign in inventory.foreign { text += "\n  not ours, left alone: \(foreign.name) (\(foreign.reason))" }
        return text
    }

    static func snapshotJSON(_ s: Snapshot) -> JSON {
        .object([("name", .string(s.name.description)), ("taken", .string(s.name.time.description)),
                 ("id", .int(Int64(s.info.id))), ("uuid", .string(s.info.uuid)),
                 ("parent_uuid", s.info.parentUUID.map(JSON.string) ?? .null), ("generation", .int(Int64(s.info.generation))),
                 ("read_only", .bool(s.info.isReadOnly))])
    }

    static func inventories(_ inventories: [SnapshotInventory]) -> [(String, JSON)] {
        [("subvolumes", .array(inventories.map { inventory in
            .object([("subvolume", .string(inventory.subvolume)), ("uuid", .string(inventory.sourceUUID)),
                     ("snapshots", .array(inventory.snapshots.map(snapshotJSON))),
                     ("foreign", .array(inventory.foreign.map { .object([("name", .string($0.name)), ("reason", .string($0.reason))]) }))])
        }))]
    }

    static func reports(_ reports: [SnapshotReport], dryRun: Bool, now: UTCTimestamp) -> [(String, JSON)] {
        [("dry_run", .bool(dryRun)),
                 ("now", .string(now.description)), ("subvolumes", .array(reports.map { report in
            var members: [(String, JSON)] = [("subvolume", .string(report.subvolume)), ("ok", .bool(report.succeeded)),
                                             ("created", report.created.map(JSON.string) ?? .null),
                                             ("already_taken", report.alreadyTaken.map(JSON.string) ?? .null)]
            if let plan = report.plan {
                let deleting = Set(plan.deletions.map(\.name.description))
                members.append(("decisions", .array(plan.entries.map { entry in
                    .object([("name", .string(entry.snapshot.name.description)), ("taken", .string(entry.snapshot.name.time.description)),
                             ("action", .string(deleting.contains(entry.snapshot.name.description) ? "delete" : "keep")),
                             ("reasons", .array(entry.decision.reasons.map(JSON.string)))])
                })))
                members.append(("foreign", .array(plan.foreign.map { .object([("name", .string($0.name)), ("reason", .string($0.reason))]) })))
            }
            if let outcome = report.outcome {
                members.append(("deleted", .array(outcome.deleted.map { .string($0.name.description) })))
                members.append(("deleted_for_space", .array(outcome.deletedForSpace.map { .string($0.name.description) })))
            }
            members.append(("replication", .array(report.replication.map { sent, pruned in
                replicationJSON(sent).merging([("pruned", .array(pruned.map(JSON.string)))])
            })))
            members.append(("error", report.error.map { .string($0.description) } ?? .null))
            return .object(members)
        }))]
    }

    static func deletion(subvolume: String, deleted: [String], failures: [(name: String, error: ReplicaError)]) -> [(String, JSON)] {
        [
            ("subvolume", .string(subvolume)), ("deleted", .array(deleted.map(JSON.string))),
            ("failed", .array(failures.map { .object([("name", .string($0.name)), ("error", .string($0.error.hint ?? $0.error.description))]) })),
        ]
    }

    static func checks(_ results: [FreshnessCheck], worst: FreshnessCheck.Status) -> [(String, JSON)] {
        [("status", .string(worst.label)), ("subvolumes", .array(results.map { r in
            .object([("subvolume", .string(r.subvolume)), ("status", .string(r.status.label)),
                     ("newest", r.newest.map { .string($0.description) } ?? .null),
                     ("age_seconds", r.ageSeconds.map { .int($0) } ?? .null), ("message", .string(r.message))])
        }))]
    }

    static func replication(_ report: ReplicationReport, dryRun: Bool) -> String {
        var lines: [String] = []
        if let error = report.error { return "\(report.subvolume) → \(report.target): failed: \(error.hint ?? error.description)" }
        for name in report.cleaned { lines.append("\(report.subvolume) → \(report.target): removed the interrupted copy \(name)") }
        for sent in report.sent {
            let how = sent.parent.map { "incremental from \($0)" } ?? "full"
            lines.append("\(report.subvolume) → \(report.target): \(dryRun ? "would send" : sent.error == nil ? "sent" : "failed to send") \(sent.name) (\(how))")
        }
        if report.sent.isEmpty { lines.append("\(report.subvolume) → \(report.target): up to date (\(report.alreadyThere.count) snapshots there)") }
        return lines.joined(separator: "\n")
    }

    static func replication(_ reports: [ReplicationReport], dryRun: Bool) -> [(String, JSON)] {
        [("dry_run", .bool(dryRun)), ("subvolumes", .array(reports.map(replicationJSON)))]
    }

    static func replicationJSON(_ report: ReplicationReport) -> JSON {
        .object([("subvolume", .string(report.subvolume)), ("target", .string(report.target)), ("ok", .bool(report.succeeded)),
                 ("sent", .array(report.sent.map { sent in
                     .object([("name", .string(sent.name)), ("parent", sent.parent.map(JSON.string) ?? .null),
                              ("error", sent.error.map { .string($0.description) } ?? .null)])
                 })),
                 ("already_there", .array(report.alreadyThere.map(JSON.string))), ("cleaned", .array(report.cleaned.map(JSON.string))),
                 ("error", report.error.map { .string($0.description) } ?? .null)])
    }
}
