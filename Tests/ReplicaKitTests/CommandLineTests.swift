import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// The conventions every tool shares, parsed as values (no processes).
@Suite struct CommandLineTests {
    static let tool = ToolSpec(name: "replica-demo", abstract: "A demo.", commands: [
        CommandSpec("prune", "Prune.", options: [.flag("dry-run", "Change nothing.", short: "n"), .option("wait", "seconds", "Wait.")],
                    positionals: [PositionalSpec("name", "Names.", many: true)]),
        CommandSpec("check", "Check.", positionals: [PositionalSpec("name", "Names.", many: true)], usageExitCode: 3),
        CommandSpec("run", "Run.", positionals: [PositionalSpec("profile", "The profile."), PositionalSpec("command", "The command.", many: true)]),
    ])

    static func outcome(_ arguments: [String]) -> ArgumentOutcome? {
        do { _ = try tool.parse(arguments); return nil } catch { return error }
    }

    @Test func versionAnywhere() {
        for arguments in [["--version"], ["prune", "--version"], ["prune", "web", "--version"]] {
            guard case .help(let text) = Self.outcome(arguments) else { Issue.record("\(arguments)"); continue }
            #expect(text == "replica-demo \(ReplicaVersion.string)")
        }
    }

    @Test func dashNIsDryRun() throws {
        #expect(try Self.tool.parse(["prune", "-n", "web"]).flag("dry-run"))
        guard case .help(let help) = Self.outcome(["prune", "--help"]) else { Issue.record("no help"); return }
        #expect(help.contains("-n, --dry-run"))
    }

    @Test func aCheckSaysUnknownNotCriticalForAUsageError() {
        guard case .usage(_, let code) = Self.outcome(["check", "--bogus", "web"]) else { Issue.record("not a usage error"); return }
        #expect(code == 3, "Nagios reads 2 as CRITICAL")
        guard case .usage(_, let other) = Self.outcome(["prune", "--bogus", "web"]) else { Issue.record("not a usage error"); return }
        #expect(other == 2)
    }

    @Test func aCommandsOwnFlagGetsTheFixNamed() {
        guard case .usage(let message, _) = Self.outcome(["run", "web", "ls", "-l"]) else { Issue.record("not a usage error"); return }
        #expect(message.contains("put -- before it: replica-demo run web -- ls -l"), "\(message)")
    }

    @Test func helpOfACommandIsThatCommandsHelp() {
        guard case .help(let text) = Self.outcome(["help", "prune"]) else { Issue.record("no help"); return }
        #expect(text.hasPrefix("Prune.") && text.contains("--wait"))
    }
}
