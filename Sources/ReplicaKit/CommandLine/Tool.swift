import Glibc

/// A command-line tool: its command line, and what each command does. `main()` is the one harness
/// every tool runs — parse, run, print the text or the `--json` envelope, exit with the table's
/// code (`ExitCode`) — so the tools' `main.swift` are one line and behave alike.
public protocol Tool {
    /// The command line: name, commands, options.
    static var spec: ToolSpec { get }
    /// Runs one parsed command. A thrown error is printed after the tool's name (and, with `--json`,
    /// as the envelope's `error`) and exits with its code.
    static func run(_ command: ParsedArguments) throws(ReplicaError) -> ToolOutput
}

/// What a command did, for people (`text`) and for programs (the JSON envelope's `members`), and
/// the code it exits with.
public struct ToolOutput {
    /// Printed on standard output without `--json`; nothing when empty. Made only when printed, as
    /// `members` only for `--json` (a listing's table or JSON costs as much as the listing).
    public var text: String { render() }
    private let render: () -> String
    /// The JSON envelope's members after schema, tool, version and action; made only for `--json`
    /// (building JSON a command does not print would cost every start).
    public var members: () -> [(String, JSON)]
    /// Lines for standard error after the output (a failed object of several), each prefixed by the
    /// tool's name.
    public var warnings: [String]
    /// The exit code: 0, or a partial failure, a drift, a monitoring status.
    public var exitCode: Int32

    /// A command's result.
    public init(_ text: @autoclosure @escaping () -> String, _ members: @autoclosure @escaping () -> [(String, JSON)],
                warnings: [String] = [], exitCode: Int32 = ExitCode.ok) {
        (self.render, self.members, self.warnings, self.exitCode) = (text, members, warnings, exitCode)
    }

    /// Lines of text, one per step.
    public init(lines: @autoclosure @escaping () -> [String], _ members: @autoclosure @escaping () -> [(String, JSON)],
                warnings: [String] = [], exitCode: Int32 = ExitCode.ok) {
        self.init(lines().joined(separator: "\n"), members(), warnings: warnings, exitCode: exitCode)
    }
}

extension Tool {
    /// Parses this process's arguments, runs the command, prints and exits.
    public static func main() -> Never {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let command = spec.command(for: arguments)
        let request: CommandLineRequest
        do { request = try spec.parse(arguments) } catch {
            let code = command?.exitCode(of: error) ?? ExitCode.of(error)
            if arguments.contains("--json") || command?.alwaysJSON == true {
                JSONEnvelope.print(tool: spec.name, action: command.map { $0.name.isEmpty ? "run" : $0.name } ?? "", [("error", error.json(exitCode: code))])
            }
            printError("\(spec.name): \(error)")
            exit(code)
        }
        guard case .run(let parsed) = request else {
            if case .show(let text) = request { print(text) }
            exit(ExitCode.ok)
        }
        let asJSON = parsed.flag("json") || command?.alwaysJSON == true
        let action = parsed.command.isEmpty ? "run" : parsed.command  // a tool without subcommands
        let output: ToolOutput
        do { output = try run(parsed) } catch {
            let code = command?.exitCode(of: error) ?? ExitCode.of(error)
            if asJSON { JSONEnvelope.print(tool: spec.name, action: action, [("error", error.json(exitCode: code))]) }
            printError("\(spec.name): \(error)")
            exit(code)
        }
        if asJSON {
            JSONEnvelope.print(tool: spec.name, action: action, output.members())
        } else {
            let text = output.text
            if !text.isEmpty { print(text, terminator: text.hasSuffix("\n") ? "" : "\n") }
        }
        for warning in output.warnings { printError("\(spec.name): \(warning)") }
        exit(output.exitCode)
    }
}

extension ReplicaError {
    /// The envelope's `error`: the message, the reason, errno's name and the exit code.
    public func json(exitCode: Int32) -> JSON {
        .object([("message", .string(description)), ("reason", .string(reason.rawValue)), ("errno", .string(errno.name)),
                 ("exit_code", .int(Int64(exitCode)))])
    }
}
