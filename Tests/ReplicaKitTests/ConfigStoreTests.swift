import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

@Suite struct ConfigStoreTests {
    static func text(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func read(_ path: String) throws -> String { String(decoding: try OwnedFD.open(path, O_RDONLY).readAll(), as: UTF8.self) }

    @Test func generationsAreWrittenWholeAndSwitchedInOneStep() throws {
        try withTemporaryDirectory { dir in
            let store = ConfigStore(directory: "\(dir)/web.service")
            #expect(try store.current() == nil)
            let first = try store.writeGeneration(["/etc/app/app.conf": Self.text("v1\n"), "/etc/app/extra.conf": Self.text("x\n")])
            let currentAfterWrite = try store.current()
            #expect(first == 1 && currentAfterWrite == nil, "writing does not switch")
            try store.switchTo(first)
            let second = try store.writeGeneration(["/etc/app/app.conf": Self.text("v2\n")])
            try store.switchTo(second)
            #expect(try store.current() == 2)
            #expect(try store.files(in: 1) == ["/etc/app/app.conf", "/etc/app/extra.conf"])
            #expect(try store.binds().map(\.target) == ["/etc/app/app.conf"])
            let binds = try store.binds()
            #expect(binds.allSatisfy { $0.readOnly && !$0.recursive })
            #expect(try Self.read(try store.binds()[0].source) == "v2\n")
            #expect(try store.rollback() == 1)
            #expect(try store.current() == 1)
            // No staging directory or temporary symlink is left.
            #expect(try DirectoryEntries.names(in: OwnedFD.open("\(dir)/web.service/generations", O_RDONLY)).sorted() == ["1", "2"])
            #expect(try DirectoryEntries.names(in: OwnedFD.open("\(dir)/web.service", O_RDONLY)).sorted() == ["current", "generations"])
        }
    }

    @Test func rollingBackPastTheFirstGenerationIsRefused() throws {
        try withTemporaryDirectory { dir in
            let store = ConfigStore(directory: dir)
            try store.switchTo(try store.writeGeneration(["/etc/a": Self.text("a")]))
            let error = #expect(throws: ReplicaError.self) { try store.rollback() }
            #expect(error?.hint == "no generation before the current one")
            #expect(try store.current() == 1)
        }
    }

    @Test(arguments: ["symlink", "hardlink", "fifo", "device", "symlinked-directory"])
    func badSourcesAreRefusedAndNoGenerationIsMade(kind: String) throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/src", 0o755)
            try OwnedFD.open("\(dir)/src/real.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Self.text("ok\n"))
            var source = "\(dir)/src/bad.conf"
            switch kind {
            case "symlink": symlink("/etc/shadow", source)
            case "hardlink": link("\(dir)/src/real.conf", source)
            case "fifo": mkfifo(source, 0o600)
            case "device": source = "/dev/null"
            default:
                symlink("\(dir)/src", "\(dir)/linked")
                source = "\(dir)/linked/real.conf"
            }
            let store = ConfigStore(directory: "\(dir)/store")
            let error = #expect(throws: ReplicaError.self) {
                _ = try store.writeGeneration(copying: [(target: "/etc/app.conf", source: source)])
            }
            #expect(error != nil, "\(kind)")
            #expect(try store.generations().isEmpty)
        }
    }

    @Test func targetsThatCouldEscapeAreRefused() throws {
        try withTemporaryDirectory { dir in
            for target in ["etc/app.conf", "/etc/../shadow", "/"] {
                #expect(throws: ReplicaError.self) { _ = try ConfigStore(directory: dir).writeGeneration([target: [1]]) }
            }
        }
    }

    /// A service started on generation 1 keeps seeing it after a switch to 2: drift says so.
    @Test(.requiresRoot)
    func driftShowsWhereARunningServiceLagsTheCurrentGeneration() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/etc", 0o755)
            try OwnedFD.open("\(dir)/etc/app.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Self.text("packaged\n"))
            let store = ConfigStore(directory: "\(dir)/config")
            let target = "\(dir)/etc/app.conf"
            try store.switchTo(try store.writeGeneration([target: Self.text("v1\n")]))
            mkdir("\(dir)/profiles", 0o755)
            let bind = try store.binds()[0]
            try OwnedFD.open("\(dir)/profiles/app.service.conf", O_WRONLY | O_CREAT, mode: 0o644)
                .writeAll(Self.text("[Sandbox]\nBindReadOnlyPaths=\(bind.source):\(bind.target):norbind\n"))
            let pid = try Command.spawn([try builtTool("replica-run"), "--profiles", "\(dir)/profiles", "app", "--", "sleep", "30"])
            defer { kill(pid, SIGKILL); _ = try? ExitStatus.wait(for: pid) }
            var seen = ""
            for _ in 0..<200 where seen != "v1\n" {
                seen = (try? Self.read("/proc/\(pid)/root\(target)")) ?? ""
                usleep(10_000)
            }
            #expect(seen == "v1\n", "the service sees generation 1")
            #expect(try store.drift(seenThrough: "/proc/\(pid)/root").isEmpty)
            try store.switchTo(try store.writeGeneration([target: Self.text("v2\n")]))
            let drift = try store.drift(seenThrough: "/proc/\(pid)/root")
            #expect(drift.map(\.path) == [target])
            #expect(drift.first?.reason == "differs from generation 2")
            #expect(try Self.read(target) == "packaged\n", "the host's file was never touched")
        }
    }

    /// A Debian-style nginx tree: `sites-enabled/default` linked relatively and absolutely.
    static func nginxTree(_ dir: String) throws -> String {
        let tree = "\(dir)/nginx"
        for d in ["", "/sites-available", "/sites-enabled", "/conf.d"] { mkdir(tree + d, 0o755) }
        try OwnedFD.open("\(tree)/nginx.conf", O_WRONLY | O_CREAT, mode: 0o640).writeAll(text("include sites-enabled/*;\n"))
        try OwnedFD.open("\(tree)/sites-available/default", O_WRONLY | O_CREAT, mode: 0o644).writeAll(text("server {}\n"))
        symlink("../sites-available/default", "\(tree)/sites-enabled/default")
        symlink("\(dir)/target/nginx/sites-available/default", "\(tree)/sites-enabled/absolute")
        return tree
    }

    /// Debian's PostgreSQL config is `postgres:postgres`, files 0640 in a 0755 tree: a generation
    /// keeps owner, group and bits, so the service can read its own config (root's 0640 locked it out).
    @Test(.requiresRoot) func aGenerationKeepsOwnerGroupAndMode() throws {
        try withTemporaryDirectory { dir in
            let tree = try Self.nginxTree(dir)
            for path in [tree, "\(tree)/nginx.conf", "\(tree)/conf.d"] { _ = chown(path, 65534, 65534) }
            chmod("\(tree)/conf.d", 0o750)
            try OwnedFD.open("\(dir)/app.conf", O_WRONLY | O_CREAT, mode: 0o600).writeAll(Self.text("one file\n"))
            _ = chown("\(dir)/app.conf", 65534, 0)
            let store = ConfigStore(directory: "\(dir)/store")
            let number = try store.writeGeneration(copying: [(target: "\(dir)/target/nginx", source: tree),
                                                             (target: "/etc/app.conf", source: "\(dir)/app.conf")])
            let base = "\(dir)/store/generations/\(number)"
            for (path, owner, group, mode) in [("\(dir)/target/nginx", 65534, 65534, 0o755), ("\(dir)/target/nginx/nginx.conf", 65534, 65534, 0o640),
                                               ("\(dir)/target/nginx/conf.d", 65534, 65534, 0o750),
                                               ("\(dir)/target/nginx/sites-available/default", 0, 0, 0o644), ("/etc/app.conf", 65534, 0, 0o600)] {
                let kept = try FileStatus.of(base + path)
                #expect(kept.owner == owner && kept.group == group && kept.mode & 0o777 == mode,
                        "\(path): \(kept.owner):\(kept.group) \(String(kept.mode & 0o777, radix: 8))")
            }
        }
    }

    @Test func aDirectoryIsKeptWholeWithTheSymlinksThatStayInside() throws {
        try withTemporaryDirectory { dir in
            let tree = try Self.nginxTree(dir)
            let target = "\(dir)/target/nginx"
            let store = ConfigStore(directory: "\(dir)/store")
            let number = try store.writeGeneration(copying: [(target: target, source: tree)])
            let base = "\(dir)/store/generations/\(number)"
            #expect(try store.trees(in: number) == [target])
            #expect(readSymlink("\(base)\(target)/sites-enabled/default") == "../sites-available/default")
            #expect(try Self.read("\(base)\(target)/sites-enabled/default") == "server {}\n", "the relative link resolves in the copy")
            #expect(try FileStatus.of("\(base)\(target)/nginx.conf").mode & 0o777 == 0o640, "permission bits kept")
            #expect(try FileStatus.of("\(base)\(target)/conf.d").kind == .directory, "empty directories kept")
            #expect(try store.binds(generation: number) == [Bind(base + target, to: target, readOnly: true, recursive: false)],
                    "one bind of the whole tree, not one per file")
            #expect(try store.files(in: number).map { String($0.dropFirst(target.count)) }
                    == ["/nginx.conf", "/sites-available/default", "/sites-enabled/absolute", "/sites-enabled/default"])
        }
    }

    @Test(arguments: [
        ("../../outside", "leaves the tree"), ("/etc/shadow", "leaves the tree"), ("../sites-available/../../x", "leaves the tree"),
        ("s/..", "leaves the tree"), ("/etc/nginx/../shadow", "leaves the tree"), ("fifo", "a FIFO"),
    ])
    func aTreeWithALinkThatLeavesItOrASpecialFileIsRefused(link: String, reason: String) throws {
        try withTemporaryDirectory { dir in
            let tree = try Self.nginxTree(dir)
            if link == "fifo" { mkfifo("\(tree)/conf.d/pipe", 0o600) } else { symlink(link, "\(tree)/sites-enabled/bad") }
            let store = ConfigStore(directory: "\(dir)/store")
            let error = #expect(throws: ReplicaError.self) { _ = try store.writeGeneration(copying: [(target: "/etc/nginx", source: tree)]) }
            #expect(error?.hint?.contains(reason) == true, "\(link): \(String(describing: error))")
            #expect(try store.generations().isEmpty, "nothing written")
        }
    }

    /// The tree bound over its directory: the service reads through its own symlinks.
    @Test(.requiresRoot)
    func theServiceReadsThroughTheTreesLinks() throws {
        try withTemporaryDirectory { dir in
            let tree = try Self.nginxTree(dir)
            let target = "\(dir)/target/nginx"
            let store = ConfigStore(directory: "\(dir)/store")
            try store.switchTo(try store.writeGeneration(copying: [(target: target, source: tree)]))
            var plan = SandboxPlan()
            plan.protectSystem = .no
            plan.binds = try store.binds()
            let seen = try ChildProcess.run(timeout: .seconds(30)) { () throws(ReplicaError) -> String in
                try SandboxMounter.enterPrivateMountNamespace()
                try SandboxMounter.apply(plan)
                let read = { (path: String) in (try? Self.read(path)) ?? "missing" }
                let writable = open("\(target)/new.conf", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) >= 0
                return [read("\(target)/sites-enabled/default"), read("\(target)/sites-enabled/absolute"), "writable=\(writable)"]
                    .joined(separator: "|")
            }
            #expect(seen == "server {}\n|server {}\n|writable=false")
            #expect(try store.drift(seenThrough: "/").count == 4, "the host has no such tree: every file and link differs")
        }
    }
}
