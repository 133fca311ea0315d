import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// The conventions every tool shares, parsed as values (no processes).
@Suite struct CommandLineTests {
    static let tool = ToolSpec(name: "replica-demo", abstract: "A demo.", commands: [
        CommandSpec("prune", "Prune.", options: [.flag("dry-run", "Change nothing.", short: "n"), .option("wait", "seconds", "Wait.")],
                    positionals: [PositionalSpec("name", "Names.", many: true)]),
        CommandSpec("check", "Check.", positionals: [PositionalSpec("name", "Names.", many: true)], monitoring: true),
        CommandSpec("run", "Run.", positionals: [PositionalSpec("profile", "The profile."), PositionalSpec("command", "The command.", many: true)]),
    ])

    /// The text a command line asks to show (help, version), or nil.
    static func shown(_ arguments: [String]) -> String? {
        guard case .show(let text) = try? tool.parse(arguments) else { return nil }
        return text
    }

    /// The usage error of a command line, or nil.
    static func usageError(_ arguments: [String]) -> ReplicaError? {
        do { _ = try tool.parse(arguments); return nil } catch { return error }
    }

    @Test func versionAnywhere() {
        for arguments in [["--version"], ["prune", "--version"], ["prune", "web", "--version"]] {
            guard let text = Self.shown(arguments) else { Issue.record("\(arguments)"); continue }
            #expect(text == "replica-demo \(ReplicaVersion.string)")
        }
    }

    @Test func dashNIsDryRun() throws {
        #expect(try Self.tool.parse(["prune", "-n", "web"]).arguments?.flag("dry-run") == true)
        guard let help = Self.shown(["prune", "--help"]) else { Issue.record("no help"); return }
        #expect(help.contains("-n, --dry-run"))
    }

    @Test func aCheckSaysUnknownNotCriticalForAnyError() throws {
        let error = try #require(Self.usageError(["check", "--bogus", "web"]))
        #expect(error.reason == .usage)
        #expect(Self.tool.command(for: ["check"])!.exitCode(of: error) == 3, "Nagios reads 2 as CRITICAL")
        #expect(Self.tool.command(for: ["check"])!.exitCode(of: .notConfigured("no profile")) == 3)
        let other = try #require(Self.usageError(["prune", "--bogus", "web"]))
        #expect(Self.tool.command(for: ["prune"])!.exitCode(of: other) == 2)
    }

    /// One table for every tool: the code follows the reason, and what was written is a usage error.
    @Test func exitCodesFollowTheReason() {
        #expect(ExitCode.of(.usage("x")) == 2)
        #expect(ExitCode.of(.notConfigured("x")) == 6)
        #expect(ExitCode.of(ReplicaError("flock", ["web"], errno: .EWOULDBLOCK, reason: .lockHeld)) == 3)
        #expect(ExitCode.of(ReplicaError(file: "web.service.conf", line: 3, key: "Preserve", rule: "bad")) == 2)
        #expect(ExitCode.of(ReplicaError("mount", ["/a"], errno: .EPERM)) == 1)
        #expect(ExitCode.of(done: 2, failures: []) == 0)
        #expect(ExitCode.of(done: 1, failures: [.usage("x")]) == 10)
        #expect(ExitCode.of(done: 0, failures: [ReplicaError("flock", [], errno: .EWOULDBLOCK, reason: .lockHeld)]) == 3)
        #expect(ExitCode.of(done: 0, failures: [ReplicaError("flock", [], errno: .EWOULDBLOCK, reason: .lockHeld), .usage("x")]) == 1)
    }

    /// A message-only error reads as its message, nothing else.
    @Test func aUsageErrorReadsAsItsMessage() {
        #expect(ReplicaError.usage("--wait takes whole seconds").description == "--wait takes whole seconds")
    }

    @Test func aCommandsOwnFlagGetsTheFixNamed() {
        guard let message = Self.usageError(["run", "web", "ls", "-l"])?.description else { Issue.record("not a usage error"); return }
        #expect(message.contains("put -- before it: replica-demo run web -- ls -l"), "\(message)")
    }

    @Test func helpOfACommandIsThatCommandsHelp() {
        guard let text = Self.shown(["help", "prune"]) else { Issue.record("no help"); return }
        #expect(text.hasPrefix("Prune.") && text.contains("--wait"))
    }

    /// A command's text and its JSON are made only when asked for: `--json` prints no table, and a
    /// table costs as much as the listing it shows.
    @Test func anOutputIsMadeOnlyWhenPrinted() {
        final class Counts { var text = 0, json = 0 }
        let counts = Counts()
        func table() -> String { counts.text += 1; return "NAME\nweb" }
        func members() -> [(String, JSON)] { counts.json += 1; return [("name", .string("web"))] }
        let output = ToolOutput(table(), members())
        let lines = ToolOutput(lines: [table()], members())
        #expect(counts.text == 0 && counts.json == 0)
        #expect(output.text == "NAME\nweb" && lines.text == "NAME\nweb")
        #expect(counts.text == 2 && counts.json == 0)
        #expect(JSON.object(output.members()) == JSON.object([("name", .string("web"))]))
        #expect(counts.json == 1)
    }
}
