import Glibc
import Logging
import ReplicaKit

/// What one subvolume's create / prune / run did.
public struct SnapshotReport: Sendable {
    /// The subvolume it is about.
    public var subvolume: String
    /// The snapshot made, by name; nil when none was.
    public var created: String?
    /// The snapshot of this second that existed already, when a create made none (names have
    /// one-second resolution): one result per create, never "created" for what was not made.
    public var alreadyTaken: String?
    /// The prune plan, when a prune ran (or would run, for a dry run).
    public var plan: PrunePlan?
    /// What the prune deleted, when it ran.
    public var outcome: PruneOutcome?
    /// What failed, if anything did.
    public var error: ReplicaError?
    /// For a run with `[Replication]`: what was sent to each target, and the copies its policy deleted.
    public var replication: [(report: ReplicationReport, pruned: [String])] = []

    /// Whether everything asked for was done.
    public var succeeded: Bool { error == nil && (outcome?.succeeded ?? true) && replication.allSatisfy(\.report.succeeded) }

    /// After a prune, the snapshots left (the plan's inventory less what was deleted), without
    /// listing the directory again; nil when no prune ran.
    var remainingSnapshots: [Snapshot]? {
        guard let plan, let outcome else { return nil }
        let gone = Set((outcome.deleted + outcome.deletedForSpace).map(\.info.id))
        return plan.entries.map(\.snapshot).filter { !gone.contains($0.info.id) }
    }
    /// Whether it failed only because another run held the subvolume's lock.
    public var lockWasBusy: Bool { error?.reason == .lockHeld }
    /// Its figures for the metrics textfile; nil when none are kept (no file, a dry run, or
    /// another run held the lock and keeps them).
    public var metrics: SnapshotMetrics?
}

/// The work `replica-snap create|prune|run` does for each subvolume, shared by every caller:
/// take the subvolume's lock (not for a dry run), snapshot, prune by policy, log each event with its
/// `MESSAGE_ID`; then update the metrics textfile once for all of them. A failure is reported, not
/// thrown, so one subvolume's failure does not stop the others.
public enum SnapshotJob {
    /// Which command.
    public enum Action: String, Sendable {
        /// Take a snapshot.
        case create
        /// Delete what the policy no longer keeps.
        case prune
        /// Create, then prune.
        case run
    }

    /// How a job runs.
    public struct Options: Sendable {
        /// Plan only: show what would be deleted, take no lock, change nothing.
        public var dryRun = false
        /// Wait this long for the lock; nil gives up at once (exit 3).
        public var wait: Duration?
        /// The Prometheus textfile to update; nil for none.
        public var metricsPath: String? = MetricsTextfile.defaultPath
        /// The time the policy is judged at.
        public var now = UTCTimestamp.now
        /// How many subvolumes are worked on at once, each on a thread of its own: snapshots taken
        /// together share btrfs's commits. Those that send to `[Replication]` targets go one at a
        /// time, on one of them, so a run never opens many connections to one host.
        public var threads = Options.defaultThreads
        /// 16: a run over 1,000 subvolumes takes a quarter of the time it takes one by one.
        public static let defaultThreads = 16
        /// The defaults: a real run, no waiting, the default metrics file, now.
        public init() {}
    }

    /// Runs `action` on the subvolume of each of `targets`, each in its own store, up to
    /// `options.threads` at once, then writes their figures to the metrics textfile in one update
    /// (one per subvolume would rewrite the whole file each time). Never throws; each report, in
    /// the order of `targets`, says what happened.
    public static func perform(_ action: Action, _ targets: [SnapshotSettings], options: Options, logger: Logger) -> [SnapshotReport] {
        let done = DedicatedThread.map(lanes(action, targets), threads: options.threads) { lane in
            lane.map { index in
                let settings = targets[index]
                do throws(ReplicaError) {
                    return (index, perform(action, settings, store: try Store(path: settings.storePath), options: options, logger: logger))
                } catch {
                    logger.error("\(error)", metadata: event(.failed, ["subvolume": "\(settings.subvolume)"]))
                    return (index, SnapshotReport(subvolume: settings.subvolume, error: error))
                }
            }
        }
        let reports = done.joined().sorted { $0.0 < $1.0 }.map(\.1)
        let figures = reports.compactMap(\.metrics)
        if let path = options.metricsPath, !figures.isEmpty {
            do throws(ReplicaError) { try MetricsTextfile.update(figures, at: path) } catch {
                logger.warning("could not update metrics: \(error)")
            }
        }
        return reports
    }

    /// The indices of `targets` split into lanes, each worked through in order by one thread: a
    /// subvolume named twice stays in one lane (each run takes its lock, and the second finds the
    /// first's snapshot), and a run's targets that send to `[Replication]` all share one lane.
    public static func lanes(_ action: Action, _ targets: [SnapshotSettings]) -> [[Int]] {
        var lanes: [[Int]] = [], laneOf: [String: Int] = [:]
        for (index, settings) in targets.enumerated() {
            let key = action == .run && settings.replication != nil ? "" : "\(settings.storePath)\u{0}\(settings.subvolume)"
            if let lane = laneOf[key] { lanes[lane].append(index) } else { laneOf[key] = lanes.count; lanes.append([index]) }
        }
        return lanes
    }

    /// Runs `action` on the subvolume of `settings`, gathering its figures for the metrics
    /// textfile: never throws; the report says what happened.
    static func perform(
        _ action: Action, _ settings: SnapshotSettings, store: borrowing Store, options: Options, logger: Logger
    ) -> SnapshotReport {
        let started = monotonicSeconds()
        var report = SnapshotReport(subvolume: settings.subvolume)
        var log = logger
        log[metadataKey: "subvolume"] = "\(settings.subvolume)"
        /// `subject`: the subvolume, opened to take its snapshot (none in a dry run or a prune).
        func work(_ subject: SnapshotSubject?) throws(ReplicaError) {
            if !options.dryRun { try store.requireWritable() }
            if let subject {
                let taken = try store.snapshotUnlessTaken(subject, at: options.now)
                if taken.created { report.created = taken.name } else { report.alreadyTaken = taken.name }
                if taken.created {
                    log.info("created snapshot \(taken.name)", metadata: event(.created, ["snapshot": "\(taken.name)"]))
                } else {
                    log.info("snapshot \(taken.name) of this second was already taken", metadata: event(.created, ["snapshot": "\(taken.name)"]))
                }
            }
            if action != .create {
                let plan = try store.planPrune(settings.subvolume, policy: settings.policy, now: options.now)
                report.plan = plan
                if !options.dryRun {
                    let outcome = try store.prune(plan) { snapshot, forSpace in
                        let kind: SnapshotEvent = forSpace ? .deletedForSpace : .deleted
                        log.info("deleted snapshot \(snapshot.name)\(forSpace ? " to free space" : "")",
                                 metadata: event(kind, ["snapshot": "\(snapshot.name)"]))
                    }
                    report.outcome = outcome
                    for failure in outcome.failures {
                        log.error("could not delete \(failure.name): \(failure.error)", metadata: event(.failed, [:]))
                    }
                    if let shortfall = outcome.spaceShortfall {
                        log.warning("free space is \(shortfall) bytes below min_free after deleting every deletable snapshot",
                                    metadata: event(.spaceShort, ["shortfall_bytes": "\(shortfall)"]))
                    }
                    let deletedCount = outcome.deleted.count + outcome.deletedForSpace.count
                    log.info("pruned: kept \(plan.entries.count - deletedCount), deleted \(deletedCount)",
                             metadata: event(.pruned, ["deleted": "\(deletedCount)"]))
                }
            }
            if action == .run, let replication = settings.replication {
                for target in replication.targets {
                    let sent = store.sendHoldingLock(settings.subvolume, to: target, dryRun: options.dryRun)
                    var pruned: [String] = []
                    for copy in sent.sent where copy.error == nil && !options.dryRun {
                        log.info("sent \(copy.name) to \(target)", metadata: event(.sent, ["snapshot": "\(copy.name)", "target": "\(target)"]))
                    }
                    if let failure = sent.error ?? sent.sent.compactMap(\.error).first {
                        log.error("sending to \(target) failed: \(failure)", metadata: event(.failed, ["target": "\(target)"]))
                    } else if let policy = replication.policy, !options.dryRun {
                        do throws(ReplicaError) {
                            pruned = try store.pruneTarget(settings.subvolume, target, policy: policy, now: options.now)
                            for name in pruned {
                                log.info("deleted copy \(name) on \(target)", metadata: event(.deleted, ["snapshot": "\(name)", "target": "\(target)"]))
                            }
                        } catch {
                            log.error("pruning \(target) failed: \(error)", metadata: event(.failed, ["target": "\(target)"]))
                            var failed = sent
                            failed.error = error
                            report.replication.append((failed, pruned))
                            continue
                        }
                    }
                    report.replication.append((sent, pruned))
                }
            }
        }
        var tally: SnapshotTally?
        do throws(ReplicaError) {
            // A dry run reads only, and read-only work never takes (or waits for) the lock.
            if options.dryRun {
                try work(nil)
            } else {
                let lock = try SubvolumeLock.acquire(settings.subvolume, in: store, wait: options.wait)
                let subject = action == .prune ? nil : try lock.snapshotSubject(in: store, allowNested: settings.allowNested)
                if let subject, action == .create {
                    let kept = lock.census()
                    // The folder's stamp before the snapshot: only a kept count needs it.
                    let before = kept.census == nil ? nil : store.censusStamp(of: subject)
                    try work(subject)
                    tally = store.tallyAfterCreate(subject, created: report.created, kept: kept, before: before,
                                                   lock: lock, count: options.metricsPath != nil)
                } else {
                    try work(subject)
                    lock.forgetCensus()
                }
            }
        } catch {
            report.error = error
            log.error("\(error)", metadata: event(error.reason == .lockHeld ? .lockBusy : .failed, [:]))
        }
        if !options.dryRun, options.metricsPath != nil, !report.lockWasBusy {
            let counted = tally ?? report.remainingSnapshots.map(SnapshotTally.init)
                ?? SnapshotTally((try? store.snapshots(of: settings.subvolume)) ?? [])
            report.metrics = SnapshotMetrics(subvolume: settings.subvolume, runAt: .now, succeeded: report.succeeded,
                                             runSeconds: monotonicSeconds() - started, tally: counted)
        }
        return report
    }

    /// The exit code of a run over these subvolumes (`ExitCode.of(done:failures:)`).
    public static func exitCode(_ reports: [SnapshotReport]) -> Int32 {
        ExitCode.of(done: reports.filter(\.succeeded).count,
                    failures: reports.filter { !$0.succeeded }.map { $0.error ?? ReplicaError("snapshot", [$0.subvolume], errno: .EIO) })
    }

    static func event(_ kind: SnapshotEvent, _ metadata: Logger.Metadata) -> Logger.Metadata {
        metadata.merging([ReplicaLogHandler.messageIDKey: "\(kind.messageID)", "event": "\(kind.rawValue)"]) { $1 }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// `replica-snap check`: how old the newest snapshot is, judged like a monitoring plugin.
public struct FreshnessCheck: Sendable {
    /// The verdict, its raw value the exit code.
    public enum Status: Int32, Sendable, Comparable {
        /// Young enough.
        case ok = 0
        /// At least the warning age.
        case warning = 1
        /// At least the critical age, or no snapshot at all.
        case critical = 2
        /// The check could not judge: the store cannot be opened or read.
        case unknown = 3
        /// Worse is greater: OK, WARNING, UNKNOWN, CRITICAL (a judgment of CRITICAL outranks a
        /// subvolume that could not be judged, as Nagios plugins order them).
        public static func < (a: Status, b: Status) -> Bool { a.severity < b.severity }
        private var severity: Int { [0, 1, 3, 2][Int(rawValue)] }
        /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`, as monitoring prints it.
        public var label: String { ["OK", "WARNING", "CRITICAL", "UNKNOWN"][Int(rawValue)] }
        /// Nagios's UNKNOWN: the check could not judge (a usage error, a store it cannot read).
        public static let unknownExitCode: Int32 = Status.unknown.rawValue
    }

    /// The subvolume checked.
    public var subvolume: String
    /// How old its newest snapshot is, judged.
    public var status: Status
    /// When its newest snapshot was taken; nil when it has none.
    public var newest: UTCTimestamp?
    /// How old that is, in seconds.
    public var ageSeconds: Int64?
    /// One line for the monitoring system.
    public var message: String

    /// A result for `subvolume`.
    public init(subvolume: String, status: Status, newest: UTCTimestamp? = nil, ageSeconds: Int64? = nil, message: String) {
        self.subvolume = subvolume
        self.status = status
        self.newest = newest
        self.ageSeconds = ageSeconds
        self.message = message
    }

    /// Never takes the lock. No snapshot at all is critical; a store that cannot be read is
    /// unknown (nothing was judged).
    public static func check(_ subvolume: String, store: borrowing Store, warning: Int64, critical: Int64,
                             now: UTCTimestamp) -> FreshnessCheck {
        let snapshots: [Snapshot]
        do throws(ReplicaError) { snapshots = try store.snapshots(of: subvolume) } catch {
            return FreshnessCheck(subvolume: subvolume, status: .unknown, message: "\(subvolume): \(error)")
        }
        guard let newest = snapshots.last?.name.time else {
            return FreshnessCheck(subvolume: subvolume, status: .critical, message: "\(subvolume): no snapshots")
        }
        let age = now.secondsSinceEpoch - newest.secondsSinceEpoch
        let status: Status = age >= critical ? .critical : age >= warning ? .warning : .ok
        return FreshnessCheck(subvolume: subvolume, status: status, newest: newest, ageSeconds: age,
                              message: "\(subvolume): newest snapshot \(newest) is \(Retention.describe(seconds: max(0, age))) old")
    }
}
