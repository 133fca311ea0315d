import Glibc
import Logging
import ReplicaKit
import ReplicaStore

/// `replica-snap`: read-only btrfs snapshots of service state, pruned by policy, sent to other
/// hosts; run by replica-snap@.timer. Every step is one call of `SnapshotJob`, `Store`,
/// `FreshnessCheck` or `Receiver`; `SnapRender` prints.
public enum SnapTool: Tool {
    static let storeOptions: [OptionSpec] = [
        .option("store", "path", "The mounted btrfs store (default: the profile's [State] Store=, else \(EmbeddedStore.defaultMountPoint))."),
        .profiles,
        .option("now", "time", "Pretend it is this UTC time (YYYY-MM-DDTHH:MM:SSZ).", hidden: true),
    ]
    static let wait = OptionSpec.option("wait", "seconds", "Wait this long for another run on the same subvolume (default: exit 3 at once).")
    static let writeOptions: [OptionSpec] = [
        wait, .option("metrics-file", "path", "The Prometheus textfile to update ('' for none).", default: MetricsTextfile.defaultPath),
    ]
    /// Flag name → retention key; each overrides the profile's value.
    static let policyFlags: [(flag: String, key: String, help: String)] = [
        ("preserve", "preserve", "btrbk's preserve, e.g. \"24h 14d 8w *m\" (units h d w m q y)."),
        ("preserve-min", "preserve_min", "all, latest, no, or e.g. 2d."),
        ("preserve-hour-of-day", "preserve_hour_of_day", "The hour days start at (0-23)."),
        ("preserve-day-of-week", "preserve_day_of_week", "The day weeks start on."),
        ("latest", "latest", "Always keep this many of the newest."),
        ("min-age", "min_age", "Never delete younger than this, e.g. 30m."),
        ("min-free", "min_free", "Keep this much free (10%, 20G), deleting the oldest deletable first."),
    ]
    static let pruneOptions = storeOptions + writeOptions + [jobs] + policyFlags.map { OptionSpec.option($0.flag, "value", $0.help) } + [
        .flag("dry-run", "Show what would be done; change nothing, take no lock.", short: "n"), .flag("explain", "Give the reason for every snapshot."),
    ]
    static let jobs = OptionSpec.option("jobs", "count", "Work on this many subvolumes at once: their snapshots share btrfs's commits "
                                        + "(those with [Replication] go one at a time).", default: "\(SnapshotJob.Options.defaultThreads)")
    static let names = PositionalSpec("name", "Services (web, web.service) or subvolumes.", many: true)

    public static let spec = ToolSpec(
        name: "replica-snap",
        abstract: "Take read-only btrfs snapshots of service state and prune them by policy.",
        discussion: """
            NAME is a service whose profile (/etc/replica/services/NAME.service.conf) has a [Snapshots]
            section, or a subvolume name with the policy given by flags.
            Exit codes: 0 ok, 1 failure, 2 usage, 3 lock held, 6 not configured, 10 partial failure;
            check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (it cannot judge: a usage error).
            """,
        commands: [
            CommandSpec("create", "Take a read-only snapshot of each subvolume now.", options: storeOptions + writeOptions + [jobs], positionals: [names]),
            CommandSpec("prune", "Delete the snapshots the policy no longer keeps.", options: pruneOptions, positionals: [names]),
            CommandSpec("run", "Create, then prune (what the timer runs).", options: pruneOptions, positionals: [names]),
            CommandSpec("list", "List snapshots, and what else is in the snapshot directory; without names, of every subvolume.",
                        options: storeOptions, positionals: [PositionalSpec("name", "Services or subvolumes (default: all in the store).",
                                                                            many: true, optional: true)]),
            CommandSpec("delete", "Delete named snapshots of one subvolume (ours only).", options: storeOptions + writeOptions,
                        positionals: [PositionalSpec("name", "The service or subvolume."),
                                      PositionalSpec("snapshot", "Snapshot names, e.g. web.20261122T023000Z.", many: true)]),
            CommandSpec("check", "Check the newest snapshot's age: exit 0 OK, 1 WARNING, 2 CRITICAL.", options: storeOptions + [
                .option("warning", "age", "Warn when the newest snapshot is at least this old.", default: "26h"),
                .option("critical", "age", "Critical when the newest snapshot is at least this old.", default: "50h"),
            ], positionals: [names], monitoring: true),
            CommandSpec("send", "Send the snapshots a target lacks, incrementally where it can (btrfs send | btrfs receive).", options: storeOptions + [
                .option("to", "target", "A folder on btrfs here (/PATH) or on another host (ssh://[USER@]HOST[:PORT]/PATH)."), wait,
                .flag("dry-run", "Show what would be sent; send nothing, take no lock.", short: "n"),
            ], positionals: [names]),
            CommandSpec("clean", "Remove the copies interrupted receives left in a target (by subvolume id; nothing else).",
                        options: storeOptions + [.option("target", "target", "The target folder, as given to send --to.")], positionals: [names]),
            CommandSpec("receive", "The receiving end of send over ssh: take one stream on standard input into FOLDER.", options: [
                .option("name", "snapshot", "The snapshot the stream holds."),
                .option("uuid", "uuid", "Its uuid on the sending side."),
                .flag("list", "Instead: remove interrupted receives, then list the copies in FOLDER."),
                .flag("list-only", "Instead: list the copies in FOLDER, changing nothing."),
                .option("delete", "name:id", "Instead: delete this received copy (by subvolume id) from FOLDER.", repeatable: true),
            ], positionals: [PositionalSpec("folder", "The target folder of one subvolume (TARGET/NAME).")], alwaysJSON: true),
            CommandSpec("serve", "The forced command of one sender's ssh key: run the receive it asks for (in SSH_ORIGINAL_COMMAND), inside ROOT only.",
                        options: [.option("root", "folder", "The only folder this key's copies may be received into, listed, cleaned or deleted from.")],
                        alwaysJSON: true),
        ])

    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        let command = SnapCommand(arguments)
        switch arguments.command {
        case "create": return try command.perform(.create)
        case "prune": return try command.perform(.prune)
        case "run": return try command.perform(.run)
        case "list": return try command.list()
        case "delete": return try command.delete()
        case "send": return try command.send()
        case "clean": return try command.clean()
        case "receive": return try command.receive(in: .anywhere)
        case "serve": return try command.serve()
        default: return try command.check()
        }
    }
}

/// One parsed invocation of `replica-snap`.
struct SnapCommand {
    let arguments: ParsedArguments
    init(_ arguments: ParsedArguments) { self.arguments = arguments }

    var overrides: [(key: String, value: String)] {
        SnapTool.policyFlags.compactMap { flag in arguments.value(flag.flag).map { (flag.key, $0) } }
    }

    func now() throws(ReplicaError) -> UTCTimestamp {
        guard let text = arguments.value("now") else { return .now }
        guard let time = UTCTimestamp(iso8601: text) else { throw .usage("--now \"\(text)\" is not YYYY-MM-DDTHH:MM:SSZ") }
        return time
    }

    /// Settings for each name: its profile's, else (without a policy needed) the bare subvolume's;
    /// exit 6 naming where profiles were looked for.
    func targets(_ names: [String], needPolicy: Bool) throws(ReplicaError) -> [SnapshotSettings] {
        let loader = arguments.profileLoader
        var all: [SnapshotSettings] = []
        for name in names {
            var resolved: [SnapshotSettings]?
            do throws(ProfileError) {
                resolved = try SnapshotSettings.resolve(name, loader: loader, overrides: needPolicy ? overrides : [])
                if resolved == nil, !needPolicy { resolved = [try SnapshotSettings(profile: ServiceProfile.bare(name))] }
            } catch { throw error.because(.usage) }
            guard var found = resolved else {
                throw loader.notConfigured(name, "Write one with a [Snapshots] section (Preserve=24h 14d), or pass --preserve.")
            }
            if let store = arguments.value("store") { for index in found.indices { found[index].storePath = store } }
            all += found
        }
        return all
    }

    /// create, prune and run differ only in the action.
    func perform(_ action: SnapshotJob.Action) throws(ReplicaError) -> ToolOutput {
        var options = SnapshotJob.Options()
        options.dryRun = arguments.flag("dry-run")
        options.wait = try arguments.seconds("wait")
        guard let threads = Int(arguments.value("jobs")!), threads >= 1 else { throw .usage("--jobs takes a count of 1 or more") }
        options.threads = threads
        let metrics = arguments.value("metrics-file") ?? ""
        options.metricsPath = metrics.isEmpty ? nil : metrics
        options.now = try now()
        let targets = try targets(arguments.positionals, needPolicy: action != .create)
        let logger = ReplicaLogging.logger(identifier: "replica-snap")
        let reports = SnapshotJob.perform(action, targets, options: options, logger: logger)
        return ToolOutput(lines: reports.map { SnapRender.report($0, dryRun: options.dryRun, explain: arguments.flag("explain")) },
                          SnapRender.reports(reports, dryRun: options.dryRun, now: options.now), exitCode: SnapshotJob.exitCode(reports))
    }

    func list() throws(ReplicaError) -> ToolOutput {
        // Without names, every subvolume of the store (--store, else the embedded one).
        let names = arguments.positionals.isEmpty ? try Store(path: arguments.value("store") ?? EmbeddedStore.defaultMountPoint).subvolumes()
                                                  : arguments.positionals
        var inventories: [SnapshotInventory] = [], failures: [String] = []
        for target in try targets(names, needPolicy: false) {
            do throws(ReplicaError) { inventories.append(try Store(path: target.storePath).inventory(of: target.subvolume)) } catch {
                failures.append(error.description)
            }
        }
        return ToolOutput(inventories.map(SnapRender.inventory).joined(separator: "\n\n"), SnapRender.inventories(inventories), warnings: failures,
                          exitCode: failures.isEmpty ? ExitCode.ok : inventories.isEmpty ? ExitCode.failure : ExitCode.partialFailure)
    }

    func delete() throws(ReplicaError) -> ToolOutput {
        let target = try targets([arguments.positionals[0]], needPolicy: false)[0]
        let requested = Array(arguments.positionals.dropFirst())
        var deleted: [String] = []
        let failures = try Store(path: target.storePath).deleteSnapshots(named: requested, of: target.subvolume, wait: try arguments.seconds("wait"),
                                                                         deleted: { deleted.append($0.name.description) })
        return ToolOutput(lines: deleted.map { "deleted \($0)" }, SnapRender.deletion(subvolume: target.subvolume, deleted: deleted, failures: failures),
                          warnings: failures.map { "\($0.name): \($0.error.hint ?? $0.error.description)" },
                          exitCode: failures.isEmpty ? ExitCode.ok : failures.count == requested.count ? ExitCode.failure : ExitCode.partialFailure)
    }

    /// Whatever keeps it from judging is UNKNOWN for a monitoring system, not CRITICAL (the
    /// command is `monitoring`: every error exits 3).
    func check() throws(ReplicaError) -> ToolOutput {
        guard let warning = RetentionPolicy.duration(arguments.value("warning")!), let critical = RetentionPolicy.duration(arguments.value("critical")!) else {
            throw .usage("--warning/--critical take a duration: N followed by s m h d w (26h)")
        }
        let now = try now()
        let results = try targets(arguments.positionals, needPolicy: false).map { target in
            do throws(ReplicaError) {
                return FreshnessCheck.check(target.subvolume, store: try Store(path: target.storePath), warning: warning, critical: critical, now: now)
            } catch {
                return FreshnessCheck(subvolume: target.subvolume, status: .unknown, message: "\(target.subvolume): \(error)")
            }
        }
        let worst = results.map(\.status).max() ?? .ok
        return ToolOutput("\(worst.label): " + results.map(\.message).joined(separator: "; "), SnapRender.checks(results, worst: worst),
                          exitCode: worst.rawValue)
    }

    /// The --to/--target of send and clean, parsed.
    func replicationTarget(_ option: String) throws(ReplicaError) -> ReplicationTarget {
        guard let text = arguments.value(option) else {
            throw .usage("\(arguments.command) needs --\(option) /PATH or --\(option) ssh://[USER@]HOST[:PORT]/PATH")
        }
        do throws(ReplicaError) { return try ReplicationTarget(parsing: text) } catch { throw error.because(.usage) }
    }

    func send() throws(ReplicaError) -> ToolOutput {
        let target = try replicationTarget("to")
        let wait = try arguments.seconds("wait")
        let dryRun = arguments.flag("dry-run")
        var reports: [ReplicationReport] = []
        for settings in try targets(arguments.positionals, needPolicy: false) {
            reports.append(try Store(path: settings.storePath).send(settings.subvolume, to: target, dryRun: dryRun, wait: wait))
        }
        let failures = reports.flatMap { report in
            ([report.error].compactMap { $0 } + report.sent.compactMap(\.error)).map { "\(report.subvolume) → \(report.target): \($0)" }
        }
        return ToolOutput(lines: reports.map { SnapRender.replication($0, dryRun: dryRun) }, SnapRender.replication(reports, dryRun: dryRun),
                          warnings: failures, exitCode: ReplicationReport.exitCode(reports))
    }

    func clean() throws(ReplicaError) -> ToolOutput {
        let target = try replicationTarget("target")
        var removed: [(String, [String])] = []
        for settings in try targets(arguments.positionals, needPolicy: false) {
            removed.append((settings.subvolume, try Store(path: settings.storePath).cleanTarget(settings.subvolume, target)))
        }
        return ToolOutput(lines: removed.map { subvolume, names in
            names.isEmpty ? "\(subvolume): nothing to clean in \(target)" : names.map { "\(subvolume): removed the interrupted copy \($0)" }.joined(separator: "\n")
        }, [("target", .string(target.description)), ("subvolumes", .array(removed.map {
            .object([("subvolume", .string($0.0)), ("removed", .array($0.1.map(JSON.string)))])
        }))])
    }

    /// The remote end of `send` over ssh, its folder in `root`; always answers in JSON (the sender reads it).
    func receive(in root: FolderRoot) throws(ReplicaError) -> ToolOutput {
        let folder = arguments.positionals[0]
        if arguments.flag("list") || arguments.flag("list-only") {
            let fd: OwnedFD
            do throws(ReplicaError) { fd = try Receiver.openFolder(folder, in: root, create: arguments.flag("list")) } catch where error.errno == .ENOENT {
                return ToolOutput("", [("folder", .string(folder)), ("copies", .array([])), ("cleaned", .array([]))])  // nothing sent yet
            }
            let cleaned = arguments.flag("list") ? try Receiver.clean(fd, path: folder) : []
            let copies = try Receiver.copies(in: fd, path: folder)
            return ToolOutput("", [("folder", .string(folder)), ("copies", .array(copies.map(\.json))), ("cleaned", .array(cleaned.map(JSON.string)))])
        }
        let deletions = arguments.all("delete")
        if !deletions.isEmpty {
            var copies: [TargetCopy] = []
            for text in deletions {
                guard let copy = TargetCopy(deletionRequest: text) else { throw .usage("--delete takes NAME:ID, e.g. web.20261122T023000Z:261") }
                copies.append(copy)
            }
            let deleted = try Receiver.delete(copies, in: try Receiver.openFolder(folder, in: root, create: false), path: folder)
            return ToolOutput("", [("folder", .string(folder)), ("deleted", .array(deleted.map(JSON.string)))])
        }
        guard let name = arguments.value("name"), let uuid = arguments.value("uuid") else {
            throw .usage("receive needs --name SNAPSHOT --uuid UUID (or --list)")
        }
        let copy = try Receiver.receive(from: 0, into: try Receiver.openFolder(folder, in: root), path: folder, name: name, sourceUUID: uuid)
        return ToolOutput("", [("folder", .string(folder)), ("copy", copy.json)])
    }

    /// `command="replica-snap serve --root DIR",restrict` in `authorized_keys`: reads the command the
    /// sender asked for from `SSH_ORIGINAL_COMMAND`, allows only `replica-snap receive` (receive, list,
    /// clean, delete), and only for folders inside DIR. Each request and refusal goes to the journal.
    func serve() throws(ReplicaError) -> ToolOutput {
        guard let rootPath = arguments.value("root") else { throw .usage("serve needs --root FOLDER: the only folder this key may use") }
        let root = try FolderRoot.beneath(rootPath)
        // To the journal even under sshd, whose standard error goes back to the sender.
        let logger = Logger(label: "replica-snap") { _ in ReplicaLogHandler(identifier: "replica-snap", sink: .journal) }
        guard let asked = getenv("SSH_ORIGINAL_COMMAND").map({ String(cString: $0) }) else {
            throw ReplicaError("serve", [rootPath], errno: .EPERM, hint: "no command was asked for (SSH_ORIGINAL_COMMAND is unset): "
                               + "this key runs replica-snap receive only, never a shell", reason: .refused)
        }
        do throws(ReplicaError) {
            let words = try RemoteCommand.split(asked)
            guard words.count >= 2, words[0] == "replica-snap" || words[0].hasSuffix("/replica-snap"), words[1] == "receive",
                  case .run(let parsed) = try SnapTool.spec.parse(Array(words.dropFirst()))
            else {
                throw ReplicaError("serve", [asked], errno: .EPERM, hint: "this key runs replica-snap receive only", reason: .refused)
            }
            let output = try SnapCommand(parsed).receive(in: root)
            logger.info("served \(asked) in \(rootPath)")
            return output
        } catch {
            logger.warning("refused \(asked) for the key of \(rootPath): \(error)")
            throw error
        }
    }
}
