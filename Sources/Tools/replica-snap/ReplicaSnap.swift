// replica-snap: read-only btrfs snapshots of service state, pruned by policy; run by
// replica-snap@.timer. Parses, calls SnapshotJob / Store / FreshnessCheck, prints.
import Glibc
import ReplicaKit
import ReplicaStore

@main
enum ReplicaSnap {
    static let storeOptions: [OptionSpec] = [
        .option("store", "path", "The mounted btrfs store (default: the profile's [State] Store=, else \(EmbeddedStore.defaultMountPoint))."),
        .option("profiles", "dir", "A profile directory, lowest priority first.", repeatable: true, hidden: true),
        .option("now", "time", "Pretend it is this UTC time (YYYY-MM-DDTHH:MM:SSZ).", hidden: true),
        .flag("json", "Print one JSON object (schema replica.v1) instead of tables."),
    ]
    static let writeOptions: [OptionSpec] = [
        .option("wait", "seconds", "Wait this long for another run on the same subvolume (default: exit 3 at once)."),
        .option("metrics-file", "path", "The Prometheus textfile to update ('' for none).", default: MetricsTextfile.defaultPath),
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
    static let policyOptions = policyFlags.map { OptionSpec.option($0.flag, "value", $0.help) }
    static let names = PositionalSpec("name", "Services (web, web.service) or subvolumes.", many: true)
    static let pruneFlags: [OptionSpec] = [
        .flag("dry-run", "Show what would be done; change nothing, take no lock.", short: "n"),
        .flag("explain", "Give the reason for every snapshot."),
    ]

    static let tool = ToolSpec(
        name: "replica-snap",
        abstract: "Take read-only btrfs snapshots of service state and prune them by policy.",
        discussion: """
            NAME is a service whose profile (/etc/replica/services/NAME.service.conf) has a [Snapshots]
            section, or a subvolume name with the policy given by flags.
            Exit codes: 0 ok, 1 failure, 2 usage, 3 lock held, 6 not configured, 10 partial failure;
            check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (it cannot judge: a usage error).
            """,
        commands: [
            CommandSpec("create", "Take a read-only snapshot of each subvolume now.",
                        options: storeOptions + writeOptions, positionals: [names]),
            CommandSpec("prune", "Delete the snapshots the policy no longer keeps.",
                        options: storeOptions + writeOptions + policyOptions + pruneFlags, positionals: [names]),
            CommandSpec("run", "Create, then prune (what the timer runs).",
                        options: storeOptions + writeOptions + policyOptions + pruneFlags, positionals: [names]),
            CommandSpec("list", "List snapshots, and what else is in the snapshot directory; without names, of every subvolume.",
                        options: storeOptions, positionals: [PositionalSpec("name", "Services or subvolumes (default: all in the store).",
                                                                            many: true, optional: true)]),
            CommandSpec("delete", "Delete named snapshots of one subvolume (ours only).",
                        options: storeOptions + writeOptions,
                        positionals: [PositionalSpec("name", "The service or subvolume."),
                                      PositionalSpec("snapshot", "Snapshot names, e.g. web.20261122T023000Z.", many: true)]),
            CommandSpec("check", "Check the newest snapshot's age: exit 0 OK, 1 WARNING, 2 CRITICAL.",
                        options: storeOptions + [
                            .option("warning", "age", "Warn when the newest snapshot is at least this old.", default: "26h"),
                            .option("critical", "age", "Critical when the newest snapshot is at least this old.", default: "50h"),
                        ], positionals: [names], usageExitCode: FreshnessCheck.Status.unknownExitCode),
            CommandSpec("send", "Send the snapshots a target lacks, incrementally where it can (btrfs send | btrfs receive).",
                        options: storeOptions + [
                            .option("to", "target", "A folder on btrfs here (/PATH) or on another host (ssh://[USER@]HOST[:PORT]/PATH)."),
                            .option("wait", "seconds", "Wait this long for another run on the same subvolume (default: exit 3 at once)."),
                            .flag("dry-run", "Show what would be sent; send nothing, take no lock.", short: "n"),
                        ], positionals: [names]),
            CommandSpec("clean", "Remove the copies interrupted receives left in a target (by subvolume id; nothing else).",
                        options: storeOptions + [
                            .option("target", "target", "The target folder, as given to send --to."),
                        ], positionals: [names]),
            CommandSpec("receive", "The receiving end of send over ssh: take one stream on standard input into FOLDER.",
                        options: [
                            .option("name", "snapshot", "The snapshot the stream holds."),
                            .option("uuid", "uuid", "Its uuid on the sending side."),
                            .flag("list", "Instead: remove interrupted receives, then list the copies in FOLDER."),
                            .flag("list-only", "Instead: list the copies in FOLDER, changing nothing."),
                            .option("delete", "name:id", "Instead: delete this received copy (by subvolume id) from FOLDER.", repeatable: true),
                            .json,
                        ], positionals: [PositionalSpec("folder", "The target folder of one subvolume (TARGET/NAME).")]),
        ])

    static func main() {
        ReplicaLogging.bootstrap(identifier: "replica-snap")
        signal(SIGPIPE, SIG_IGN)  // a closed pipe is an error to report, not a reason to die
        exit(SnapCommand(tool.parseOrExit()).run())
    }
}
