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
}
