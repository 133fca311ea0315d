// replica-shift: prepares what a sandboxed service needs (ExecStartPre=+replica-shift prepare %n) and
// writes the unit's drop-in from its profile. Parses, calls ServiceShift, prints.
import Glibc
import Replica
import ReplicaKit
import ReplicaStore

let options: [OptionSpec] = [.option("profiles", "dir", "A profile directory, lowest priority first.", repeatable: true, hidden: true)]
let json = OptionSpec.json
let unit = PositionalSpec("unit", "The service (web, web.service); its profile is /etc/replica/services/UNIT.conf.")
let tool = ToolSpec(
    name: "replica-shift",
    abstract: "Prepare a service's state, snapshots and config, and write its sandbox drop-in.",
    discussion: "Exit codes: 0 ok, 1 failure (the unit then does not start), 2 usage, 3 lock held, 6 not configured.",
    commands: [
        CommandSpec("prepare", "Make the state subvolumes (migrating once), the pre-start snapshot; idempotent.",
                    options: options + [.option("wait", "seconds", "Wait this long for another prepare or snapshot run of the unit (then exit 3).",
                                                default: "30"), json],
                    positionals: [unit]),
        CommandSpec("drop-in", "Print the unit's drop-in as replica-generator writes it at boot and daemon-reload.",
                    options: options + [.option("command", "path", "replica-shift as the unit runs it.", default: "/usr/bin/replica-shift")],
                    positionals: [unit]),
        CommandSpec("refuse", "Fail, saying why: what the drop-in of a unit whose profile does not parse runs instead of the service.",
                    options: options, positionals: [unit]),
        CommandSpec("rollback", "Put the (stopped) service's state back to a snapshot; the present state is kept as a new snapshot.",
                    options: options + [json], positionals: [unit, PositionalSpec("snapshot", "Its name as replica-snap list UNIT prints it (web.20261122T042415Z).")]),
        CommandSpec("config", "List the config generations; with --file, write a new one and make it current.",
                    options: options + [
                        .option("file", "target=source", "A file or directory tree of the new generation: its path in the service, and where to copy it from.", repeatable: true),
                        .option("switch", "n", "Make generation N current."),
                        .flag("rollback", "Make the generation before the current one current."),
                        json,
                    ], positionals: [unit]),
        CommandSpec("status", "Report where what the running service sees differs from the current config.",
                    options: options + [.option("pid", "pid", "The service's main process (systemctl show -p MainPID UNIT)."), json],
                    positionals: [unit]),
    ])

let arguments = tool.parseOrExit()
let directories = arguments.all("profiles")
let loader = directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
let name = arguments.positionals[0]

let asJSON = arguments.flag("json")

/// Lines for people, or the command's JSON document (`JSONEnvelope`) for programs.
func report(_ lines: @autoclosure () -> [String], _ members: [(String, JSON)]) {
    if asJSON {
        JSONEnvelope.print(tool: "replica-shift", action: arguments.command, [("unit", .string(settings.unit))] + members)
    } else {
        lines().forEach { print($0) }
    }
}

func fail(_ message: String, _ code: Int32 = ExitCode.failure) -> Never {
    printError("replica-shift: \(message)")
    exit(code)
}

// The whole plan, checked as the generator checks it: a profile one accepts, the other accepts.
let plan: ServicePlan
do {
    guard let loaded = try ServicePlan.load(name, loader: loader) else {
        fail("\(name) is not configured: no profile at \(loader.searchedPaths(name).joined(separator: ", "))", ExitCode.notConfigured)
    }
    plan = loaded
} catch {
    // A profile that does not parse: the unit's drop-in runs `refuse`, which must fail whatever happens.
    fail("\(error)", arguments.command == "refuse" ? ExitCode.failure : ExitCode.usage)
}
let settings = plan.profile

do {
    switch arguments.command {
    case "prepare":
        guard let seconds = Int(arguments.value("wait") ?? "30"), seconds >= 0 else { fail("--wait takes whole seconds", ExitCode.usage) }
        let steps: ServiceShift.Report
        do { steps = try ServiceShift.prepare(settings, wait: .seconds(seconds)) } catch {
            fail("\(error)", error.reason == .lockHeld ? ExitCode.lockHeld : ExitCode.failure)
        }
        report(steps.map { "\(settings.unit): \($0)" }, [("steps", .array(steps.map(JSON.string)))])
    case "drop-in":
        print(try plan.dropIn(shiftCommand: arguments.value("command") ?? "/usr/bin/replica-shift"), terminator: "")
    case "refuse":
        fail("\(settings.unit): its profile parses now, but it did not when the drop-in was generated; "
             + "run systemctl daemon-reload so replica-generator writes its sandbox, then start it")
    case "rollback":
        let outcomes = try ServiceShift.rollback(settings, to: arguments.positionals[1])
        report(outcomes.map { "\(settings.unit): \($0.subvolume) is now \($0.restored); the state before is kept as \($0.saved)" },
               [("rolled_back", .array(outcomes.map { .object([("subvolume", .string($0.subvolume)), ("restored", .string($0.restored)),
                                                               ("saved", .string($0.saved))]) }))])
    case "config":
        let config = settings.config
        func current(_ generation: Int) {
            report(["\(settings.unit): config generation \(generation) is current; restart the service to use it"],
                   [("current", .int(Int64(generation))), ("changed", .bool(true))])
        }
        let files = arguments.all("file")
        if !files.isEmpty {
            var sources: [(target: String, source: String)] = []
            for spec in files {
                let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { fail("--file \(spec): give TARGET=SOURCE, e.g. /etc/app.conf=./app.conf", ExitCode.usage) }
                sources.append((parts[0], parts[1]))
            }
            let generation = try config.writeGeneration(copying: sources)
            try config.switchTo(generation)
            current(generation)
        } else if let number = arguments.value("switch") {
            guard let generation = Int(number) else { fail("--switch takes a generation number", ExitCode.usage) }
            try config.switchTo(generation)
            current(generation)
        } else if arguments.flag("rollback") {
            let generation = try config.rollback()
            current(generation)
        } else {
            let current = try config.current()
            var lines: [String] = [], generations: [JSON] = []
            for generation in try config.generations() {
                let trees = try config.trees(in: generation)
                let files = try config.files(in: generation).filter { file in !trees.contains { file.hasPrefix($0 + "/") } }
                lines.append("\(generation == current ? "*" : " ") \(generation)  \((trees.map { $0 + "/" } + files).joined(separator: " "))")
                generations.append(.object([("generation", .int(Int64(generation))), ("trees", .array(trees.map(JSON.string))),
                                            ("files", .array(files.map(JSON.string)))]))
            }
            report(lines, [("current", current.map { .int(Int64($0)) } ?? .null), ("changed", .bool(false)),
                           ("generations", .array(generations))])
        }
    default:
        guard let pid = arguments.value("pid").flatMap({ Int32($0) }), pid > 0 else { fail("status needs --pid PID", ExitCode.usage) }
        let drift = try settings.config.drift(seenThrough: "/proc/\(pid)/root")
        let current = try settings.config.current()
        report(drift.isEmpty ? ["\(settings.unit): the service sees config generation \(current.map(String.init) ?? "none")"]
                             : drift.map { "\(settings.unit): \($0.path): \($0.reason)" },
               [("current", current.map { .int(Int64($0)) } ?? .null), ("matches", .bool(drift.isEmpty)),
                ("drift", .array(drift.map { .object([("path", .string($0.path)), ("reason", .string($0.reason))]) }))])
        if !drift.isEmpty { exit(ExitCode.failure) }
    }
} catch {
    fail("\(error)")
}
