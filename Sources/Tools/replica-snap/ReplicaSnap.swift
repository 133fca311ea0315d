// replica-snap: read-only btrfs snapshots of service state, pruned by policy; run by
// replica-snap@.timer. Parses, calls SnapshotJob / Store / FreshnessCheck, prints.
import ArgumentParser
import Glibc
import Logging
import ReplicaKit
import ReplicaStore

@main
struct ReplicaSnap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica-snap",
        abstract: "Take read-only btrfs snapshots of service state and prune them by policy.",
        discussion: """
            NAME is a service (web, web.service) whose profile in /etc/replica/services/NAME.conf has a
            [Snapshots] section, or a subvolume name with the policy given by flags.
            Exit codes: 0 ok, 1 failure, 2 usage, 3 lock held, 6 not configured, 10 partial failure;
            check: 0 OK, 1 WARNING, 2 CRITICAL.
            """,
        subcommands: [Create.self, List.self, Prune.self, Run.self, Delete.self, Check.self])

    /// ArgumentParser reports usage errors with 64; Replica's convention is 2.
    static func main() {
        ReplicaLogging.bootstrap(identifier: "replica-snap")
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCodeError {
            Glibc.exit(code.code)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if !message.isEmpty { if code == .success { print(message) } else { printError(message) } }
            Glibc.exit(code == .success ? 0 : code == .validationFailure ? ExitCode.usage : code.rawValue)
        }
    }
}

/// Options every subcommand shares.
struct StoreOptions: ParsableArguments {
    @Option(help: "The mounted btrfs store.")
    var store = EmbeddedStore.defaultMountPoint

    @Option(name: .customLong("profiles"), help: ArgumentHelp(
        "A profile directory to read, lowest priority first (repeatable).", visibility: .hidden))
    var profileDirectories: [String] = []

    @Option(help: ArgumentHelp("Pretend it is this UTC time, e.g. 2026-11-22T02:30:00Z.", visibility: .hidden))
    var now: String?

    @Flag(help: "Print JSON (schema replica.snap.v1) instead of tables.")
    var json = false

    var loader: ProfileLoader {
        profileDirectories.isEmpty ? ProfileLoader() : ProfileLoader(directories: profileDirectories)
    }

    func currentTime() throws -> UTCTimestamp {
        guard let now else { return .now }
        guard let time = UTCTimestamp(iso8601: now) else {
            throw ValidationError("--now \"\(now)\" is not YYYY-MM-DDTHH:MM:SSZ")
        }
        return time
    }

    func openStore() throws -> Store {
        do { return try Store(path: store) } catch { throw Failure(error.description) }
    }
}

/// Flags that override or replace a profile's retention keys.
struct PolicyOptions: ParsableArguments {
    @Option(help: "btrbk's preserve: e.g. \"24h 14d 8w *m\" (units h d w m q y).") var preserve: String?
    @Option(help: "all, latest, no, or e.g. 2d.") var preserveMin: String?
    @Option(help: "Hour days start at (0-23).") var preserveHourOfDay: String?
    @Option(help: "Day weeks start on.") var preserveDayOfWeek: String?
    @Option(help: "Always keep this many of the newest.") var latest: String?
    @Option(help: "Never delete younger than this, e.g. 30m.") var minAge: String?
    @Option(help: "Keep this much free, e.g. 10% or 20G, deleting the oldest deletable first.") var minFree: String?

    var overrides: [(key: String, value: String)] {
        [("preserve", preserve), ("preserve_min", preserveMin), ("preserve_hour_of_day", preserveHourOfDay),
         ("preserve_day_of_week", preserveDayOfWeek), ("latest", latest), ("min_age", minAge), ("min_free", minFree)]
            .compactMap { key, value in value.map { (key, $0) } }
    }
}

/// Options of commands that write.
struct WriteOptions: ParsableArguments {
    @Option(help: "Wait up to this many seconds for another run on the same subvolume (default: exit 3 at once).")
    var wait: Int?

    @Option(help: "The Prometheus textfile to update ('' for none).")
    var metricsFile = MetricsTextfile.defaultPath
}

/// A failure already explained by its message; exits 1.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Ends the process with a chosen code after output was printed.
struct ExitCodeError: Error { var code: Int32 }

extension UTCTimestamp {
    /// `2026-11-22T02:30:00Z`.
    init?(iso8601 text: String) {
        let digits = text.filter(\.isNumber)
        guard text.count == 20, text.hasSuffix("Z"), digits.count == 14 else { return nil }
        let n = digits.map { Int(String($0))! }
        func value(_ range: Range<Int>) -> Int { n[range].reduce(0) { $0 * 10 + $1 } }
        self.init(year: value(0..<4), month: value(4..<6), day: value(6..<8),
                  hour: value(8..<10), minute: value(10..<12), second: value(12..<14))
    }
}
