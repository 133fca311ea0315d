import CReplicaShim
import Glibc

/// A file descriptor owned by exactly one value: closed exactly once, when the owner goes away,
/// unless ownership is given up with `release()`.
public struct OwnedFD: ~Copyable, Sendable {
    /// The raw descriptor number, valid while this value lives.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`; it will be closed with this value.
    public init(adopting rawValue: Int32) { self.rawValue = rawValue }

    deinit { _ = Glibc.close(rawValue) }  // close(2) is never retried: Linux frees the fd even on EINTR.

    /// Gives up ownership and returns the raw descriptor without closing it.
    public consuming func release() -> Int32 {
        let raw = rawValue
        discard self
        return raw
    }

    /// `open(2)` with `O_CLOEXEC` added; for trusted paths only (see `RootDirectory` for the rest).
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(ReplicaError) -> OwnedFD {
        OwnedFD(adopting: try syscall("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    /// `openat(2)` relative to this directory, with `O_CLOEXEC` added.
    public borrowing func openat(_ name: String, _ flags: Int32, mode: mode_t = 0) throws(ReplicaError) -> OwnedFD {
        let fd = rawValue
        return OwnedFD(adopting: try syscall("openat", name) { Glibc.openat(fd, name, flags | O_CLOEXEC, mode) })
    }

    /// `fcntl(F_DUPFD_CLOEXEC)`: a second owner for the same open file.
    public borrowing func duplicate() throws(ReplicaError) -> OwnedFD {
        let fd = rawValue
        return OwnedFD(adopting: try syscall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, 3) })
    }

    /// `fstat(2)`.
    public borrowing func status() throws(ReplicaError) -> FileStatus {
        var st = stat()
        let fd = rawValue
        _ = try syscall("fstat") { fstat(fd, &st) }
        return FileStatus(st)
    }

    /// `fstatfs(2)` `f_type`: the filesystem magic (compare with `FilesystemMagic`).
    public borrowing func filesystemType() throws(ReplicaError) -> Int64 {
        var type: Int64 = 0
        let fd = rawValue
        _ = try syscall("fstatfs") { replica_fstatfs_type(fd, &type) }
        return type
    }

    /// What `/proc/self/fd/N` names: the path the kernel has for this descriptor, for messages and checks.
    public borrowing func kernelPath() -> String? {
        readSymlink("/proc/self/fd/\(rawValue)")
    }

    /// Opens the same file again with new flags through `/proc/self/fd/N`, then checks that the new
    /// descriptor is the same inode. Turns an `O_PATH` descriptor into one that can be read or used
    /// for ioctls, without resolving any path again.
    public borrowing func reopen(_ flags: Int32) throws(ReplicaError) -> OwnedFD {
        let before = try status()
        let proc = "/proc/self/fd/\(rawValue)"
        let raw = Glibc.open(proc, flags | O_CLOEXEC)
        guard raw >= 0 else { throw ReplicaError.current("open", [kernelPath() ?? proc]) }  // named only on failure
        let fd = OwnedFD(adopting: raw)
        let after = try fd.status()
        guard after.device == before.device, after.inode == before.inode else {
            throw ReplicaError("reopen", [proc], errno: .EXDEV, hint: "the file changed while it was reopened")
        }
        return fd
    }

    /// Reads until end of file, refusing more than `limit` bytes.
    public borrowing func readAll(limit: Int = 64 << 20, name: String = "") throws(ReplicaError) -> [UInt8] {
        // Read into a buffer on the stack, neither zeroed nor taken from the heap: most of what is
        // read is a line of procfs or a profile, and a fresh 64 KiB array cost more than the read.
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16384) { (chunk) throws(ReplicaError) -> [UInt8] in
            var data: [UInt8] = []
            let fd = rawValue
            while true {
                let n = try syscall("read", name) { Glibc.read(fd, chunk.baseAddress, chunk.count) }
                if n == 0 { return data }
                data.append(contentsOf: chunk[0..<n])
                if data.count > limit {
                    throw ReplicaError("read", [name], errno: .E2BIG, hint: "more than \(limit) bytes")
                }
            }
        }
    }

    /// The whole (small) file as text without its trailing newline: a line of procfs or sysfs, a
    /// lease's owner.
    public borrowing func readLine(limit: Int = 4096, name: String = "") throws(ReplicaError) -> String {
        let text = String(decoding: try readAll(limit: limit, name: name), as: UTF8.self)
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }

    /// Writes every byte, retrying short writes.
    public borrowing func writeAll(_ bytes: some Collection<UInt8>, name: String = "") throws(ReplicaError) {
        let fd = rawValue
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let n = try syscall("write", name) {
                array.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            }
            offset += n
        }
    }
}

/// Filesystem magic numbers (`linux/magic.h`) for `OwnedFD.filesystemType()`.
public enum FilesystemMagic {
    /// `BTRFS_SUPER_MAGIC`.
    public static let btrfs = replica_BTRFS_SUPER_MAGIC
    /// `PROC_SUPER_MAGIC`.
    public static let proc = replica_PROC_SUPER_MAGIC
    /// `TMPFS_MAGIC`.
    public static let tmpfs = replica_TMPFS_MAGIC
    /// `OVERLAYFS_SUPER_MAGIC`.
    public static let overlayfs = replica_OVERLAYFS_SUPER_MAGIC
}
