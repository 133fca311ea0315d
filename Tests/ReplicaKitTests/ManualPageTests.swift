import Glibc
@testable import ReplicaKit
import ReplicaTestSupport
import Testing

/// The manual pages (Docs/man/*.scd) and the tools' own help agree: every option a tool's help
/// shows is in its page, and every option its page names is one the tool takes. The bash
/// completion comes from the same spec as the parser.
@Suite struct ManualPageTests {
    static let tools = ["replica-snap", "replica-run", "replica-shift", "replica-store", "replica-net", "replica-volume", "replica-machine"]

    /// `--name` and `-x` words on the option lines of a help text (those indented under ARGUMENTS AND OPTIONS).
    private func options(inHelp help: String) -> Set<String> {
        var found: Set<String> = []
        var inOptions = false
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasSuffix("OPTIONS:") { inOptions = true; continue }
            if line.isEmpty { inOptions = false; continue }
            guard inOptions, line.hasPrefix("  -") else { continue }
            // The option column: its names and <value>, up to the description.
            for word in line.split(separator: " ") {
                if word.hasPrefix("<") { continue }
                guard word.hasPrefix("-") else { break }
                found.insert(String(word.hasSuffix(",") ? word.dropLast() : word))
            }
        }
        return found
    }

    /// Every `*--name*` or `*-x*` in a page's source (scdoc's bold); `*--*` alone is the end of options.
    private func options(inPage source: String) -> Set<String> {
        var found: Set<String> = []
        for piece in source.split(separator: "*").map(String.init) where piece.hasPrefix("-") && piece != "--" && !piece.contains(" ") {
            found.insert(piece)
        }
        return found
    }

    private func page(_ name: String) throws -> String {
        let fd = try OwnedFD.open("\(repositoryRoot)Docs/man/\(name).scd", O_RDONLY)
        return String(decoding: try fd.readAll(), as: UTF8.self)
    }

    private func help(_ tool: String, _ arguments: [String]) throws -> String {
        try Command.check([try builtTool(tool)] + arguments + ["--help"])
    }

    @Test(arguments: tools)
    func everyOptionInTheHelpIsInThePageAndTheOtherWayRound(tool: String) throws {
        let top = try help(tool, [])
        var commands: [String] = []
        let lines = top.split(separator: "\n", omittingEmptySubsequences: false)
        if let start = lines.firstIndex(of: "SUBCOMMANDS:") {
            for line in lines[(start + 1)...] {
                guard line.hasPrefix("  ") else { break }
                commands.append(String(line.split(separator: " ")[0]))
            }
        }
        var shown = options(inHelp: top)
        for command in commands { shown.formUnion(options(inHelp: try help(tool, [command]))) }
        #expect(shown.contains("--version") && shown.count > 2, "\(tool): help parsed: \(shown)")
        let documented = options(inPage: try page("\(tool).8"))
        #expect(shown.subtracting(documented).isEmpty, "\(tool): in the help but not in the page: \(shown.subtracting(documented).sorted())")
        #expect(documented.subtracting(shown).isEmpty, "\(tool): in the page but not taken: \(documented.subtracting(shown).sorted())")
        for command in commands {
            #expect(try page("\(tool).8").contains("*\(command)*"), "\(tool) \(command) has no entry in its page")
        }
    }

    @Test func theProfilePageDescribesEverySectionAndKey() throws {
        let source = try page("replica.profile.5")
        for (section, keys) in ProfileKeys.sections {
            #expect(source.contains("# [\(section)]"), "[\(section)] has no part of its own")
            for key in keys.keys { #expect(source.contains("*\(key)=*"), "[\(section)] \(key)= is not described") }
        }
    }

    /// What bash offers after `words` (the last one being completed), with the tool's generated script.
    private func completions(_ tool: String, _ words: [String]) throws -> [String] {
        let script = """
            source <("$1" --generate-completion-script bash); shift
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
            $(complete -p "${COMP_WORDS[0]}" | sed 's/.*-F \\([^ ]*\\).*/\\1/')
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        return try Command.check(["bash", "-c", script, "bash", try builtTool(tool)] + words).split(separator: "\n").map(String.init)
    }

    @Test func bashCompletesCommandsAndOptionsFromTheSameSpec() throws {
        #expect(try completions("replica-snap", ["replica-snap", "pr"]) == ["prune"])
        #expect(try completions("replica-snap", ["replica-snap", "prune", "--dry"]) == ["--dry-run"])
        #expect(try completions("replica-store", ["replica-store", "resize", "--mount"]) == ["--mount-point"])
        #expect(try completions("replica-run", ["replica-run", "--pri"]) == ["--print"])
        #expect(try completions("replica-snap", ["replica-snap", "check", "--warning", ""]).isEmpty)  // an age: no file names
    }

    @Test func everyToolHasAPage() throws {
        for tool in Self.tools + ["replica-generator"] { _ = try page("\(tool).8") }
    }
}
