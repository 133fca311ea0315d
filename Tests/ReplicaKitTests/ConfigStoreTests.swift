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
            let error = #expect(throws: SystemError.self) { try store.rollback() }
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
            let error = #expect(throws: SystemError.self) {
                _ = try store.writeGeneration(copying: [(target: "/etc/app.conf", source: source)])
            }
            #expect(error != nil, "\(kind)")
            #expect(try store.generations().isEmpty)
        }
    }

    @Test func targetsThatCouldEscapeAreRefused() throws {
        try withTemporaryDirectory { dir in
            for target in ["etc/app.conf", "/etc/../shadow", "/"] {
                #expect(throws: SystemError.self) { _ = try ConfigStore(directory: dir).writeGeneration([target: [1]]) }
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
}
