import CReplicaShim
import Glibc
import ReplicaKit

extension Btrfs {
    /// The extended attribute holding the uuids a subvolume descends from through rollbacks.
    static let lineageAttribute = "user.replica.lineage"
    /// Older ancestors beyond this many are forgotten (a 37-byte uuid each; xattrs hold 64 KiB).
    static let lineageLimit = 256

    /// The uuids of the subvolumes this one replaced by rollback, oldest first
    /// (`getfattr -n user.replica.lineage`). Snapshots taken of any of them stay ours: a rolled-back
    /// subvolume is a new subvolume with a new uuid, but the same service state.
    public static func lineage(_ subvolume: borrowing OwnedFD) -> [String] {
        var buffer = [UInt8](repeating: 0, count: lineageLimit * 37)
        let count = buffer.withUnsafeMutableBytes { fgetxattr(subvolume.rawValue, lineageAttribute, $0.baseAddress, $0.count) }
        guard count > 0 else { return [] }
        return String(decoding: buffer[..<count], as: UTF8.self).split(separator: " ").map(String.init)
    }

    /// Records `uuids` as the lineage of a writable subvolume (`setfattr -n user.replica.lineage`).
    static func setLineage(_ subvolume: borrowing OwnedFD, _ uuids: [String], path: String) throws(StoreError) {
        let value = Array(uuids.suffix(lineageLimit).joined(separator: " ").utf8)
        let fd = subvolume.rawValue
        let result = value.withUnsafeBytes { fsetxattr(fd, lineageAttribute, $0.baseAddress, $0.count, 0) }
        if result != 0 { throw StoreError("fsetxattr(\(lineageAttribute))", [path], errno: .current) }
    }
}
