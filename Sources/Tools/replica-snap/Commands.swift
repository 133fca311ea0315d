import ArgumentParser
import Glibc
import Logging
import ReplicaKit
import ReplicaStore

/// Settings for each NAME, or exit 6 naming where profiles were looked for.
func resolveTargets(_ names: [String], _ options: StoreOptions, overrides: [(key: String, value: String)] = [],
                    needPolicy: Bool) throws -> [SnapshotSettings] {
    try names.map { name in
        let settings: SnapshotSettings?
        do { settings = try SnapshotSettings.resolve(name, loader: options.loader, overrides: overrides) } catch {
            printError("replica-snap: \(error)")
            throw ExitCodeError(code: ExitCode.usage)
        }
        if let settings { return settings }
        if !needPolicy { return try SnapshotSettings(profile: Profile(unit: ProfileLoader.unitName(name))) }
        printError("""
            replica-snap: \(name) is not configured: no profile at \(options.loader.searchedPaths(name).joined(separator: ", ")).
            Write one with a [Snapshots] section (Preserve=24h 14d), or pass --preserve.
            """)
        throw ExitCodeError(code: ExitCode.notConfigured)
    }
}

/// create, prune and run share everything but the action.
func perform(_ action: SnapshotJob.Action, _ names: [String], _ options: StoreOptions,
             overrides: [(key: String, value: String)], _ write: WriteOptions, dryRun: Bool, explain: Bool) throws {
    let targets = try resolveTargets(names, options, overrides: overrides, needPolicy: action != .create)
    let store = try options.openStore()
    var jobOptions = SnapshotJob.Options()
    jobOptions.dryRun = dryRun
    jobOptions.wait = write.wait.map { .seconds($0) }
    jobOptions.metricsPath = write.metricsFile.isEmpty ? nil : write.metricsFile
    jobOptions.now = try options.currentTime()
    let logger = Logger(label: "replica-snap")
    let reports = targets.map { SnapshotJob.perform(action, $0, store: store, options: jobOptions, logger: logger) }
    if options.json {
        print(Render.reports(reports, action: action, dryRun: dryRun, now: jobOptions.now).serialized())
    } else {
        for report in reports { print(Render.report(report, dryRun: dryRun, explain: explain)) }
    }
    let code = SnapshotJob.exitCode(reports)
    if code != ExitCode.ok { throw ExitCodeError(code: code) }
}

extension ReplicaSnap {
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a read-only snapshot of each subvolume now.")
        @OptionGroup var options: StoreOptions
        @OptionGroup var write: WriteOptions
        @Argument(help: "Services or subvolumes.") var names: [String]
        func run() throws { try perform(.create, names, options, overrides: [], write, dryRun: false, explain: false) }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete the snapshots the policy no longer keeps.")
        @OptionGroup var options: StoreOptions
        @OptionGroup var policy: PolicyOptions
        @OptionGroup var write: WriteOptions
        @Flag(help: "Show what would be deleted; change nothing, take no lock.") var dryRun = false
        @Flag(help: "Give the reason for every snapshot.") var explain = false
        @Argument(help: "Services or subvolumes.") var names: [String]
        func run() throws { try perform(.prune, names, options, overrides: policy.overrides, write, dryRun: dryRun, explain: explain) }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create, then prune (what the timer runs).")
        @OptionGroup var options: StoreOptions
        @OptionGroup var policy: PolicyOptions
        @OptionGroup var write: WriteOptions
        @Flag(help: "Show what would be done; change nothing, take no lock.") var dryRun = false
        @Flag(help: "Give the reason for every snapshot.") var explain = false
        @Argument(help: "Services or subvolumes.") var names: [String]
        func run() throws { try perform(.run, names, options, overrides: policy.overrides, write, dryRun: dryRun, explain: explain) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List snapshots (and what else is in the snapshot directory).")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Services or subvolumes.") var names: [String]
        func run() throws {
            let store = try options.openStore()
            let targets = try resolveTargets(names, options, needPolicy: false)
            var inventories: [SnapshotInventory] = []
            var failed = false
            for target in targets {
                do { inventories.append(try store.inventory(of: target.subvolume)) } catch {
                    printError("replica-snap: \(error)")
                    failed = true
                }
            }
            print(options.json ? Render.inventories(inventories).serialized() : inventories.map(Render.inventory).joined(separator: "\n\n"))
            if failed { throw ExitCodeError(code: inventories.isEmpty ? ExitCode.failure : ExitCode.partialFailure) }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete named snapshots of one subvolume (ours only).")
        @OptionGroup var options: StoreOptions
        @OptionGroup var write: WriteOptions
        @Argument(help: "The service or subvolume.") var name: String
        @Argument(help: "Snapshot names, e.g. web.20261122T023000Z.") var snapshots: [String]
        func run() throws {
            let target = try resolveTargets([name], options, needPolicy: false)[0]
            let store = try options.openStore()
            let lock: SubvolumeLock
            do { lock = try SubvolumeLock.acquire(target.subvolume, in: store, wait: write.wait.map { .seconds($0) }) } catch {
                printError("replica-snap: \(error)")
                throw ExitCodeError(code: ExitCode.lockHeld)
            }
            let ours = try store.inventory(of: target.subvolume)
            var failures = 0
            for requested in snapshots {
                guard let snapshot = ours.snapshots.first(where: { $0.name.description == requested }) else {
                    let foreign = ours.foreign.first { $0.name == requested }
                    printError("replica-snap: \(requested): not deleted: " + (foreign.map { "not ours (\($0.reason))" } ?? "no such snapshot"))
                    failures += 1
                    continue
                }
                do {
                    try store.delete(snapshot, of: target.subvolume)
                    print("deleted \(requested)")
                } catch {
                    printError("replica-snap: \(error)")
                    failures += 1
                }
            }
            _ = lock.subvolume
            if failures > 0 { throw ExitCodeError(code: failures == snapshots.count ? ExitCode.failure : ExitCode.partialFailure) }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check the newest snapshot's age: exit 0 OK, 1 WARNING, 2 CRITICAL.")
        @OptionGroup var options: StoreOptions
        @Option(help: "Warn when the newest snapshot is at least this old.") var warning = "26h"
        @Option(help: "Critical when the newest snapshot is at least this old.") var critical = "50h"
        @Argument(help: "Services or subvolumes.") var names: [String]
        func run() throws {
            var probe = RetentionPolicy()
            let (warn, crit): (Int64, Int64)
            do {
                try probe.set("min_age", warning)
                warn = probe.minimumAge
                try probe.set("min_age", critical)
                crit = probe.minimumAge
            } catch { throw ValidationError("--warning/--critical: \(error.reason)") }
            let now = try options.currentTime()
            let targets = try resolveTargets(names, options, needPolicy: false)
            let results: [FreshnessCheck]
            do {
                let store = try Store(path: options.store)
                results = targets.map { FreshnessCheck.check($0.subvolume, store: store, warning: warn, critical: crit, now: now) }
            } catch {
                results = targets.map { FreshnessCheck(subvolume: $0.subvolume, status: .critical, message: "\($0.subvolume): \(error)") }
            }
            let worst = results.map(\.status).max() ?? .ok
            if options.json { print(Render.checks(results, worst: worst).serialized()) } else {
                print("\(worst.label): " + results.map(\.message).joined(separator: "; "))
            }
            if worst != .ok { throw ExitCodeError(code: worst.rawValue) }
        }
    }
}
