import Glibc

/// A tool's command line, declared as values: subcommands, `--option VALUE` / `--option=VALUE`,
/// `--flag` (`-n` for `--dry-run`), positionals, `--` ending options, and `--help` / `-h` and
/// `--version` anywhere. Replica's tools parse
/// with this instead of swift-argument-parser, whose reflection-based setup costs milliseconds at
/// every start: `replica-snap` runs from timers and `replica-run` in front of every command.
public struct ToolSpec: Sendable {
    /// The program's name, as the help prints it (`replica-snap`).
    public var name: String
    /// One line: what the tool does.
    public var abstract: String
    /// Printed after the commands in the help: exit codes, where things are looked up.
    public var discussion: String
    /// The subcommands; one with an empty name for a tool without subcommands.
    public var commands: [CommandSpec]

    /// A tool with these commands.
    public init(name: String, abstract: String, discussion: String = "", commands: [CommandSpec]) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.commands = commands
    }
}

/// One subcommand (or, with an empty name, the whole tool).
public struct CommandSpec: Sendable {
    /// The subcommand's word (`create`); empty for the whole tool.
    public var name: String
    /// One line: what the command does.
    public var abstract: String
    /// Its options, in the order the help lists them.
    public var options: [OptionSpec]
    /// Its positional arguments, in order.
    public var positionals: [PositionalSpec]
    /// A monitoring check: every error, usage included, exits 3 (Nagios reads 2 as CRITICAL and 3
    /// as UNKNOWN: it could not judge).
    public var monitoring: Bool
    /// It always answers in JSON (the remote end of a protocol), `--json` or not.
    public var alwaysJSON: Bool

    /// A command with these options and positionals; every command takes `--json` too.
    public init(_ name: String, _ abstract: String, options: [OptionSpec] = [], positionals: [PositionalSpec] = [],
                monitoring: Bool = false, alwaysJSON: Bool = false) {
        self.name = name
        self.abstract = abstract
        self.options = options.contains { $0.name == "json" } ? options : options + [.json]
        self.positionals = positionals
        self.monitoring = monitoring
        self.alwaysJSON = alwaysJSON
    }

    /// The exit code of `error` for this command: the table's (`ExitCode.of`), or 3 (UNKNOWN) for
    /// a monitoring check.
    public func exitCode(of error: ReplicaError) -> Int32 {
        monitoring ? ExitCode.unknown : ExitCode.of(error)
    }
}

/// `--name VALUE` (or a `--name` flag when `value` is nil).
public struct OptionSpec: Sendable {
    /// The long name, without the dashes (`dry-run`).
    public var name: String
    /// The value's placeholder in the help (`path`); nil for a flag.
    public var value: String?
    /// One line for the help.
    public var help: String
    /// The value when the option is not given.
    public var defaultValue: String?
    /// Whether it may be given more than once (all values are kept).
    public var repeatable: Bool
    /// Left out of the help and the completion: for tests and internal use.
    public var hidden: Bool
    /// A one-letter form (`-n`), for flags.
    public var short: Character? = nil

    /// An option taking a value, `--NAME VALUE` or `--NAME=VALUE`.
    public static func option(_ name: String, _ value: String, _ help: String, default defaultValue: String? = nil,
                              repeatable: Bool = false, hidden: Bool = false) -> OptionSpec {
        OptionSpec(name: name, value: value, help: help, defaultValue: defaultValue, repeatable: repeatable, hidden: hidden)
    }

    /// A flag without a value, with an optional one-letter form (`-n`).
    public static func flag(_ name: String, _ help: String, short: Character? = nil) -> OptionSpec {
        OptionSpec(name: name, value: nil, help: help, defaultValue: nil, repeatable: false, hidden: false, short: short)
    }

    /// `--json`: one JSON object in the `replica.v1` envelope (`JSONEnvelope`), the same flag in every tool.
    public static let json = flag("json", "Print one JSON object (schema replica.v1).")
}

/// A positional argument; `many` takes one or more (or zero when `optional`).
public struct PositionalSpec: Sendable {
    /// Its name in the help (`<name>`).
    public var name: String
    /// One line for the help.
    public var help: String
    /// Whether it takes every remaining argument.
    public var many: Bool
    /// Whether it may be left out.
    public var optional: Bool

    /// A positional argument.
    public init(_ name: String, _ help: String, many: Bool = false, optional: Bool = false) {
        self.name = name
        self.help = help
        self.many = many
        self.optional = optional
    }
}

/// What was given.
public struct ParsedArguments: Sendable {
    /// The subcommand given (empty for a tool without subcommands).
    public var command: String
    /// Each option's values, by long name, defaults included.
    public var values: [String: [String]] = [:]
    /// The flags given, by long name.
    public var flags: Set<String> = []
    /// The positional arguments, in order (after `--`, everything).
    public var positionals: [String] = []

    /// The last value of an option, else its default.
    public func value(_ name: String) -> String? { values[name]?.last }
    /// Every value given for a repeatable option.
    public func all(_ name: String) -> [String] { values[name] ?? [] }
    /// Whether a flag was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }
}

/// What a command line asks for: a command to run, or text to print and exit 0 (`--help`,
/// `--version`, the completion script).
public enum CommandLineRequest: Sendable {
    /// Run this command.
    case run(ParsedArguments)
    /// Print this and exit 0.
    case show(String)

    /// The command to run; nil for a request to print.
    public var arguments: ParsedArguments? {
        if case .run(let parsed) = self { return parsed }
        return nil
    }
}

extension ToolSpec {
    /// The command a command line names (its first word), when it is one of this tool's.
    public func command(for arguments: [String]) -> CommandSpec? {
        commands.count == 1 && commands[0].name.isEmpty ? commands[0] : commands.first { $0.name == arguments.first }
    }

    /// Parses `arguments` (without the program name); a usage error is a `ReplicaError` with reason
    /// `usage` whose message says what to write instead.
    public func parse(_ arguments: [String]) throws(ReplicaError) -> CommandLineRequest {
        if arguments == ["--generate-completion-script", "bash"] { return .show(bashCompletion()) }
        var rest = arguments[...]
        let command: CommandSpec
        if commands.count == 1 && commands[0].name.isEmpty {
            command = commands[0]
        } else {
            guard let first = rest.first else { throw .usage("missing a subcommand\n\n\(help())") }
            if first == "--version" { return .show("\(name) \(ReplicaVersion.string)") }
            if first == "--help" || first == "-h" { return .show(help()) }
            if first == "help" {
                // help COMMAND: that command's help.
                if let name = rest.dropFirst().first, let command = commands.first(where: { $0.name == name }) { return .show(help(for: command)) }
                return .show(help())
            }
            guard let found = commands.first(where: { $0.name == first }) else {
                throw .usage("unknown subcommand \"\(first)\"; one of: \(commands.map(\.name).joined(separator: ", "))")
            }
            command = found
            rest = rest.dropFirst()
        }
        return try parse(rest, command)
    }

    private func parse(_ arguments: ArraySlice<String>, _ command: CommandSpec) throws(ReplicaError) -> CommandLineRequest {
        var rest = arguments
        var parsed = ParsedArguments(command: command.name)
        for option in command.options { if let d = option.defaultValue { parsed.values[option.name] = [d] } }
        var given: Set<String> = []
        var onlyPositionals = false
        while let argument = rest.popFirst() {
            if onlyPositionals || !argument.hasPrefix("-") || argument == "-" {
                parsed.positionals.append(argument)
                continue
            }
            if argument == "--" { onlyPositionals = true; continue }
            if argument == "--help" || argument == "-h" { return .show(help(for: command)) }
            if argument == "--version" { return .show("\(name) \(ReplicaVersion.string)") }
            let (name, inline) = Self.split(argument)
            let short = name.count == 2 && !name.hasPrefix("--") ? name.last : nil
            guard let option = command.options.first(where: { "--\($0.name)" == name || (short != nil && $0.short == short) }) else {
                // A command of the tool's own (replica-run PROFILE ls -l): its flags go after --.
                if let index = command.positionals.lastIndex(where: \.many), parsed.positionals.count > index {
                    let words = [self.name, command.name].filter { !$0.isEmpty } + parsed.positionals.prefix(index) + ["--"]
                        + parsed.positionals.dropFirst(index) + [argument, "…"]
                    throw .usage("unknown option \(name); to give it to the <\(command.positionals[index].name)>, put -- before it: "
                                 + words.joined(separator: " "))
                }
                throw .usage("unknown option \(name); see \(self.name) \(command.name) --help")
            }
            guard option.value != nil else {
                if inline != nil { throw .usage("--\(option.name) takes no value") }
                parsed.flags.insert(option.name)
                continue
            }
            guard let value = inline ?? rest.popFirst() else { throw .usage("--\(option.name) needs a value") }
            if given.contains(option.name) && !option.repeatable { throw .usage("--\(option.name) is given twice") }
            parsed.values[option.name] = (given.contains(option.name) ? parsed.values[option.name] ?? [] : []) + [value]
            given.insert(option.name)
        }
        try checkPositionals(parsed.positionals, command)
        return .run(parsed)
    }

    private static func split(_ argument: String) -> (String, String?) {
        guard let equals = argument.firstIndex(of: "=") else { return (argument, nil) }
        return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
    }

    private func checkPositionals(_ values: [String], _ command: CommandSpec) throws(ReplicaError) {
        let required = command.positionals.filter { !$0.optional }
        let takesMany = command.positionals.contains { $0.many }
        if values.count < required.count {
            throw .usage("missing <\(required[values.count].name)>; see \(name) \(command.name) --help")
        }
        if !takesMany && values.count > command.positionals.count {
            throw .usage("unexpected argument \"\(values[command.positionals.count])\"")
        }
    }

    /// The tool's help: abstract, usage, subcommands, discussion.
    public func help() -> String {
        var text = "\(abstract)\n\nUSAGE: \(name) <subcommand>\n\nSUBCOMMANDS:\n"
        let width = (commands.map(\.name.count).max() ?? 0) + 2
        for command in commands { text += "  \(command.name.padded(width))\(command.abstract)\n" }
        if !discussion.isEmpty { text += "\n\(discussion)\n" }
        return text + "\nSee '\(name) <subcommand> --help' for each one's options."
    }

    /// One subcommand's help: usage line, arguments and options with their defaults.
    public func help(for command: CommandSpec) -> String {
        let visible = command.options.filter { !$0.hidden }
        let positionals = command.positionals.map { p in p.optional ? "[<\(p.name)>\(p.many ? " ..." : "")]" : "<\(p.name)>\(p.many ? " ..." : "")" }
        var text = "\(command.abstract)\n\nUSAGE: \([name, command.name].filter { !$0.isEmpty }.joined(separator: " ")) [options] "
            + positionals.joined(separator: " ") + "\n"
        let rows: [(String, String)] = command.positionals.map { ("<\($0.name)>", $0.help) }
            + visible.map { o in
                ((o.short.map { "-\($0), " } ?? "") + "--\(o.name)" + (o.value.map { " <\($0)>" } ?? ""), o.help + (o.defaultValue.map { $0.isEmpty ? "" : " (default: \($0))" } ?? ""))
            } + [("-h, --help", "Show this help."), ("--version", "Print the version.")]
        let width = (rows.map(\.0.count).max() ?? 0) + 2
        text += "\nARGUMENTS AND OPTIONS:\n" + rows.map { "  \($0.0.padded(width))\($0.1)" }.joined(separator: "\n")
        if !discussion.isEmpty { text += "\n\n\(discussion)" }
        return text
    }
}

extension String {
    func padded(_ width: Int) -> String { self + String(repeating: " ", count: max(1, width - count)) }
}
