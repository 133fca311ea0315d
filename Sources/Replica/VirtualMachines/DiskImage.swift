import Glibc
import ReplicaKit

/// What a file given to `template import --vm` is, read from its first bytes, and where a disk
/// image's partitions are.
public enum DiskImage {
    /// A file's kind.
    public enum Kind: Equatable, Sendable {
        /// A QEMU copy-on-write image (`QFI\xfb`).
        case qcow2
        /// A raw disk: a partition table (MBR or GPT) or a bare ext file system.
        case raw
        /// A tarball of a root file system, compressed or not.
        case tarball
        /// Anything else, with what `qemu-img info` calls it.
        case other(String)
    }

    /// The kind of the file whose first bytes are `head` (64 KiB are enough); `qemuFormat`
    /// names one it does not know (`qemu-img info`'s `format`).
    public static func kind(of head: [UInt8], qemuFormat: () -> String) -> Kind {
        let at = { (offset: Int, bytes: [UInt8]) in head.count >= offset + bytes.count && Array(head[offset..<offset + bytes.count]) == bytes }
        if at(0, [0x51, 0x46, 0x49, 0xfb]) { return .qcow2 }
        if at(257, Array("ustar".utf8)) || at(0, [0x1f, 0x8b]) || at(0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) || at(0, [0x28, 0xb5, 0x2f, 0xfd])
            || at(0, Array("BZh".utf8)) { return .tarball }
        if at(510, [0x55, 0xaa]) || at(1080, [0x53, 0xef]) { return .raw }
        return .other(qemuFormat())
    }

    /// The first 64 KiB of the file at `path` (fewer when it is shorter): what `kind` and
    /// `partitions` read.
    public static func head(of path: String) throws(ReplicaError) -> [UInt8] {
        let file = try OwnedFD.open(path, O_RDONLY | O_CLOEXEC)
        var bytes = [UInt8](repeating: 0, count: 64 << 10)
        let count = try syscall("pread", path) { bytes.withUnsafeMutableBytes { Int32(truncatingIfNeeded: pread(file.rawValue, $0.baseAddress, $0.count, 0)) } }
        return Array(bytes[..<Int(count)])
    }

    /// The kind of the file at `path`.
    public static func kind(of path: String) throws(ReplicaError) -> Kind {
        let head = try head(of: path)
        return kind(of: head) {
            let info = (try? Command.run(["qemu-img", "info", "--output=json", path]).output) ?? ""
            return (try? JSON.parse(info))?["format"]?.string ?? "unknown"
        }
    }

    /// A partition: its number (from 1) and where it lies, in bytes.
    public struct Partition: Equatable, Sendable {
        /// Its number, from 1 (its entry's place in the table).
        public var number: Int
        /// Its first byte.
        public var start: UInt64
        /// Its length in bytes.
        public var size: UInt64

        /// A partition.
        public init(number: Int, start: UInt64, size: UInt64) { (self.number, self.start, self.size) = (number, start, size) }
    }

    /// The partitions the first bytes of a disk (`head`, at least 64 KiB for a GPT) list: a GPT's
    /// entries where its protective MBR says there is one, else the MBR's four primary entries;
    /// empty for a disk without a table (a bare file system).
    public static func partitions(_ head: [UInt8]) -> [Partition] {
        let sector = 512
        func little(_ offset: Int, _ width: Int) -> UInt64 {
            guard head.count >= offset + width else { return 0 }
            return (0..<width).reduce(UInt64(0)) { $0 | UInt64(head[offset + $1]) << (8 * UInt64($1)) }
        }
        guard head.count >= sector, head[510] == 0x55, head[511] == 0xaa else { return [] }
        if head[446 + 4] == 0xee, head.count >= 2 * sector, Array(head[sector..<sector + 8]) == Array("EFI PART".utf8) {
            let first = Int(little(sector + 72, 8)) * sector, count = Int(little(sector + 80, 4)), size = Int(little(sector + 84, 4))
            guard size >= 128 else { return [] }
            return (0..<min(count, 256)).compactMap { index in
                let entry = first + index * size
                guard head.count >= entry + 48, head[entry..<entry + 16].contains(where: { $0 != 0 }) else { return nil }
                let low = little(entry + 32, 8), high = little(entry + 40, 8)
                return high >= low ? Partition(number: index + 1, start: low * UInt64(sector), size: (high - low + 1) * UInt64(sector)) : nil
            }
        }
        return (0..<4).compactMap { index in
            let entry = 446 + index * 16
            let start = little(entry + 8, 4), count = little(entry + 12, 4)
            return head[entry + 4] != 0 && count > 0 ? Partition(number: index + 1, start: start * UInt64(sector), size: count * UInt64(sector)) : nil
        }
    }
}
