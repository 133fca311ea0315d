import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// Hand-made btrfs send streams (format version 1), well-formed or hostile: what a compromised
/// sending host can put on the wire of `replica-snap receive`.
struct StreamWriter {
    var bytes: [UInt8] = SendStream.magic + [1, 0, 0, 0]

    init(bytes: [UInt8] = SendStream.magic + [1, 0, 0, 0]) { self.bytes = bytes }

    /// A stream beginning with a full subvolume.
    init(subvolume name: String, uuid: [UInt8]) {
        self.init()
        subvolume(name, uuid: uuid)
    }

    static func le(_ value: UInt64, _ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// One command: header, attributes, checksum.
    mutating func command(_ command: SendStream.Command, _ attributes: [(SendStream.Attribute, [UInt8])]) {
        var body: [UInt8] = []
        for (type, value) in attributes { body += Self.le(UInt64(type.rawValue), 2) + Self.le(UInt64(value.count), 2) + value }
        var whole = Self.le(UInt64(body.count), 4) + Self.le(UInt64(command.rawValue), 2) + [0, 0, 0, 0] + body
        let crc = Self.le(UInt64(SendStream.checksum(whole[...])), 4)
        whole.replaceSubrange(6..<10, with: crc)
        bytes += whole
    }

    mutating func subvolume(_ name: String, uuid: [UInt8]) { command(.subvolume, [(.path, Array(name.utf8)), (.uuid, uuid), (.ctransid, Self.le(7, 8))]) }
    mutating func snapshot(_ name: String, uuid: [UInt8], parent: [UInt8]) {
        command(.snapshot, [(.path, Array(name.utf8)), (.uuid, uuid), (.ctransid, Self.le(9, 8)), (.cloneUUID, parent), (.cloneCtransid, Self.le(7, 8))])
    }
    mutating func makeFile(_ path: String) { command(.makeFile, [(.path, Array(path.utf8)), (.inode, Self.le(257, 8))]) }
    mutating func makeDirectory(_ path: String) { command(.makeDirectory, [(.path, Array(path.utf8)), (.inode, Self.le(258, 8))]) }
    mutating func symlink(_ path: String, to target: String) {
        command(.symlink, [(.path, Array(path.utf8)), (.inode, Self.le(259, 8)), (.pathLink, Array(target.utf8))])
    }
    mutating func makeNode(_ path: String, mode: UInt64, device: UInt64) {
        command(.makeNode, [(.path, Array(path.utf8)), (.inode, Self.le(260, 8)), (.mode, Self.le(mode, 8)), (.rdev, Self.le(device, 8))])
    }
    mutating func write(_ path: String, _ data: [UInt8], at offset: UInt64 = 0) {
        command(.write, [(.path, Array(path.utf8)), (.fileOffset, Self.le(offset, 8)), (.data, data)])
    }
    mutating func rename(_ from: String, to: String) { command(.rename, [(.path, Array(from.utf8)), (.pathTo, Array(to.utf8))]) }
    mutating func link(_ path: String, to existing: String) { command(.link, [(.path, Array(path.utf8)), (.pathLink, Array(existing.utf8))]) }
    mutating func setXattr(_ path: String, _ name: String, _ value: String) {
        command(.setXattr, [(.path, Array(path.utf8)), (.xattrName, Array(name.utf8)), (.xattrData, Array(value.utf8))])
    }
    mutating func clone(_ path: String, from uuid: [UInt8], _ source: String, length: UInt64) {
        command(.clone, [(.path, Array(path.utf8)), (.fileOffset, Self.le(0, 8)), (.cloneLength, Self.le(length, 8)), (.cloneUUID, uuid),
                         (.cloneCtransid, Self.le(7, 8)), (.clonePath, Array(source.utf8)), (.cloneOffset, Self.le(0, 8))])
    }
    mutating func chmod(_ path: String, _ mode: UInt64) { command(.chmod, [(.path, Array(path.utf8)), (.mode, Self.le(mode, 8))]) }
    mutating func end() { command(.end, []) }

    /// A random uuid and how btrfs writes it.
    static func uuid() -> (bytes: [UInt8], text: String) {
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255) }
        let hex = bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        let parts = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { range in
            String(hex[hex.index(hex.startIndex, offsetBy: range.lowerBound)..<hex.index(hex.startIndex, offsetBy: range.upperBound)])
        }
        return (bytes, parts.joined(separator: "-"))
    }
}

/// The receiving side from the sender's side: streams a compromised sending host could write,
/// each given to `replica-snap receive` as ssh would run it. Each refusal is checked where the
/// attack would land (outside the folder: unchanged; the folder: nothing new, no marker), and each
/// escape is first shown to work against plain `btrfs receive`, so a test cannot pass because the
/// stream stopped being hostile.
@Suite(.requiresBtrfs, .serialized) struct HostileStreamTests {
    static let name = "web.20261122T023000Z"

    /// A btrfs store with a target folder (`backup/web`), a folder for the control (`plain`) and one
    /// outside both holding one file, all on the same filesystem (so links and renames could reach it).
    static func withTarget(_ body: (_ store: String, _ folder: String, _ outside: String) throws -> Void) throws {
        try withBtrfsImage(size: 512 << 20) { image in
            let (store, outside) = (image.mountPoint, "\(image.mountPoint)/outside")
            _ = try Command.check(["mkdir", "-p", "\(store)/backup/web", "\(store)/plain", outside])
            _ = try Command.check(["sh", "-c", "echo original > '\(outside)/keep'"])
            try body(store, "\(store)/backup/web", outside)
        }
    }

    /// `replica-snap receive --name NAME --uuid UUID FOLDER < stream`.
    static func receive(_ stream: StreamWriter, name: String = name, uuid: String, into folder: String) throws -> CommandResult {
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/stream", O_WRONLY | O_CREAT, mode: 0o600).writeAll(stream.bytes)
            return try Command.run(["sh", "-c", "'\(try builtTool("replica-snap"))' receive --name '\(name)' --uuid '\(uuid)' '\(folder)' < '\(dir)/stream'"])
        }
    }

    /// `btrfs receive FOLDER < stream`: the control. What it made is deleted afterwards by `undoPlain`.
    static func plainReceive(_ stream: StreamWriter, into folder: String) throws -> CommandResult {
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/stream", O_WRONLY | O_CREAT, mode: 0o600).writeAll(stream.bytes)
            return try Command.run(["sh", "-c", "btrfs receive '\(folder)' < '\(dir)/stream'"])
        }
    }

    /// Removes what the control made: its subvolumes, and what it did outside.
    static func undoPlain(_ store: String, outside: String) throws {
        _ = try Command.check(["sh", "-c", """
            for s in '\(store)'/plain/*; do [ -e "$s" ] && btrfs -q subvolume delete "$s"; done
            rm -f '\(outside)/pwned'; setfattr -x user.pwned '\(outside)/keep' 2>/dev/null; echo original > '\(outside)/keep'; true
            """])
    }

    /// A command's output without its last newline.
    static func text(_ arguments: [String]) throws -> String {
        var output = try Command.check(arguments)
        while output.hasSuffix("\n") { output.removeLast() }
        return output
    }

    static func listing(_ path: String) throws -> String { try text(["sh", "-c", "cd '\(path)' && find . | sort"]) }

    /// What a user would look at outside: the names, the file's content, links and attributes.
    static func state(_ outside: String) throws -> String {
        try text(["sh", "-c", "cd '\(outside)' && find . -mindepth 1 -printf '%p %n %s\\n' | sort && cat keep && getfattr -d keep 2>/dev/null; true"])
    }

    /// What was refused left the folder as it was (no copy, no marker) and `outside` as it was.
    static func expectNothingKept(_ result: CommandResult, _ rule: String, folder: String, before: String, outside: String,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(result.status == .exited(1), "\(result.output)", sourceLocation: sourceLocation)
        #expect(result.output.contains(rule) && result.output.contains("nothing of it was kept"), "\(result.output)", sourceLocation: sourceLocation)
        #expect(try listing(folder) == before, "the folder holds what it held", sourceLocation: sourceLocation)
        let now = try state(outside)
        #expect(now == "./keep 1 9\noriginal", "nothing changed outside", sourceLocation: sourceLocation)
    }

    @Test func aWellFormedHandMadeStreamIsReceivedAsACopy() throws {
        try Self.withTarget { _, folder, _ in
            let (uuid, text) = StreamWriter.uuid()
            var stream = StreamWriter(subvolume: Self.name, uuid: uuid)
            stream.makeDirectory("d")
            stream.makeFile("d/f")
            stream.write("d/f", Array("hello".utf8))
            stream.makeFile("g")
            stream.clone("g", from: uuid, "d/f", length: 0)
            stream.symlink("s", to: "/etc/passwd")
            stream.setXattr("d/f", "user.k", "v")
            stream.chmod("d/f", 0o640)
            stream.end()
            let result = try Self.receive(stream, uuid: text, into: folder)
            #expect(result.status == .exited(0), "\(result.output)")
            let copy = "\(folder)/\(Self.name)"
            #expect(try Self.text(["cat", "\(copy)/d/f", "\(copy)/g"]) == "hellohello")
            let mode = try Self.text(["stat", "-c", "%a", "\(copy)/d/f"])
            let link = try Self.text(["readlink", "\(copy)/s"])
            let xattr = try Self.text(["getfattr", "--absolute-names", "--only-values", "-n", "user.k", "\(copy)/d/f"])
            #expect(mode == "640" && link == "/etc/passwd" && xattr == "v", "\(mode) \(link) \(xattr)")
            let info = try Btrfs.info(try OwnedFD.open(copy, O_RDONLY | O_DIRECTORY), path: copy)
            #expect(info.isReadOnly && info.receivedUUID == text)
        }
    }

    /// A stream that reaches outside the subvolume being received, and whether plain `btrfs receive`
    /// (6.2) lets it.
    enum Escape: String, CaseIterable, Sendable {
        case symlinkThenWrite, dotDot, absolutePath, renameAcrossTheLink, hardLinkThroughTheLink, xattrThroughTheLink

        func stream(_ uuid: [UInt8], outside: String) -> StreamWriter {
            var stream = StreamWriter(subvolume: HostileStreamTests.name, uuid: uuid)
            switch self {
            case .symlinkThenWrite:
                stream.symlink("esc", to: outside)
                stream.makeFile("esc/pwned")
                stream.write("esc/pwned", Array("owned".utf8))
            case .dotDot:
                stream.makeFile("../../../../../../..\(outside)/pwned")
            case .absolutePath:
                stream.makeFile("\(outside)/pwned")
            case .renameAcrossTheLink:
                stream.symlink("esc", to: outside)
                stream.rename("esc/keep", to: "esc/pwned")
            case .hardLinkThroughTheLink:
                stream.symlink("esc", to: outside)
                stream.link("esc/pwned", to: "esc/keep")
            case .xattrThroughTheLink:
                stream.symlink("esc", to: outside)
                stream.setXattr("esc/keep", "user.pwned", "1")
            }
            stream.end()
            return stream
        }

        /// What the refusal says.
        var rule: String { self == .dotDot || self == .absolutePath ? "a path must stay inside the subvolume" : "passes through a symlink" }
    }

    @Test(arguments: Escape.allCases)
    func aStreamReachingOutsideItsSubvolumeIsRefused(escape: Escape) throws {
        try Self.withTarget { store, folder, outside in
            let (uuid, text) = StreamWriter.uuid()
            let stream = escape.stream(uuid, outside: outside)
            let untouched = try Self.state(outside)
            _ = try Self.plainReceive(stream, into: "\(store)/plain")
            // btrfs receive joins an absolute path to its folder's, so that one alone stays inside.
            #expect((try Self.state(outside) != untouched) == (escape != .absolutePath), "control: plain btrfs receive follows the stream outside")
            try Self.undoPlain(store, outside: outside)
            let before = try Self.listing(folder)
            try Self.expectNothingKept(try Self.receive(stream, uuid: text, into: folder), escape.rule, folder: folder, before: before, outside: outside)
        }
    }

    @Test func aDeviceNodeTheStreamMadeIsNeverWrittenThrough() throws {
        try Self.withTarget { store, folder, outside in
          try withTemporaryDirectory { host in
            _ = try Command.check(["dd", "if=/dev/zero", "of=\(host)/disk", "bs=64k", "count=1", "status=none"])
            let loop = try Self.text(["losetup", "-f", "--show", "\(host)/disk"])
            defer { _ = try? Command.run(["losetup", "-d", loop]) }
            let device = try Self.text(["stat", "-L", "-c", "%t %T", loop]).split(separator: " ").map { UInt64($0, radix: 16)! }
            let (uuid, text) = StreamWriter.uuid()
            var stream = StreamWriter(subvolume: Self.name, uuid: uuid)
            stream.makeNode("disk", mode: UInt64(S_IFBLK | 0o600), device: device[0] << 8 | device[1])
            stream.write("disk", Array("owned".utf8))
            stream.end()
            let zeros = "0000000 000000 000000 000000 000000 000000 000000 000000 000000\n*\n0200000"
            _ = try Self.plainReceive(stream, into: "\(store)/plain")
            #expect(try Self.text(["od", loop]) != zeros, "control: plain btrfs receive writes the host's device")
            try Self.undoPlain(store, outside: outside)
            _ = try Command.check(["dd", "if=/dev/zero", "of=\(loop)", "bs=64k", "count=1", "status=none"])
            let before = try Self.listing(folder)
            let result = try Self.receive(stream, uuid: text, into: folder)
            #expect(result.status == .exited(1) && result.output.contains("not a regular file"), "\(result.output)")
            #expect(try Self.text(["od", loop]) == zeros, "the device was not written")
            #expect(try Self.listing(folder) == before)
          }
        }
    }

    @Test func aSecondStreamAfterTheFirstIsRefusedAndNeitherKept() throws {
        try Self.withTarget { store, folder, outside in
            let (uuid, text) = StreamWriter.uuid()
            var stream = StreamWriter(subvolume: Self.name, uuid: uuid)
            stream.makeFile("f")
            stream.end()
            var second = StreamWriter(subvolume: "extra", uuid: StreamWriter.uuid().bytes)
            second.end()
            stream.bytes += second.bytes
            _ = try Self.plainReceive(stream, into: "\(store)/plain")
            #expect(try Self.listing("\(store)/plain").contains("./extra"), "control: plain btrfs receive makes both")
            try Self.undoPlain(store, outside: outside)
            let before = try Self.listing(folder)
            try Self.expectNothingKept(try Self.receive(stream, uuid: text, into: folder), "a second stream", folder: folder, before: before, outside: outside)
        }
    }

    @Test(arguments: [0.2, 0.5, 0.9, 0.999])
    func aTruncatedStreamIsRefusedAndNothingKept(fraction: Double) throws {
        try Self.withTarget { _, folder, outside in
            let (uuid, text) = StreamWriter.uuid()
            var stream = StreamWriter(subvolume: Self.name, uuid: uuid)
            stream.makeFile("f")
            for block in 0..<8 { stream.write("f", [UInt8](repeating: UInt8(block), count: 30_000), at: UInt64(block) * 30_000) }
            stream.end()
            stream.bytes.removeLast(stream.bytes.count - Int(Double(stream.bytes.count) * fraction))
            let before = try Self.listing(folder)
            try Self.expectNothingKept(try Self.receive(stream, uuid: text, into: folder), "truncated", folder: folder, before: before, outside: outside)
        }
    }

    @Test func aGarbledStreamIsRefusedAndNothingKept() throws {
        try Self.withTarget { _, folder, outside in
            let (uuid, text) = StreamWriter.uuid()
            var stream = StreamWriter(subvolume: Self.name, uuid: uuid)
            stream.makeFile("f")
            stream.write("f", [UInt8](repeating: 7, count: 10_000))
            stream.end()
            stream.bytes[stream.bytes.count - 5_000] ^= 1
            let before = try Self.listing(folder)
            try Self.expectNothingKept(try Self.receive(stream, uuid: text, into: folder), "checksum", folder: folder, before: before, outside: outside)
            try Self.expectNothingKept(try Self.receive(StreamWriter(bytes: Array("not a stream at all".utf8)), uuid: text, into: folder),
                                       "not a send stream", folder: folder, before: before, outside: outside)
        }
    }

    @Test func aStreamOfAnotherNameOrUuidMakesNothing() throws {
        try Self.withTarget { _, folder, outside in
            let (uuid, text) = StreamWriter.uuid()
            var other = StreamWriter(subvolume: "web.20991231T000000Z", uuid: uuid)
            other.end()
            let before = try Self.listing(folder)
            try Self.expectNothingKept(try Self.receive(other, uuid: text, into: folder), "not the announced \(Self.name)",
                                       folder: folder, before: before, outside: outside)
            var stream = StreamWriter(subvolume: Self.name, uuid: uuid)
            stream.end()
            try Self.expectNothingKept(try Self.receive(stream, uuid: StreamWriter.uuid().text, into: folder), "not the announced",
                                       folder: folder, before: before, outside: outside)
        }
    }

    @Test func aCloneOrParentFromOutsideTheFolderIsRefused() throws {
        try Self.withTarget { store, folder, outside in
            // Another sender's copy on the same filesystem, holding a secret.
            let (otherUUID, otherText) = StreamWriter.uuid()
            var theirs = StreamWriter(subvolume: "db.20261122T000000Z", uuid: otherUUID)
            theirs.makeFile("secret")
            theirs.write("secret", Array("their secret".utf8))
            theirs.end()
            _ = try Command.check(["mkdir", "-p", "\(store)/backup/db"])
            #expect(try Self.receive(theirs, name: "db.20261122T000000Z", uuid: otherText, into: "\(store)/backup/db").status == .exited(0))
            let (uuid, text) = StreamWriter.uuid()
            var clone = StreamWriter(subvolume: Self.name, uuid: uuid)
            clone.makeFile("loot")
            clone.clone("loot", from: otherUUID, "secret", length: 0)
            clone.end()
            _ = try Self.plainReceive(clone, into: "\(store)/plain")
            #expect(try Self.text(["cat", "\(store)/plain/\(Self.name)/loot"]) == "their secret", "control: plain btrfs receive clones it")
            try Self.undoPlain(store, outside: outside)
            let before = try Self.listing(folder)
            try Self.expectNothingKept(try Self.receive(clone, uuid: text, into: folder), "is not a finished copy in",
                                       folder: folder, before: before, outside: outside)
            var incremental = StreamWriter()
            incremental.snapshot(Self.name, uuid: uuid, parent: otherUUID)
            incremental.end()
            try Self.expectNothingKept(try Self.receive(incremental, uuid: text, into: folder), "is not a finished copy in",
                                       folder: folder, before: before, outside: outside)
        }
    }
}
