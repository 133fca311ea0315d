// replica-run: runs a command in the sandbox a service profile describes, without systemd (Nomad
// raw_exec, scripts, tests): the same profile gives the command the same view as the unit.
import Glibc
import ReplicaKit
import ReplicaStore

let tool = ToolSpec(
    name: "replica-run",
    abstract: "Run a command in the sandbox a service profile describes.",
    discussion: """
        PROFILE is a service (web, web.service) whose profile in /etc/replica/services/ describes its
        [Sandbox], [State] and [Config]; run replica-shift prepare PROFILE first when it has state.
        Exit codes: the command's own; before it runs: 1 setup failed, 2 usage, 6 not configured.
        """,
    commands: [CommandSpec("", "Run a command in the sandbox a service profile describes.", options: [
        .option("profiles", "dir", "A profile directory, lowest priority first.", repeatable: true, hidden: true),
        .flag("print", "Print the plan as systemd directives instead of running anything."),
    ], positionals: [PositionalSpec("profile", "The service profile."),
                     PositionalSpec("command", "The command and its arguments, after --.", many: true, optional: true)])])

let arguments = tool.parseOrExit()
let directories = arguments.all("profiles")
let loader = directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
let name = arguments.positionals[0]
let settings: ServiceProfile
do {
    guard let loaded = try loader.loadService(name) else {
        printError("replica-run: \(name) is not configured: no profile at \(loader.searchedPaths(name).joined(separator: ", "))")
        exit(ExitCode.notConfigured)
    }
    settings = loaded
} catch {
    printError("replica-run: \(error)")
    exit(ExitCode.usage)
}
do {
    let plan = try settings.sandbox()
    if arguments.flag("print") {
        print(plan.systemdDirectives.joined(separator: "\n"))
        exit(ExitCode.ok)
    }
    let command = Array(arguments.positionals.dropFirst())
    guard !command.isEmpty else {
        printError("replica-run: no command; usage: replica-run PROFILE -- COMMAND [ARGS...]")
        exit(ExitCode.usage)
    }
    try SandboxMounter.exec(plan, command: command)
} catch {
    printError("replica-run: \(error)")
    exit(ExitCode.failure)
}
