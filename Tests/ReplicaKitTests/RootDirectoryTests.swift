import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// Safe in-root resolution: every case runs through openat2 and through the component walk, and
/// both must give the same answer.
@Suite struct RootDirectoryTests {
    static let methods: [ResolveMethod] = RootDirectory.hasOpenat2 ? [.openat2, .componentWalk] : [.componentWalk]

    /// `DIR/root` holds marker files; `DIR/etc/passwd` and `DIR/outside/x` sit just outside it, so an
    /// escape lands on a file whose content says "outside".
    static func withTree<T>(_ body: (String) throws -> T) throws -> T {
        try withTemporaryDirectory { dir in
            let root = "\(dir)/root"
            for d in ["", "/etc", "/dir", "/dir/sub", "/chain", "/loop"] { mkdir(root + d, 0o755) }
            mkdir("\(dir)/etc", 0o755)
            mkdir("\(dir)/outside", 0o755)
            try write("\(root)/etc/passwd", "inside")
            try write("\(root)/dir/sub/file", "sub-file")
            try write("\(dir)/etc/passwd", "outside")
            try write("\(dir)/outside/x", "outside")
            symlink("/etc", "\(root)/dir/link-abs")
            symlink("sub", "\(root)/dir/link-rel")
            symlink("../../../../../etc", "\(root)/dir/link-dotdot")
            symlink("\(dir)/outside", "\(root)/dir/host-abs")
            symlink("../../etc/passwd", "\(root)/dir/sub/up")
            // A chain of exactly 40 links resolves; a loop of 41 does not.
            for i in 0..<39 { symlink("l\(i + 1)", "\(root)/chain/l\(i)") }
            symlink("../etc/passwd", "\(root)/chain/l39")
            for i in 0..<41 { symlink("m\((i + 1) % 41)", "\(root)/loop/m\(i)") }
            mkfifo("\(root)/fifo", 0o600)
            return try body(dir)
        }
    }

    static func write(_ path: String, _ text: String) throws {
        let fd = try OwnedFD.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        try fd.writeAll(Array(text.utf8))
    }

    /// What resolving gives: the content of the file reached, or the errno.
    enum Outcome: Equatable { case content(String), kind(FileStatus.Kind), failed(Errno) }

    static func outcome(_ root: borrowing RootDirectory, _ path: String, _ method: ResolveMethod,
                        _ options: ResolveOptions = []) -> Outcome {
        do {
            let fd = try root.open(path, options, method: method)
            let status = try fd.status()
            guard status.kind == .regular else { return .kind(status.kind) }
            return .content(String(decoding: try fd.reopen(O_RDONLY).readAll(), as: UTF8.self))
        } catch {
            return .failed(error.errno)
        }
    }

    static let cases: [(String, Outcome)] = [
        ("etc/passwd", .content("inside")),
        ("../etc/passwd", .content("inside")),
        ("../../../../../../../etc/passwd", .content("inside")),
        ("/etc/passwd", .content("inside")),
        ("//etc/./passwd", .content("inside")),
        ("dir/link-abs/passwd", .content("inside")),
        ("dir/link-dotdot/passwd", .content("inside")),
        ("dir/link-rel/file", .content("sub-file")),
        ("dir/link-rel/../link-rel/file", .content("sub-file")),
        ("dir/sub/up", .content("inside")),
        ("dir/host-abs/x", .failed(.ENOENT)),
        ("chain/l0", .content("inside")),
        ("loop/m0", .failed(.ELOOP)),
        ("etc/passwd/x", .failed(.ENOTDIR)),
        ("missing", .failed(.ENOENT)),
        ("", .kind(.directory)),
        ("..", .kind(.directory)),
    ]

    @Test(arguments: methods)
    func neverLeavesTheRoot(method: ResolveMethod) throws {
        try Self.withTree { dir in
            let root = try RootDirectory("\(dir)/root")
            for (path, expected) in Self.cases {
                #expect(Self.outcome(root, path, method) == expected, "\(path) via \(method)")
            }
        }
    }

    @Test(.requiresOpenat2)
    func walkGivesTheSameAnswersAsOpenat2() throws {
        try Self.withTree { dir in
            let root = try RootDirectory("\(dir)/root")
            for (path, _) in Self.cases {
                for options in [ResolveOptions(), .noSymlinks, .noFollowLast, .directory] {
                    #expect(Self.outcome(root, path, .openat2, options) == Self.outcome(root, path, .componentWalk, options),
                            "\(path) with \(options.rawValue)")
                }
            }
        }
    }

    @Test(arguments: methods)
    func aLoopOf41LinksFailsWithAClearMessage(method: ResolveMethod) throws {
        try Self.withTree { dir in
            let root = try RootDirectory("\(dir)/root")
            let error = #expect(throws: ReplicaError.self) { _ = try root.open("loop/m0", method: method) }
            #expect(error?.errno == .ELOOP)
            #expect(error?.description.contains("loop/m0") == true)
            #expect(error?.description.contains("more than 40 symlinks") == true)
        }
    }

    @Test(arguments: methods)
    func refusesSymlinksWhenAsked(method: ResolveMethod) throws {
        try Self.withTree { dir in
            let root = try RootDirectory("\(dir)/root")
            #expect(Self.outcome(root, "dir/link-rel/file", method, .noSymlinks) == .failed(.ELOOP))
            #expect(Self.outcome(root, "dir/sub/file", method, .noSymlinks) == .content("sub-file"))
            #expect(Self.outcome(root, "dir/link-rel", method, .noFollowLast) == .kind(.symlink))
        }
    }

    @Test(arguments: methods)
    func aFIFOWhereAFileIsExpectedIsRefusedWithoutHanging(method: ResolveMethod) throws {
        try Self.withTree { dir in
            let root = try RootDirectory("\(dir)/root")
            // In a child with a deadline: a resolver that opened the FIFO for reading would block.
            let message = try ChildProcess.run(timeout: .seconds(10)) { () throws(ReplicaError) -> String in
                do throws(ReplicaError) {
                    _ = try root.openForReading("fifo", method: method)
                    return "opened"
                } catch { return error.description }
            }
            #expect(message.contains("EINVAL") && message.contains("is a FIFO"), "\(message)")
            #expect(Self.outcome(root, "fifo", method, .regularFile) == .failed(.EINVAL))
            #expect(Self.outcome(root, "fifo", method) == .kind(.fifo))
        }
    }

    @Test(arguments: methods)
    func magicLinksAreRefused(method: ResolveMethod) throws {
        let root = try RootDirectory("/")
        let open = try OwnedFD.open("/dev/null", O_RDONLY)
        for path in ["proc/self/fd/\(open.rawValue)", "proc/self/exe", "proc/self/root/etc", "proc/self/cwd",
                     "proc/thread-self/ns/net"] {
            #expect(Self.outcome(root, path, method) == .failed(.ELOOP), "\(path)")
        }
        // /proc/self itself is an ordinary link and is followed.
        #expect(try root.open("proc/self/status", .regularFile, method: method).status().kind == .regular)
    }

    @Test(arguments: methods)
    func checksTheTypeOfTheResult(method: ResolveMethod) throws {
        try Self.withTree { dir in
            let root = try RootDirectory("\(dir)/root")
            #expect(Self.outcome(root, "etc/passwd", method, .directory) == .failed(.ENOTDIR))
            #expect(Self.outcome(root, "etc", method, .regularFile) == .failed(.EISDIR))
            #expect(Self.outcome(root, "etc/passwd/", method) == .failed(.ENOTDIR))
        }
    }

    /// A thread swaps a directory on the path with a symlink to a directory outside the root using
    /// `renameat2(RENAME_EXCHANGE)` while resolution runs: nothing outside may ever be reached.
    @Test(arguments: methods, ["absolute", "relative"])
    func renameExchangeRaceNeverEscapes(method: ResolveMethod, linkKind: String) throws {
        try withTemporaryDirectory { dir in
            let rootPath = "\(dir)/root"
            mkdir(rootPath, 0o755)
            mkdir("\(rootPath)/a", 0o755)
            mkdir("\(dir)/outside", 0o755)
            try Self.write("\(rootPath)/a/x", "inside")
            try Self.write("\(dir)/outside/x", "outside")
            symlink(linkKind == "absolute" ? "\(dir)/outside" : "../../../outside", "\(rootPath)/swap")
            let outside = try FileStatus.of("\(dir)/outside/x")
            let root = try RootDirectory(rootPath)
            let (counts, swaps) = try whileRepeating({
                _ = replica_renameat2(AT_FDCWD, "\(rootPath)/a", AT_FDCWD, "\(rootPath)/swap", replica_RENAME_EXCHANGE)
            }) {
                var escapes = 0, inside = 0, refused = 0
                for _ in 0..<10_000 {
                    guard let fd = try? root.open("a/x", .regularFile, method: method) else { refused += 1; continue }
                    let status = try fd.status()
                    if status.inode == outside.inode && status.device == outside.device { escapes += 1 } else { inside += 1 }
                }
                return (escapes, inside, refused)
            }
            #expect(counts.0 == 0, "\(counts.0) of 10000 resolutions escaped")
            #expect(counts.1 > 0, "the race never let a resolution through; the test proved nothing")
            #expect(swaps > 100, "only \(swaps) swaps happened during the run")
        }
    }
}
