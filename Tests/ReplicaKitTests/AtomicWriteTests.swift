import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

@Suite struct AtomicWriteTests {
    static func read(_ path: String) throws -> String {
        String(decoding: try OwnedFD.open(path, O_RDONLY).readAll(), as: UTF8.self)
    }

    static func entries(_ dir: String) throws -> [String] {
        try DirectoryEntries.names(in: try OwnedFD.open(dir, O_RDONLY | O_DIRECTORY)).sorted()
    }

    /// Synced, the new file is renamed over the old one; not synced, swapped with it and the old one
    /// unlinked. Either way one file is left, the new one, and a reader that had the old one open
    /// still reads it whole.
    @Test(arguments: [true, false]) func writesAndReplacesWithoutLeavingTemporaries(sync: Bool) throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/etc", 0o755)
            let root = try RootDirectory(dir)
            try root.writeFileAtomically("etc/app.conf", contents: Array("one\n".utf8), sync: sync)
            let reader = try OwnedFD.open("\(dir)/etc/app.conf", O_RDONLY)
            try root.writeFileAtomically("/etc/app.conf", contents: Array("two\n".utf8), mode: 0o600, sync: sync)
            #expect(try Self.read("\(dir)/etc/app.conf") == "two\n")
            #expect(try FileStatus.of("\(dir)/etc/app.conf").mode & 0o777 == 0o600)
            #expect(try Self.entries("\(dir)/etc") == ["app.conf"])
            #expect(String(decoding: try reader.readAll(), as: UTF8.self) == "one\n")
        }
    }

    /// A symlink where the file goes is replaced, never followed, with or without the swap.
    @Test(arguments: [true, false]) func aSymlinkTargetIsReplacedNotFollowed(sync: Bool) throws {
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/elsewhere", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("keep\n".utf8))
            symlink("\(dir)/elsewhere", "\(dir)/app.conf")
            try RootDirectory(dir).writeFileAtomically("app.conf", contents: Array("new\n".utf8), sync: sync)
            #expect(try FileStatus.of("\(dir)/app.conf").kind == .regular)
            #expect(try Self.read("\(dir)/app.conf") == "new\n")
            #expect(try Self.read("\(dir)/elsewhere") == "keep\n")
        }
    }

    @Test func aSymlinkedParentIsRefusedAndNothingIsWrittenThere() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/root", 0o755)
            mkdir("\(dir)/elsewhere", 0o755)
            symlink("\(dir)/elsewhere", "\(dir)/root/etc")
            let root = try RootDirectory("\(dir)/root")
            let error = #expect(throws: ReplicaError.self) {
                try root.writeFileAtomically("etc/app.conf", contents: [1])
            }
            #expect(error?.errno == .ELOOP)
            #expect(try Self.entries("\(dir)/elsewhere") == [])
        }
    }

    /// A directory cannot be replaced by a file; not synced, it is not swapped aside either.
    @Test(arguments: [true, false]) func aFailedReplaceKeepsTheTargetAndRemovesTheTemporary(sync: Bool) throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/target", 0o755)
            mkdir("\(dir)/target/inside", 0o755)
            let root = try RootDirectory(dir)
            let error = #expect(throws: ReplicaError.self) { try root.writeFileAtomically("target", contents: [1], sync: sync) }
            #expect(error?.operation == "renameat")
            #expect(try Self.entries(dir) == ["target"])
            #expect(try Self.entries("\(dir)/target") == ["inside"])
        }
    }

    /// A file rewritten at every run goes into the file the last rewrite swapped out, written over
    /// in place: the live file's inode is the spare's of before, and the old contents are the spare's.
    @Test func aRewriteReusesTheFileTheLastOneSwappedOut() throws {
        try withTemporaryDirectory { dir in
            let root = try RootDirectory(dir)
            try root.rewriteFileAtomically("app.prom", contents: Array("one\n".utf8))
            try root.rewriteFileAtomically("app.prom", contents: Array("two\n".utf8), mode: 0o640)
            #expect(try Self.entries(dir) == [".app.prom.spare", "app.prom"])
            #expect(try Self.read("\(dir)/.app.prom.spare") == "one\n")
            let spare = try FileStatus.of("\(dir)/.app.prom.spare").inode
            try root.rewriteFileAtomically("app.prom", contents: Array("three, longer\n".utf8), mode: 0o640)
            #expect(try FileStatus.of("\(dir)/app.prom").inode == spare)
            #expect(try Self.read("\(dir)/app.prom") == "three, longer\n")
            #expect(try FileStatus.of("\(dir)/app.prom").mode & 0o777 == 0o640)
            #expect(try Self.read("\(dir)/.app.prom.spare") == "two\n")
            try root.rewriteFileAtomically("app.prom", contents: Array("4\n".utf8))  // shorter than the spare's
            #expect(try Self.read("\(dir)/app.prom") == "4\n")
            #expect(try Self.entries(dir) == [".app.prom.spare", "app.prom"])
        }
    }

    /// A reader that opened the file two rewrites ago holds what is now the spare: the kernel refuses
    /// the write lease, and the rewrite makes a new file instead, so the reader still reads its
    /// contents whole. (Without the reader, the test above shows the spare reused.)
    @Test func aSpareSomeoneStillReadsIsNotWrittenOver() throws {
        try withTemporaryDirectory { dir in
            let root = try RootDirectory(dir)
            try root.rewriteFileAtomically("app.prom", contents: Array("one\n".utf8))
            let reader = try OwnedFD.open("\(dir)/app.prom", O_RDONLY)
            let held = try reader.status().inode
            try root.rewriteFileAtomically("app.prom", contents: Array("two\n".utf8))
            #expect(try FileStatus.of("\(dir)/.app.prom.spare").inode == held)
            try root.rewriteFileAtomically("app.prom", contents: Array("three\n".utf8))
            #expect(String(decoding: try reader.readAll(), as: UTF8.self) == "one\n")
            #expect(try FileStatus.of("\(dir)/app.prom").inode != held)
            #expect(try Self.read("\(dir)/app.prom") == "three\n")
            #expect(try Self.entries(dir) == [".app.prom.spare", "app.prom"])
        }
    }

    /// A spare that is a symlink or has a second link is never written through: what it leads to
    /// keeps its contents, and the file is still replaced.
    @Test(arguments: [true, false]) func aSpareThatLeadsElsewhereIsNotWritten(symlinked: Bool) throws {
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/elsewhere", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("keep\n".utf8))
            if symlinked { symlink("\(dir)/elsewhere", "\(dir)/.app.prom.spare") } else { link("\(dir)/elsewhere", "\(dir)/.app.prom.spare") }
            let root = try RootDirectory(dir)
            try root.rewriteFileAtomically("app.prom", contents: Array("one\n".utf8))
            try root.rewriteFileAtomically("app.prom", contents: Array("two\n".utf8))
            #expect(try Self.read("\(dir)/elsewhere") == "keep\n")
            #expect(try FileStatus.of("\(dir)/app.prom").kind == .regular)
            #expect(try Self.read("\(dir)/app.prom") == "two\n")
        }
    }

    /// A directory where the file goes is refused, and nothing is swapped aside.
    @Test func aRewriteOverADirectoryIsRefused() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/app.prom", 0o755)
            mkdir("\(dir)/app.prom/inside", 0o755)
            let root = try RootDirectory(dir)
            let error = #expect(throws: ReplicaError.self) { try root.rewriteFileAtomically("app.prom", contents: [1]) }
            #expect(error?.operation == "renameat")
            #expect(try Self.entries(dir) == ["app.prom"])
            #expect(try Self.entries("\(dir)/app.prom") == ["inside"])
        }
    }

    /// The lease holds (an open of the file is refused while it is held) and its break signals no
    /// one: the holder lives on. The kernel's own lease, its owner kept, is the control: the same
    /// open kills its holder with SIGIO.
    @Test(arguments: [true, false]) func aBrokenLeaseSignalsNoOne(cleared: Bool) throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/file"
            try OwnedFD.open(path, O_WRONLY | O_CREAT, mode: 0o644).writeAll([1])
            let outcome = try? ChildProcess.run(timeout: .seconds(10)) { () throws(ReplicaError) -> String in
                signal(SIGIO, SIG_DFL)  // as a tool starts: SIGIO kills, not blocked
                var io = sigset_t()
                sigemptyset(&io)
                sigaddset(&io, SIGIO)
                sigprocmask(SIG_UNBLOCK, &io, nil)
                let file = try OwnedFD.open(path, O_WRONLY)
                guard cleared ? file.takeWriteLease() : replica_set_lease(file.rawValue, Int32(F_WRLCK)) == 0 else { return "no lease" }
                let reader = Glibc.open(path, O_RDONLY | O_NONBLOCK)  // breaks the lease
                let refused = reader < 0 && errno == EWOULDBLOCK
                usleep(100_000)  // time for a signal to arrive
                return refused ? "refused, alive" : "opened"
            }
            #expect(outcome == (cleared ? "refused, alive" : nil))
        }
    }
}
