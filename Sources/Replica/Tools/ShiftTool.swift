import Glibc
import ReplicaKit
import ReplicaStore

/// `replica-shift`: prepares what a sandboxed service needs (`ExecStartPre=+replica-shift prepare
/// %n`) and writes the unit's drop-in from its plan. Every step is one call of `ServiceShift`,
/// `ConfigStore` or `ServicePlan`.
public enum ShiftTool: Tool {
    static let unit = PositionalSpec("unit", "The service (web, web.service); its profile is /etc/replica/services/UNIT.conf.")
    public static let spec = ToolSpec(
        name: "replica-shift",
        abstract: "Prepare a service's state, snapshots and config, and write its sandbox drop-in.",
        discussion: "Exit codes: 0 ok, 1 failure (the unit then does not start), 2 usage, 3 lock held, 6 not configured.",
        commands: [
            CommandSpec("prepare", "Make the state subvolumes (migrating once), the pre-start snapshot; idempotent.",
                        options: [.profiles, .option("wait", "seconds", "Wait this long for another prepare or snapshot run of the unit (then exit 3).",
                                                     default: "30")], positionals: [unit]),
            CommandSpec("drop-in", "Print the unit's drop-in as replica-generator writes it at boot and daemon-reload.",
                        options: [.profiles, .option("command", "path", "replica-shift as the unit runs it.", default: "/usr/bin/replica-shift")],
                        positionals: [unit]),
            CommandSpec("verify", "Compare what systemd applies to the loaded unit with its profile, property by property (prepare does it at every start).",
                        options: [.profiles], positionals: [unit]),
            CommandSpec("refuse", "Fail, saying why: what the drop-in of a unit whose profile does not parse runs instead of the service.",
                        options: [.profiles], positionals: [unit]),
            CommandSpec("rollback", "Put the (stopped) service's state back to a snapshot; the present state is kept as a new snapshot.",
                        options: [.profiles], positionals: [unit, PositionalSpec("snapshot", "Its name as replica-snap list UNIT prints it (web.20261122T042415Z).")]),
            CommandSpec("config", "List the config generations; with --file, write a new one and make it current.", options: [
                .profiles,
                .option("file", "target=source", "A file or directory tree of the new generation: its path in the service, and where to copy it from.", repeatable: true),
                .option("switch", "n", "Make generation N current."),
                .flag("rollback", "Make the generation before the current one current."),
            ], positionals: [unit]),
            CommandSpec("status", "Report where what the running service sees differs from the current config.",
                        options: [.profiles, .option("pid", "pid", "The service's main process (systemctl show -p MainPID UNIT).")], positionals: [unit]),
        ])

    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        // prepare's check of the starting unit, asked first: PID 1 answers while the profile is read.
        let asked = arguments.command == "prepare" ? ServicePlan.askStartingUnit(arguments.positionals[0]) : nil
        // The whole plan, checked as the generator checks it: a profile one accepts, the other accepts.
        let plan: ServicePlan
        do throws(ReplicaError) { plan = try arguments.servicePlan(arguments.positionals[0]) } catch where error.reason == .usage && arguments.command == "refuse" {
            // A profile that does not parse: the unit's drop-in runs `refuse`, which must fail whatever happens.
            throw ReplicaError("", errno: .EINVAL, hint: error.description, reason: .refused)
        }
        let settings = plan.profile
        func output(_ lines: [String], _ members: @autoclosure @escaping () -> [(String, JSON)], exitCode: Int32 = ExitCode.ok) -> ToolOutput {
            ToolOutput(lines: lines.map { "\(settings.unit): \($0)" }, [("unit", .string(settings.unit))] + members(), exitCode: exitCode)
        }
        switch arguments.command {
        case "prepare":
            try plan.checkStartingUnit(asked: asked)
            let steps = try ServiceShift.prepare(settings, wait: try arguments.seconds("wait") ?? .seconds(30))
            return output(steps, [("steps", .array(steps.map(JSON.string)))])
        case "drop-in":
            let dropIn = try plan.dropIn(shiftCommand: arguments.value("command")!)
            return ToolOutput(dropIn, [("unit", .string(settings.unit)), ("drop_in", .string(dropIn))])
        case "verify":
            let differences = try plan.appliedDifferences().differences
            let lines = differences.isEmpty ? ["systemd applies what the profile says"] : differences.map(\.description)
            return output(lines, [("differences", .array(differences.map { .object([("property", .string($0.name)),
                ("planned", .string($0.planned.description)), ("applied", .string($0.applied?.description ?? ""))]) }))],
                          exitCode: differences.isEmpty ? ExitCode.ok : ExitCode.failure)
        case "refuse":
            throw ReplicaError("", errno: .EINVAL, hint: "\(settings.unit): its profile parses now, but it did not when the drop-in was generated; "
                               + "run systemctl daemon-reload so replica-generator writes its sandbox, then start it", reason: .refused)
        case "rollback":
            let outcomes = try ServiceShift.rollback(settings, to: arguments.positionals[1])
            return output(outcomes.map { "\($0.subvolume) is now \($0.restored); the state before is kept as \($0.saved)" },
                          [("rolled_back", .array(outcomes.map { .object([("subvolume", .string($0.subvolume)), ("restored", .string($0.restored)),
                                                                          ("saved", .string($0.saved))]) }))])
        case "config":
            let config = settings.config
            let changed: Int?
            if !arguments.all("file").isEmpty {
                changed = try config.writeGeneration(copying: try arguments.all("file").map(ConfigStore.source(parsing:)))
                try config.switchTo(changed!)
            } else if let number = arguments.value("switch") {
                guard let generation = Int(number) else { throw .usage("--switch takes a generation number") }
                try config.switchTo(generation)
                changed = generation
            } else {
                changed = arguments.flag("rollback") ? try config.rollback() : nil
            }
            if let changed {
                return output(["config generation \(changed) is current; restart the service to use it"],
                              [("current", .int(Int64(changed))), ("changed", .bool(true))])
            }
            let current = try config.current()
            let generations = try config.listing()
            return ToolOutput(lines: generations.map { "\($0.number == current ? "*" : " ") \($0.number)  \(($0.trees.map { $0 + "/" } + $0.files).joined(separator: " "))" },
                              [("unit", .string(settings.unit)), ("current", current.map { .int(Int64($0)) } ?? .null), ("changed", .bool(false)),
                               ("generations", .array(generations.map(\.json)))])
        default:
            guard let pid = arguments.value("pid").flatMap({ Int32($0) }), pid > 0 else { throw .usage("status needs --pid PID") }
            let drift = try settings.config.drift(seenThrough: "/proc/\(pid)/root")
            let current = try settings.config.current()
            return output(drift.isEmpty ? ["the service sees config generation \(current.map(String.init) ?? "none")"] : drift.map { "\($0.path): \($0.reason)" },
                          [("current", current.map { .int(Int64($0)) } ?? .null), ("matches", .bool(drift.isEmpty)),
                           ("drift", .array(drift.map { .object([("path", .string($0.path)), ("reason", .string($0.reason))]) }))],
                          exitCode: drift.isEmpty ? ExitCode.ok : ExitCode.failure)
        }
    }
}
