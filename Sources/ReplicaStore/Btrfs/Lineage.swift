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
        (attribute(subvolume, lineageAttribute, limit: lineageLimit * 37) ?? "").split(separator: " ").map(String.init)
    }

    /// Records `uuids` as the lineage of a writable subvolume (`setfattr -n user.replica.lineage`).
    static func setLineage(_ subvolume: borrowing OwnedFD, _ uuids: [String], path: String) throws(ReplicaError) {
        try setAttribute(subvolume, lineageAttribute, uuids.suffix(lineageLimit).joined(separator: " "), path: path)
    }

    /// An extended attribute's value as text (`getfattr -n NAME`); nil when it is not set.
    public static func attribute(_ fd: borrowing OwnedFD, _ name: String, limit: Int = 4096) -> String? {
        var buffer = [UInt8](repeating: 0, count: limit)
        let raw = fd.rawValue
        let count = buffer.withUnsafeMutableBytes { fgetxattr(raw, name, $0.baseAddress, $0.count) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// Sets an extended attribute (`setfattr -n NAME -v VALUE`).
    public static func setAttribute(_ fd: borrowing OwnedFD, _ name: String, _ value: String, path: String) throws(ReplicaError) {
        let bytes = Array(value.utf8)
        let raw = fd.rawValue
        let result = bytes.withUnsafeBytes { fsetxattr(raw, name, $0.baseAddress, $0.count, 0) }
        if result != 0 { throw ReplicaError.current("fsetxattr(\(name))", [path]) }
    }

    /// Removes every extended attribute whose name starts with `prefix` (`getfattr -m` then
    /// `setfattr -x`): a copy or snapshot must not carry what was recorded about its source.
    public static func removeAttributes(_ fd: borrowing OwnedFD, prefix: String, path: String) throws(ReplicaError) {
        var buffer = [CChar](repeating: 0, count: 64 << 10)
        let raw = fd.rawValue
        let count = buffer.withUnsafeMutableBufferPointer { flistxattr(raw, $0.baseAddress, $0.count) }
        guard count > 0 else { return }
        let names = buffer[..<count].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        for name in names where name.hasPrefix(prefix) {
            if fremovexattr(raw, name) != 0 && Errno.current.rawValue != ENODATA { throw ReplicaError.current("fremovexattr(\(name))", [path]) }
        }
    }
}
