import Glibc

/// The parts of `struct stat` Replica checks: type, identity (device + inode), links, owner and group, size.
public struct FileStatus: Equatable, Sendable {
    /// The file type bits of `st_mode`.
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        /// The file types `S_IFMT` distinguishes; `unknown` for any other value.
        case regular, directory, symlink, fifo, socket, characterDevice, blockDevice, unknown

        public var description: String {
            switch self {
            case .regular: "a regular file"
            case .directory: "a directory"
            case .symlink: "a symlink"
            case .fifo: "a FIFO"
            case .socket: "a socket"
            case .characterDevice: "a character device"
            case .blockDevice: "a block device"
            case .unknown: "a file of unknown type"
            }
        }
    }

    /// The file's type.
    public var kind: Kind
    /// `st_dev`: the device the file is on.
    public var device: UInt64
    /// `st_ino`: its inode number.
    public var inode: UInt64
    /// `st_mode`: type and permission bits.
    public var mode: UInt32
    /// `st_nlink`: how many hard links it has.
    public var linkCount: UInt64
    /// `st_uid`: the owner's user id.
    public var owner: UInt32
    /// `st_gid`: the group's id.
    public var group: UInt32
    /// `st_size` in bytes.
    public var size: Int64
    /// `st_rdev`: the device a device node stands for.
    public var deviceNumber: UInt64
    /// Bytes allocated on disk (`st_blocks` × 512).
    public var allocated: UInt64
    /// `st_ctim`: when its inode last changed, since the epoch (the kernel sets it; no call can).
    public var changed: Duration

    /// The facts of a `stat` structure, as `fstat(2)` filled it.
    public init(_ st: stat) {
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        case S_IFIFO: kind = .fifo
        case S_IFSOCK: kind = .socket
        case S_IFCHR: kind = .characterDevice
        case S_IFBLK: kind = .blockDevice
        default: kind = .unknown
        }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        mode = UInt32(st.st_mode)
        linkCount = UInt64(st.st_nlink)
        owner = UInt32(st.st_uid)
        group = UInt32(st.st_gid)
        size = Int64(st.st_size)
        deviceNumber = UInt64(st.st_rdev)
        allocated = UInt64(st.st_blocks) * 512
        changed = .seconds(st.st_ctim.tv_sec) + .nanoseconds(st.st_ctim.tv_nsec)
    }

    /// `deviceNumber` as `MAJOR:MINOR` (glibc's `major(3)` and `minor(3)` encoding).
    public var deviceNumberText: String {
        let major = ((deviceNumber >> 8) & 0xfff) | ((deviceNumber >> 32) & ~UInt64(0xfff))
        let minor = (deviceNumber & 0xff) | ((deviceNumber >> 12) & ~UInt64(0xff))
        return "\(major):\(minor)"
    }

    /// `lstat(2)` of a trusted path.
    public static func of(_ path: String) throws(ReplicaError) -> FileStatus {
        var st = stat()
        _ = try syscall("lstat", path) { lstat(path, &st) }
        return FileStatus(st)
    }
}
