import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// The profile grammar and the typed profile, as an operator (or the confined service writing its
/// own config sources) could get them wrong. Each case here was accepted before.
@Suite struct ProfileGrammarTests {
    static func parse(_ text: String) throws(ProfileError) -> [ProfileSetting] { try ProfileParser.parse(text, file: "web.conf") }
    static func profile(_ text: String, unit: String = "web.service") throws(ProfileError) -> ServiceProfile {
        try ServiceProfile(Profile(unit: unit, files: ["web.conf"], settings: try parse(text)))
    }
    static func reason(_ text: String) -> String {
        do { _ = try profile(text); return "accepted" } catch { return error.description }
    }

    /// A machine's root is its own unit's: another service's profile naming it would have
    /// `replica-snap run` prune that machine's snapshots.
    @Test func aMachinesRootIsItsOwnUnitsAlone() throws {
        #expect(Self.reason("[Snapshots]\nSubvolume=replica-machine@web1\n").contains("machine web1's root, kept for replica-machine@web1.service"))
        #expect(Self.reason("[State]\nPath=/srv/a /srv/b\n[Snapshots]\nSubvolume=replica-machine@web1\n").contains("machine web1's root"))
        let own = try Self.profile("[Snapshots]\nPreserve=1d\n", unit: "replica-machine@web1.service")
        #expect(own.subvolume == "replica-machine@web1", "the control: the machine's own unit names it")
    }

    @Test(arguments: [
        ("[Stat]\nPath=/var/lib/web\n", "web.conf:1: unknown section [Stat]; did you mean [State]?"),
        ("[Snapshots]\nPreserv=1d\n", "web.conf:2: Preserv=: unknown key in [Snapshots]; did you mean Preserve=?"),
        ("[State]\nPreserve=1d\n", "web.conf:2: Preserve=: unknown key in [State]; Preserve= belongs in [Replication] or [Snapshots]"),
        ("[Snapshots]\nSubvolume=web   # default\n", "a comment must be on a line of its own"),
        ("[State]\nPath=/var/lib/web ../../etc\n", "web.conf:2: Path=: \"../../etc\" is not an absolute path"),
        ("[State]\nPath=/var/lib/../../etc\n", "has a . or .. component"),
        ("[State]\nPath=/var/lib/a\rExecStartPre=+/bin/sh\n", "web.conf:2: a carriage return (CR)"),
        ("[State]\nPath=/var/lib/a\u{0}x\n", "web.conf:2: a NUL byte"),
        ("[State]\nPath=/var/lib/a\u{1b}x\n", "control character 0x1b"),
        ("[State]\nPath=/var/lib/a\u{85}x\n", "web.conf:2: control character U+85"),
        ("[State]\nPath=/var/lib/a\u{2028}x\n", "web.conf:2: control character U+2028"),
        ("[Sandbox]\nInaccessiblePaths=\"/a\\u2029\"\n", "decodes to a control character"),
        ("[Sandbox]\nInaccessiblePaths=\"/a\\nExecStartPre=/x\"\n", "decodes to a control character"),
        ("[Sandbox]\nPrivateTmp=maybe\n", "takes yes or no"),
        ("[Sandbox]\nProtectSystem=full-ish\n", "takes one of strict, full"),
    ])
    func refusedWithFileLineKeyAndRule(text: String, expected: String) {
        let got = Self.reason(text)
        #expect(got.contains(expected), "\(got)")
    }

    @Test func invalidUTF8IsRefusedNotReplaced() {
        let bytes = Array("[State]\nPath=/var/lib/".utf8) + [0xFF, 0xFE] + Array("\n".utf8)
        let error = #expect(throws: ProfileError.self) { _ = try ProfileParser.parse(bytes, file: "web.conf") }
        #expect(error?.location?.line == 2 && error?.rule.contains("not valid UTF-8") == true)
    }

    @Test func commentsOnlyAtLineStartAndContinuationsAsSystemd() throws {
        let settings = try Self.parse("""
            \u{FEFF}# comment
              ; indented comment
            [Sandbox]
            InaccessiblePaths=/a \\
            # a comment inside a continuation is skipped
              /b
            TemporaryFileSystem=/run/x:mode=0755 \\\\
            """)
        #expect(settings.map(\.value) == ["/a    /b", "/run/x:mode=0755 \\\\"])
    }

    @Test func wordsFollowSystemdQuotingAndEscapes() throws {
        let setting = ProfileSetting(section: "Sandbox", key: "InaccessiblePaths", value: #""/a b" '/c d' /e\x41 /f\sg"#, file: "f", line: 1)
        #expect(try ProfileWords.split(setting) == ["/a b", "/c d", "/eA", "/f g"])
        for word in ["plain", "with space", "quote\"d", "back\\slash", "it's", ""] {
            let quoted = ProfileSetting(section: "S", key: "K", value: ProfileWords.quote(word), file: "f", line: 1)
            #expect(try ProfileWords.split(quoted) == [word])
        }
    }

    @Test func unitNamesThatCouldReachAPathOrADropInAreRefused() {
        for name in ["web\n.service", "../etc/passwd", ".hidden.service", "a b.service", "web/x.service", String(repeating: "a", count: 300)] {
            #expect(throws: ProfileError.self, "\(name)") { try ProfileLoader.unit(name) }
        }
        #expect(throws: Never.self) { try ProfileLoader.unit("getty@tty1.service") }
    }

    @Test func renderThenParseGivesTheSameSettings() throws {
        let settings = try Self.parse("""
            [State]
            Path=/var/lib/web \\
              /var/cache/web
            [Sandbox]
            BindPaths="/srv/a b:/x" -/y
            [Snapshots]
            Preserve=24h 14d
            """)
        let again = try ProfileParser.parse(ProfileParser.render(settings), file: "web.conf")
        #expect(again.map { [$0.section, $0.key, $0.value] } == settings.map { [$0.section, $0.key, $0.value] })
    }
}

@Suite struct StatePathTests {
    static func reason(_ text: String, unit: String = "web.service") -> String {
        ProfileGrammarTests.reason(text)
    }

    @Test(arguments: [
        ("/", "is a system directory"), ("/var/lib", "is a system directory"), ("/etc", "is a system directory"),
        ("/proc/1", "is in /proc, a kernel filesystem"), ("/sys/fs", "is in /sys"), ("/dev/shm/x", "is in /dev"),
        ("/run/replica/store", "overlaps the store"), ("/run/replica/store/web", "overlaps the store"),
        ("/run/replica", "overlaps the store"), ("/var/lib/replica/config/web.service/x", "overlaps the config directory"),
        ("/var/lib/my:app", "the character \":\" is not allowed"), ("/var/lib/100%", "the character \"%\""),
    ])
    func pathsTheStoreCannotTakeAreRefused(path: String, expected: String) {
        let got = Self.reason("[State]\nPath=\(path)\n")
        #expect(got.contains(expected), "\(got)")
    }

    @Test func twoPathsOfOneSubvolumeOrNestedAreRefused() {
        #expect(Self.reason("[State]\nPath=/var/lib/web /var/lib//web/\n").contains("would map to one subvolume"))
        #expect(Self.reason("[State]\nPath=/var/lib/web\nPath=/var/lib/web/cache\n").contains("nest one in the other"))
    }

    @Test func namesAreCollisionFreeAndNeverReserved() throws {
        // One state directory: the service's name. Several: NAME+escaped path, as systemd-escape.
        #expect(try ProfileGrammarTests.profile("[State]\nPath=/var/lib/web\n").state.map(\.subvolume) == ["web"])
        let two = try ProfileGrammarTests.profile("[State]\nPath=/var/lib/web /var/lib/data\n")
        #expect(two.state.map(\.subvolume) == ["web+var-lib-web", "web+var-lib-data"])
        let other = try ProfileGrammarTests.profile("[State]\nPath=/var/lib/x\n", unit: "web-data.service")
        #expect(other.state.map(\.subvolume) == ["web-data"], "no longer the same name as web's /…/data")
        #expect(SystemdEscape.path("/var/lib/my-app/.x") == "var-lib-my\\x2dapp-.x")
        #expect(SystemdEscape.path("/.hidden") == "\\x2ehidden")
        for reserved in [".migrating-other", "snapshots", "machines", "templates", "nomad", "other.lock", "a+b", "a/b", "../etc"] {
            #expect(Self.reason("[Snapshots]\nSubvolume=\(reserved)\n").contains("Subvolume="), "\(reserved)")
        }
    }
}

/// Operators copy the examples in Docs/: every `ini` block there must parse as a profile (or, for a
/// block starting with `[Set]`, as a service-set file).
@Suite struct DocumentedProfileTests {
    @Test func everyIniExampleInTheDocsParses() throws {
        let docs = RepositoryPath.root + "/Docs"
        var blocks = 0
        for name in try DirectoryEntries.names(in: OwnedFD.open(docs, O_RDONLY | O_DIRECTORY)).sorted() where name.hasSuffix(".md") {
            let text = String(decoding: try OwnedFD.open("\(docs)/\(name)", O_RDONLY).readAll(), as: UTF8.self)
            var block: [Substring]?
            var start = 0
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if line == "```ini" { block = []; start = number + 2; continue }
                guard block != nil else { continue }
                if line == "```" {
                    blocks += 1
                    let body = block!.joined(separator: "\n")
                    let grammar = body.hasPrefix("[Set]") ? ProfileKeys.setSections : ProfileKeys.sections
                    #expect(throws: Never.self, "Docs/\(name):\(start)") {
                        _ = try ProfileParser.parse(body, file: "Docs/\(name):\(start)", grammar: grammar)
                    }
                    block = nil
                } else {
                    block!.append(line)
                }
            }
        }
        #expect(blocks >= 4)
    }
}

/// The repository's top folder, from this file's path.
enum RepositoryPath {
    static let root: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/ReplicaKitTests/ServiceProfileTests.swift
        return parts.joined(separator: "/")
    }()
}
