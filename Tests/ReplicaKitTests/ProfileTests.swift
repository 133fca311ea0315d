import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

@Suite struct ProfileParserTests {
    @Test func readsSectionsKeysCommentsAndContinuations() throws {
        let settings = try ProfileParser.parse("""
            # a comment
            [Snapshots]
            Preserve = 24h 14d \\
                       8w
            ; another comment
            Latest=3

            [State]
            Path=/var/lib/web
            """, file: "web.conf")
        // As systemd joins them: the backslash becomes a space, the next line is appended as it is.
        #expect(settings.map { "\($0.section).\($0.key)=\($0.value)@\($0.line)" } == [
            "Snapshots.Preserve=24h 14d             8w@3", "Snapshots.Latest=3@6", "State.Path=/var/lib/web@9",
        ])
    }

    /// Values are trimmed of spaces and tabs around them (and of a command output's `\r\n`),
    /// byte by byte: what is inside, non-ASCII too, stays as written.
    @Test func valuesAreTrimmedOfWhiteSpaceOnly() throws {
        let settings = try ProfileParser.parse("[State]\nPath = \t/var/lib/caf\u{e9}\t \n", file: "web.conf")
        #expect(settings.map(\.value) == ["/var/lib/caf\u{e9}"])
        #expect(" \t\u{e9}t\u{e9} \r\n".trimmed == "\u{e9}t\u{e9}" && " \t\r\n".trimmed == "" && "a b".trimmed == "a b")
    }

    /// The package's `joined(separator:)` for arrays of strings gives what the standard library's
    /// (still used for a slice) gives.
    @Test func joiningArraysOfStringsIsTheStandardLibrarys() {
        for strings in [[], [""], ["a"], ["", ""], ["a", "", "b"], ["caf\u{e9}", "\u{1F600}", "x y"]] as [[String]] {
            for separator in ["", "/", ", "] {
                #expect(strings.joined(separator: separator) == strings[...].joined(separator: separator), "\(strings) with \"\(separator)\"")
            }
        }
    }

    @Test(arguments: [
        ("Key=Value", 1, "Key", "appears before any [Section]"),
        ("[State]\nno equals sign", 2, nil, "expected Key=Value or [Section]"),
        ("[State]\n[broken", 2, nil, "a section header is [Name]"),
        ("[State]\nbad key=1", 2, "bad key", "a key is letters, digits, - and _"),
    ] as [(String, Int, String?, String)])
    func errorsNameFileLineAndKey(text: String, line: Int, key: String?, reason: String) {
        let error = #expect(throws: ProfileError.self) { _ = try ProfileParser.parse(text, file: "/etc/replica/services/x.conf") }
        #expect(error == ProfileError(file: "/etc/replica/services/x.conf", line: line, key: key, reason: reason))
    }
}

@Suite struct ProfileLoaderTests {
    static func write(_ path: String, _ text: String) throws {
        _ = try? createDirectories(String(path[..<path.lastIndex(of: "/")!]))
        try OwnedFD.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(text.utf8))
    }

    @Test func mergesLikeSystemd() throws {
        try withTemporaryDirectory { dir in
            let lib = "\(dir)/usr/lib", run = "\(dir)/run", etc = "\(dir)/etc"
            let loader = ProfileLoader(directories: [lib, run, etc])
            // The main file from the highest-priority directory replaces lower ones whole.
            try Self.write("\(lib)/web.service.conf", "[Snapshots]\nPreserve=1d\nLatest=9\n")
            try Self.write("\(etc)/web.service.conf", "[Snapshots]\nPreserve=24h\n[Sandbox]\nInaccessiblePaths=/a\n")
            // Drop-ins from every directory, in file-name order; a same-named one higher up masks.
            try Self.write("\(lib)/web.service.conf.d/10-base.conf", "[Sandbox]\nInaccessiblePaths=/b\n")
            try Self.write("\(run)/web.service.conf.d/20-reset.conf", "[Sandbox]\nInaccessiblePaths=\nInaccessiblePaths=/c\n")
            try Self.write("\(lib)/web.service.conf.d/30-masked.conf", "[Sandbox]\nInaccessiblePaths=/masked\n")
            try Self.write("\(etc)/web.service.conf.d/30-masked.conf", "[Sandbox]\nInaccessiblePaths=/d\n")
            try Self.write("\(etc)/web.service.conf.d/ignored.txt", "[Sandbox]\nInaccessiblePaths=/never\n")
            let profile = try #require(try loader.load("web"))
            #expect(profile.unit == "web.service")
            #expect(profile.files == ["\(etc)/web.service.conf", "\(lib)/web.service.conf.d/10-base.conf",
                                      "\(run)/web.service.conf.d/20-reset.conf", "\(etc)/web.service.conf.d/30-masked.conf"])
            #expect(profile.value("Snapshots", "Preserve")?.value == "24h")
            #expect(profile.value("Snapshots", "Latest") == nil, "the lower main file is replaced, not merged")
            #expect(profile.list("Sandbox", "InaccessiblePaths").map(\.value) == ["/c", "/d"], "an empty assignment resets the list")
        }
    }

    @Test func aMissingProfileIsNil() throws {
        try withTemporaryDirectory { dir in
            let profile = try ProfileLoader(directories: [dir]).load("nothing.service")
            #expect(profile == nil)
        }
    }

    @Test func aProfileThatIsNotARegularFileIsRefused() throws {
        try withTemporaryDirectory { dir in
            mkfifo("\(dir)/web.service.conf", 0o600)
            let error = #expect(throws: ProfileError.self) { _ = try ProfileLoader(directories: [dir]).load("web") }
            #expect(error?.rule.contains("a profile must be a regular file") == true, "\(String(describing: error))")
        }
    }

    @Test func unitNamesCannotLeaveTheDirectory() {
        #expect(throws: ProfileError.self) { _ = try ProfileLoader(directories: ["/tmp"]).load("../etc/passwd") }
    }
}
