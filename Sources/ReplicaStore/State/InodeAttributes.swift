import CReplicaShim
import Glibc
import ReplicaKit

/// What a copy of state keeps beyond type, mode, owner and times: every extended attribute —
/// POSIX ACLs (`system.posix_acl_access`, `_default`), `user.*`, `trusted.*`, file capabilities
/// (`security.capability`) — and the `chattr` flags a service can rely on (immutable, append-only,
/// no-dump, no-atime, sync, no-COW, compression). `getfattr -d -m -` and `lsattr` show the same.
struct InodeAttributes: Equatable {
    /// Extended attributes by name.
    var extended: [String: [UInt8]] = [:]
    /// The kept inode flags (`replica_kept_inode_flags`); 0 where an inode has none (symlinks,
    /// device nodes, FIFOs) or the filesystem keeps none.
    var flags: UInt32 = 0

    /// Attributes recorded by Replica on a subvolume (its owner, its lineage): never taken from
    /// the state being copied, which its service may have written.
    static let reservedPrefix = "user.replica."

    /// An inode as these calls reach it: an open descriptor (a file or directory, `f*xattr`), or a
    /// name in an open directory, not followed (`l*xattr` on `/proc/self/fd/DIR/NAME`).
    enum Inode {
        case descriptor(Int32)
        case entry(directory: Int32, name: String)

        var path: String {
            switch self {
            case .descriptor(let fd): "/proc/self/fd/\(fd)"
            case .entry(let directory, let name): "/proc/self/fd/\(directory)/\(name)"
            }
        }
    }

    /// Reads them (`flistxattr`/`fgetxattr` or `llistxattr`/`lgetxattr`, `FS_IOC_GETFLAGS`). A
    /// filesystem without extended attributes or flags has none.
    static func read(_ inode: Inode, path: String) throws(ReplicaError) -> InodeAttributes {
        var attributes = InodeAttributes()
        for name in try names(inode, path: path) {
            guard let value = try value(inode, name, path: path) else { continue }  // removed meanwhile
            attributes.extended[name] = value
        }
        if case .descriptor(let fd) = inode {
            var flags: UInt32 = 0
            if replica_get_inode_flags(fd, &flags) == 0 { attributes.flags = flags & replica_kept_inode_flags }
        }
        return attributes
    }

    /// Sets every extended attribute on `inode` (flags are `seal`'s). Refused, naming the
    /// attribute, when the store cannot keep one, and for Replica's own names.
    func writeExtended(_ inode: Inode, path: String) throws(ReplicaError) {
        for (name, value) in extended.sorted(by: { $0.key < $1.key }) {
            guard !name.hasPrefix(Self.reservedPrefix) else {
                throw ReplicaError("keep attributes", [path], errno: .EPERM,
                                   hint: "it carries \(name), an attribute only Replica records on the store; remove it "
                                       + "(setfattr -x \(name) \(path)) and start again; nothing was switched", reason: .refused)
            }
            let result = value.withUnsafeBytes { bytes -> Int32 in
                switch inode {
                case .descriptor(let fd): fsetxattr(fd, name, bytes.baseAddress, bytes.count, 0)
                case .entry: lsetxattr(inode.path, name, bytes.baseAddress, bytes.count, 0)
                }
            }
            if result != 0 {
                throw ReplicaError.current("keep attributes", [path],
                                           hint: "the store cannot keep its extended attribute \(name) (\(value.count) bytes); "
                                               + "the original is untouched and nothing was switched")
            }
        }
    }

    /// Sets the kept flags (`FS_IOC_SETFLAGS`): last, since an immutable or append-only inode
    /// takes no other change. Refused, naming them, when the store cannot keep them.
    func seal(_ fd: Int32, path: String) throws(ReplicaError) {
        guard flags != 0 else { return }
        var current: UInt32 = 0
        _ = replica_get_inode_flags(fd, &current)
        if replica_set_inode_flags(fd, (current & ~replica_kept_inode_flags) | flags) != 0 {
            throw ReplicaError.current("keep attributes", [path],
                                       hint: "the store cannot keep its inode flags \(Self.letters(flags)) (lsattr); the original is "
                                           + "untouched and nothing was switched")
        }
    }

    /// The flags as `lsattr` prints them (FS_SYNC_FL S, FS_DIRSYNC_FL D, FS_IMMUTABLE_FL i …).
    static func letters(_ flags: UInt32) -> String {
        let table: [(UInt32, Character)] = [(0x8, "S"), (0x10000, "D"), (0x10, "i"), (0x20, "a"), (0x40, "d"), (0x80, "A"),
                                            (0x4, "c"), (0x800000, "C"), (0x400, "m")]
        return String(table.filter { flags & $0.0 != 0 }.map(\.1))
    }

    static func names(_ inode: Inode, path: String) throws(ReplicaError) -> [String] {
        while true {
            let size = list(inode, nil, 0)
            if size < 0 {
                if Errno.current == .ENOTSUP { return [] }
                throw ReplicaError.current("listxattr", [path])
            }
            if size == 0 { return [] }
            var buffer = [CChar](repeating: 0, count: size)
            let count = buffer.withUnsafeMutableBufferPointer { list(inode, $0.baseAddress, $0.count) }
            if count < 0 && Errno.current == .ERANGE { continue }  // grew meanwhile
            if count < 0 { throw ReplicaError.current("listxattr", [path]) }
            return buffer[..<count].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
    }

    static func list(_ inode: Inode, _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
        switch inode {
        case .descriptor(let fd): flistxattr(fd, buffer, size)
        case .entry: llistxattr(inode.path, buffer, size)
        }
    }

    static func value(_ inode: Inode, _ name: String, path: String) throws(ReplicaError) -> [UInt8]? {
        let get = { (buffer: UnsafeMutableRawPointer?, size: Int) -> Int in
            switch inode {
            case .descriptor(let fd): fgetxattr(fd, name, buffer, size)
            case .entry: lgetxattr(inode.path, name, buffer, size)
            }
        }
        while true {
            let size = get(nil, 0)
            if size < 0 && Errno.current == .ENODATA { return nil }
            if size < 0 { throw ReplicaError.current("getxattr(\(name))", [path]) }
            var buffer = [UInt8](repeating: 0, count: size)
            let count = buffer.withUnsafeMutableBytes { get($0.baseAddress, $0.count) }
            if count < 0 && Errno.current == .ERANGE { continue }
            if count < 0 { throw ReplicaError.current("getxattr(\(name))", [path]) }
            return Array(buffer[..<count])
        }
    }
}
