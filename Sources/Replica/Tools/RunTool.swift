import Glibc
import ReplicaKit

/// `replica-run`: runs a command in the sandbox a service profile describes, without systemd (Nomad
/// raw_exec, scripts, tests): the same plan gives the command the same view as the unit.
public enum RunTool: Tool {
    public static let spec = ToolSpec(
        name: "replica-run",
        abstract: "Run a command in the sandbox a service profile describes.",
        discussion: """
            PROFILE is a service (web, web.service) whose profile in /etc/replica/services/ describes its
            [Sandbox], [State], [Config] and [Network]. Without --standalone, replica-run becomes the
            command: run replica-shift prepare PROFILE (and replica-net up PROFILE) first. With it,
            replica-run does the whole job: prepare, network, the command, then the network down.
            Exit codes: the command's own (128 + N when signal N ended it); before it runs: 1 setup
            failed, 2 usage, 3 lock held, 6 not configured.
            """,
        commands: [CommandSpec("", "Run a command in the sandbox a service profile describes.", options: [
            .profiles, .flag("print", "Print the plan as systemd directives instead of running anything."),
            .flag("standalone", "Prepare the state and config and make the network first; take the network down after."),
        ], positionals: [PositionalSpec("profile", "The service profile."),
                         PositionalSpec("command", "The command and its arguments, after --.", many: true, optional: true)])])

    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        let plan = try arguments.servicePlan(arguments.positionals[0])
        let sandbox = try plan.profile.sandbox()
        if arguments.flag("print") {
            return ToolOutput(lines: sandbox.systemdDirectives, [("directives", .array(sandbox.systemdDirectives.map(JSON.string)))])
        }
        let command = Array(arguments.positionals.dropFirst())
        guard !command.isEmpty else { throw .usage("no command; usage: replica-run PROFILE -- COMMAND [ARGS...]") }
        if arguments.flag("standalone") {
            let ended = try ServiceRun.standalone(plan, command: command)
            return ToolOutput("", [("unit", .string(plan.profile.unit)), ("status", .string("\(ended)")), ("exit_code", .int(Int64(ended.shellCode)))],
                              exitCode: ended.shellCode)
        }
        try SandboxMounter.exec(sandbox, command: command)
    }
}
