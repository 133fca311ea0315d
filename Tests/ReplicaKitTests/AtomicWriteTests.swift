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

    @Test func writesAndReplacesWithoutLeavingTemporaries() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/etc", 0o755)
            let root = try RootDirectory(dir)
            try root.writeFileAtomically("etc/app.conf", contents: Array("one\n".utf8))
            try root.writeFileAtomically("/etc/app.conf", contents: Array("two\n".utf8), mode: 0o600)
            #expect(try Self.read("\(dir)/etc/app.conf") == "two\n")
            #expect(try Self.entries("\(dir)/etc") == ["app.conf"])
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

    @Test func aFailedReplaceKeepsTheTargetAndRemovesTheTemporary() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/target", 0o755)  // a directory cannot be replaced by a file
            let root = try RootDirectory(dir)
            let error = #expect(throws: ReplicaError.self) { try root.writeFileAtomically("target", contents: [1]) }
            #expect(error?.operation == "renameat")
            #expect(try Self.entries(dir) == ["target"])
        }
    }
}
