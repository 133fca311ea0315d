import Glibc
import Logging
import ReplicaKit
import ReplicaStore

/// One parsed invocation; `run()` returns the exit code.
struct SnapCommand {
    let arguments: ParsedArguments
    init(_ arguments: ParsedArguments) { self.arguments = arguments }

    var json: Bool { arguments.flag("json") }
    var loader: ProfileLoader {
        let directories = arguments.all("profiles")
        return directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
    }
    var overrides: [(key: String, value: String)] {
        ReplicaSnap.policyFlags.compactMap { flag in arguments.value(flag.flag).map { (flag.key, $0) } }
    }

    func run() -> Int32 {
        do {
            switch arguments.command {
            case "create": return try perform(.create)
            case "prune": return try perform(.prune)
            case "run": return try perform(.run)
            case "list": return try list()
            case "delete": return try delete()
            case "send": return try send()
            case "clean": return try clean()
            case "receive": return try receive()
            default: return try check()
            }
        } catch let exit as Exit {
            if !exit.message.isEmpty { printError("replica-snap: \(exit.message)") }
            return exit.code
        } catch {
            printError("replica-snap: \(error)")
            return ExitCode.failure
        }
    }

    /// Ends a command with a code and a message for standard error.
    struct Exit: Error {
        var code: Int32
        var message: String
    }

    func now() throws -> UTCTimestamp {
        guard let text = arguments.value("now") else { return .now }
        guard let time = UTCTimestamp(iso8601: text) else {
            throw Exit(code: ExitCode.usage, message: "--now \"\(text)\" is not YYYY-MM-DDTHH:MM:SSZ")
        }
        return time
    }

    /// The store `target` is on: --store, else its profile's.
    func openStore(_ target: SnapshotSettings) throws -> Store {
        do { return try Store(path: target.storePath) } catch { throw Exit(code: ExitCode.failure, message: error.description) }
    }

    /// Settings for each name, or exit 6 naming where profiles were looked for.
    func targets(_ names: [String], needPolicy: Bool) throws -> [SnapshotSettings] {
        var all: [SnapshotSettings] = []
        for name in names {
            var resolved: [SnapshotSettings]?
            do throws(ProfileError) {
                resolved = try SnapshotSettings.resolve(name, loader: loader, overrides: needPolicy ? overrides : [])
                if resolved == nil, !needPolicy { resolved = [try SnapshotSettings(profile: ServiceProfile.bare(name))] }
            } catch { throw Exit(code: ExitCode.usage, message: error.description) }
            guard var found = resolved else {
                throw Exit(code: ExitCode.notConfigured, message: """
                    \(name) is not configured: no profile at \(loader.searchedPaths(name).joined(separator: ", ")).
                    Write one with a [Snapshots] section (Preserve=24h 14d), or pass --preserve.
                    """)
            }
            if let store = arguments.value("store") { for index in found.indices { found[index].storePath = store } }
            all += found
        }
        return all
    }

    func waitDuration() throws -> Duration? {
        guard let text = arguments.value("wait") else { return nil }
        guard let seconds = Int(text), seconds >= 0 else { throw Exit(code: ExitCode.usage, message: "--wait takes whole seconds") }
        return .seconds(seconds)
    }

    /// create, prune and run differ only in the action.
    func perform(_ action: SnapshotJob.Action) throws -> Int32 {
        let targets = try targets(arguments.positionals, needPolicy: action != .create)
        var options = SnapshotJob.Options()
        options.dryRun = arguments.flag("dry-run")
        options.wait = try waitDuration()
        let metrics = arguments.value("metrics-file") ?? ""
        options.metricsPath = metrics.isEmpty ? nil : metrics
        options.now = try now()
        let logger = Logger(label: "replica-snap")
        var reports: [SnapshotReport] = []
        for target in targets {
            let store = try openStore(target)
            reports.append(SnapshotJob.perform(action, target, store: store, options: options, logger: logger))
        }
        if json {
            print(Render.reports(reports, action: action, dryRun: options.dryRun, now: options.now).serialized())
        } else {
            for report in reports { print(Render.report(report, dryRun: options.dryRun, explain: arguments.flag("explain"))) }
        }
        return SnapshotJob.exitCode(reports)
    }

    func list() throws -> Int32 {
        var names = arguments.positionals
        if names.isEmpty {
            // Every subvolume of the store (--store, else the embedded one).
            let path = arguments.value("store") ?? EmbeddedStore.defaultMountPoint
            do throws(ReplicaError) { names = try Store(path: path).subvolumes() } catch {
                throw Exit(code: ExitCode.failure, message: error.description)
            }
        }
        let targets = try targets(names, needPolicy: false)
        var inventories: [SnapshotInventory] = []
        var failures = 0
        for target in targets {
            do { inventories.append(try openStore(target).inventory(of: target.subvolume)) } catch {
                printError("replica-snap: \(error)")
                failures += 1
            }
        }
        print(json ? Render.inventories(inventories).serialized() : inventories.map(Render.inventory).joined(separator: "\n\n"))
        return failures == 0 ? ExitCode.ok : inventories.isEmpty ? ExitCode.failure : ExitCode.partialFailure
    }

    func delete() throws -> Int32 {
        let target = try targets([arguments.positionals[0]], needPolicy: false)[0]
        let requested = Array(arguments.positionals.dropFirst())
        let store = try openStore(target)
        let wait = try waitDuration()
        let failures: [(name: String, error: ReplicaError)]
        var deleted: [String] = []
        do throws(ReplicaError) {
            failures = try store.deleteSnapshots(named: requested, of: target.subvolume, wait: wait, deleted: { snapshot in
                deleted.append(snapshot.name.description)
                if !json { print("deleted \(snapshot.name)") }
            })
        } catch {
            throw Exit(code: error.reason == .lockHeld ? ExitCode.lockHeld : ExitCode.failure, message: error.description)
        }
        if json { print(Render.deletion(subvolume: target.subvolume, deleted: deleted, failures: failures).serialized()) }
        for failure in failures { printError("replica-snap: \(failure.name): \(failure.error.hint ?? failure.error.description)") }
        return failures.isEmpty ? ExitCode.ok : failures.count == requested.count ? ExitCode.failure : ExitCode.partialFailure
    }

    func check() throws -> Int32 {
        let (warningText, criticalText) = (arguments.value("warning") ?? "26h", arguments.value("critical") ?? "50h")
        guard let warning = RetentionPolicy.duration(warningText), let critical = RetentionPolicy.duration(criticalText) else {
            throw Exit(code: FreshnessCheck.Status.unknownExitCode, message: "--warning/--critical take a duration: N followed by s m h d w (26h)")
        }
        // Whatever keeps it from judging is UNKNOWN for a monitoring system, not CRITICAL.
        let now: UTCTimestamp, targets: [SnapshotSettings]
        do { (now, targets) = (try self.now(), try self.targets(arguments.positionals, needPolicy: false)) } catch let exit as Exit {
            throw Exit(code: FreshnessCheck.Status.unknownExitCode, message: exit.message)
        }
        let results = targets.map { target in
            do throws(ReplicaError) {
                let store = try Store(path: target.storePath)
                return FreshnessCheck.check(target.subvolume, store: store, warning: warning, critical: critical, now: now)
            } catch {
                return FreshnessCheck(subvolume: target.subvolume, status: .unknown, message: "\(target.subvolume): \(error)")
            }
        }
        let worst = results.map(\.status).max() ?? .ok
        print(json ? Render.checks(results, worst: worst).serialized() : "\(worst.label): " + results.map(\.message).joined(separator: "; "))
        return worst.rawValue
    }

    /// The --to/--target of send and clean, parsed.
    func replicationTarget(_ option: String) throws -> ReplicationTarget {
        guard let text = arguments.value(option) else {
            throw Exit(code: ExitCode.usage, message: "\(arguments.command) needs --\(option) /PATH or --\(option) ssh://[USER@]HOST[:PORT]/PATH")
        }
        do { return try ReplicationTarget(parsing: text) } catch { throw Exit(code: ExitCode.usage, message: error.description) }
    }

    func send() throws -> Int32 {
        let target = try replicationTarget("to")
        let wait = try waitDuration()
        let dryRun = arguments.flag("dry-run")
        var reports: [ReplicationReport] = []
        for settings in try targets(arguments.positionals, needPolicy: false) {
            let store = try openStore(settings)
            reports.append(store.send(settings.subvolume, to: target, dryRun: dryRun, wait: wait))
        }
        if json {
            print(Render.replication(reports, dryRun: dryRun).serialized())
        } else {
            for report in reports { print(Render.replication(report, dryRun: dryRun)) }
        }
        for report in reports {
            for failure in [report.error].compactMap({ $0 }) + report.sent.compactMap(\.error) {
                printError("replica-snap: \(report.subvolume) → \(report.target): \(failure)")
            }
        }
        if reports.allSatisfy(\.succeeded) { return ExitCode.ok }
        if reports.contains(where: { $0.error?.reason == .lockHeld }) && reports.allSatisfy({ $0.succeeded || $0.error?.reason == .lockHeld }) {
            return ExitCode.lockHeld
        }
        let anythingSent = reports.contains { report in report.sent.contains { $0.error == nil } || report.succeeded }
        return anythingSent ? ExitCode.partialFailure : ExitCode.failure
    }

    func clean() throws -> Int32 {
        let target = try replicationTarget("target")
        var removed: [(String, [String])] = []
        for settings in try targets(arguments.positionals, needPolicy: false) {
            let store = try openStore(settings)
            do { removed.append((settings.subvolume, try store.cleanTarget(settings.subvolume, target))) } catch {
                throw Exit(code: ExitCode.failure, message: error.description)
            }
        }
        if json {
            print(JSONEnvelope.make(tool: "replica-snap", action: "clean", [("target", .string(target.description)), ("subvolumes", .array(removed.map {
                .object([("subvolume", .string($0.0)), ("removed", .array($0.1.map(JSON.string)))])
            }))]).serialized())
        } else {
            for (subvolume, names) in removed {
                print(names.isEmpty ? "\(subvolume): nothing to clean in \(target)" : names.map { "\(subvolume): removed the interrupted copy \($0)" }.joined(separator: "\n"))
            }
        }
        return ExitCode.ok
    }

    /// The remote end of `send` over ssh; always answers in JSON (the sender reads it).
    func receive() throws -> Int32 {
        let folder = arguments.positionals[0]
        do {
            if arguments.flag("list") || arguments.flag("list-only") {
                let fd = try Receiver.openFolder(folder)
                let cleaned = arguments.flag("list") ? try Receiver.clean(fd, path: folder) : []
                let copies = try Receiver.copies(in: fd, path: folder)
                print(JSONEnvelope.make(tool: "replica-snap", action: "receive", [
                    ("folder", .string(folder)), ("copies", .array(copies.map(\.json))), ("cleaned", .array(cleaned.map(JSON.string))),
                ]).serialized())
                return ExitCode.ok
            }
            let deletions = arguments.all("delete")
            if !deletions.isEmpty {
                var copies: [TargetCopy] = []
                for text in deletions {
                    guard let copy = TargetCopy(deletionRequest: text) else {
                        throw Exit(code: ExitCode.usage, message: "--delete takes NAME:ID, e.g. web.20261122T023000Z:261")
                    }
                    copies.append(copy)
                }
                let fd = try Receiver.openFolder(folder)
                let deleted = try Receiver.delete(copies, in: fd, path: folder)
                print(JSONEnvelope.make(tool: "replica-snap", action: "receive", [("folder", .string(folder)),
                                                                                  ("deleted", .array(deleted.map(JSON.string)))]).serialized())
                return ExitCode.ok
            }
            guard let name = arguments.value("name"), let uuid = arguments.value("uuid") else {
                throw Exit(code: ExitCode.usage, message: "receive needs --name SNAPSHOT --uuid UUID (or --list)")
            }
            let copy = try Receiver.begin(from: 0, into: folder, name: name, sourceUUID: uuid).finish()
            print(JSONEnvelope.make(tool: "replica-snap", action: "receive", [("folder", .string(folder)), ("copy", copy.json)]).serialized())
            return ExitCode.ok
        } catch let error as ReplicaError {
            throw Exit(code: ExitCode.failure, message: error.description)
        }
    }
}
