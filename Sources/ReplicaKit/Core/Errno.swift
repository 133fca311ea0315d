import CReplicaShim
import Glibc

/// A C `errno` value with its symbolic name (`EPERM`) and its message (`Operation not permitted`).
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: Glibc.errno) }

    /// The symbolic name, e.g. `ELOOP`; `E<number>` for values outside the table.
    public var name: String {
        Errno.names[rawValue] ?? replica_errno_name(rawValue).map { String(cString: $0) } ?? "E\(rawValue)"
    }

    /// The errno of a symbolic name (`EPERM`), as `strerrorname_np(3)` names them; nil for none.
    public static func named(_ name: String) -> Errno? {
        guard name.hasPrefix("E") else { return nil }
        return (1...4095).lazy.map(Errno.init(rawValue:)).first { $0.name == name }
    }
    /// The C library's message for this value, `strerror(3)`.
    public var message: String { String(cString: strerror(rawValue)) }
    /// `Too many levels of symbolic links (ELOOP)`.
    public var description: String { "\(message) (\(name))" }

    /// `EPERM`: Operation not permitted.
    public static let EPERM = Errno(rawValue: Glibc.EPERM)
    /// `ENOENT`: No such file or directory.
    public static let ENOENT = Errno(rawValue: Glibc.ENOENT)
    /// `EINTR`: Interrupted system call.
    public static let EINTR = Errno(rawValue: Glibc.EINTR)
    /// `EIO`: Input/output error.
    public static let EIO = Errno(rawValue: Glibc.EIO)
    /// `EBADF`: Bad file descriptor.
    public static let EBADF = Errno(rawValue: Glibc.EBADF)
    /// `ECHILD`: No child processes.
    public static let ECHILD = Errno(rawValue: Glibc.ECHILD)
    /// `EAGAIN`: Resource temporarily unavailable.
    public static let EAGAIN = Errno(rawValue: Glibc.EAGAIN)
    /// `EACCES`: Permission denied.
    public static let EACCES = Errno(rawValue: Glibc.EACCES)
    /// `EBUSY`: Device or resource busy.
    public static let EBUSY = Errno(rawValue: Glibc.EBUSY)
    /// `EEXIST`: File exists.
    public static let EEXIST = Errno(rawValue: Glibc.EEXIST)
    /// `EXDEV`: Invalid cross-device link.
    public static let EXDEV = Errno(rawValue: Glibc.EXDEV)
    /// `ENOTDIR`: Not a directory.
    public static let ENOTDIR = Errno(rawValue: Glibc.ENOTDIR)
    /// `EISDIR`: Is a directory.
    public static let EISDIR = Errno(rawValue: Glibc.EISDIR)
    /// `EINVAL`: Invalid argument.
    public static let EINVAL = Errno(rawValue: Glibc.EINVAL)
    /// `ENOSPC`: No space left on device.
    public static let ENOSPC = Errno(rawValue: Glibc.ENOSPC)
    /// `EROFS`: Read-only file system.
    public static let EROFS = Errno(rawValue: Glibc.EROFS)
    /// `ENAMETOOLONG`: File name too long.
    public static let ENAMETOOLONG = Errno(rawValue: Glibc.ENAMETOOLONG)
    /// `ENOSYS`: Function not implemented.
    public static let ENOSYS = Errno(rawValue: Glibc.ENOSYS)
    /// `ELOOP`: Too many levels of symbolic links.
    public static let ELOOP = Errno(rawValue: Glibc.ELOOP)
    /// `E2BIG`: Argument list too long.
    public static let E2BIG = Errno(rawValue: Glibc.E2BIG)
    /// `EFBIG`: File too large.
    public static let EFBIG = Errno(rawValue: Glibc.EFBIG)
    /// `ENXIO`: No such device or address.
    public static let ENXIO = Errno(rawValue: Glibc.ENXIO)
    /// `ETIMEDOUT`: Connection timed out.
    public static let ETIMEDOUT = Errno(rawValue: Glibc.ETIMEDOUT)
    /// `ENOTSUP`: Operation not supported.
    public static let ENOTSUP = Errno(rawValue: Glibc.EOPNOTSUPP)
    /// `EMLINK`: Too many links.
    public static let EMLINK = Errno(rawValue: Glibc.EMLINK)
    /// `EWOULDBLOCK`: Resource temporarily unavailable.
    public static let EWOULDBLOCK = Errno(rawValue: Glibc.EWOULDBLOCK)
    /// `ESTALE`: Stale file handle.
    public static let ESTALE = Errno(rawValue: Glibc.ESTALE)
    /// `ENOTEMPTY`: Directory not empty.
    public static let ENOTEMPTY = Errno(rawValue: Glibc.ENOTEMPTY)
    /// `ENODEV`: No such device.
    public static let ENODEV = Errno(rawValue: Glibc.ENODEV)
    /// `EPROTO`: Protocol error.
    public static let EPROTO = Errno(rawValue: Glibc.EPROTO)
    /// `ECONNRESET`: Connection reset by peer.
    public static let ECONNRESET = Errno(rawValue: Glibc.ECONNRESET)
    /// `ENOMEM`: Cannot allocate memory.
    public static let ENOMEM = Errno(rawValue: Glibc.ENOMEM)
    /// `EBADMSG`: Bad message (a D-Bus message that does not follow the wire format).
    public static let EBADMSG = Errno(rawValue: Glibc.EBADMSG)
    /// `EADDRNOTAVAIL`: Cannot assign requested address.
    public static let EADDRNOTAVAIL = Errno(rawValue: Glibc.EADDRNOTAVAIL)
    /// `ECANCELED`: Operation canceled.
    public static let ECANCELED = Errno(rawValue: Glibc.ECANCELED)
    /// `EADDRINUSE`: Address already in use.
    public static let EADDRINUSE = Errno(rawValue: Glibc.EADDRINUSE)
    /// `EPIPE`: Broken pipe.
    public static let EPIPE = Errno(rawValue: Glibc.EPIPE)
    /// `ENOTCONN`: Transport endpoint is not connected (btrfs: quotas are off).
    public static let ENOTCONN = Errno(rawValue: Glibc.ENOTCONN)

    /// `ERANGE`: Numerical result out of range (a buffer too small for an extended attribute).
    public static let ERANGE = Errno(rawValue: Glibc.ERANGE)
    /// `ENODATA`: No data available (no such extended attribute).
    public static let ENODATA = Errno(rawValue: Glibc.ENODATA)

    private static let names: [Int32: String] = [
        Glibc.EPERM: "EPERM", Glibc.ENOENT: "ENOENT", Glibc.ESRCH: "ESRCH", Glibc.EINTR: "EINTR",
        Glibc.EIO: "EIO", Glibc.ENXIO: "ENXIO", Glibc.E2BIG: "E2BIG", Glibc.ENOEXEC: "ENOEXEC",
        Glibc.EBADF: "EBADF", Glibc.ECHILD: "ECHILD", Glibc.EAGAIN: "EAGAIN", Glibc.ENOMEM: "ENOMEM",
        Glibc.EACCES: "EACCES", Glibc.EFAULT: "EFAULT", Glibc.EBUSY: "EBUSY", Glibc.EEXIST: "EEXIST",
        Glibc.EXDEV: "EXDEV", Glibc.ENODEV: "ENODEV", Glibc.ENOTDIR: "ENOTDIR", Glibc.EISDIR: "EISDIR",
        Glibc.EINVAL: "EINVAL", Glibc.ENFILE: "ENFILE", Glibc.EMFILE: "EMFILE", Glibc.ENOTTY: "ENOTTY",
        Glibc.ETXTBSY: "ETXTBSY", Glibc.EFBIG: "EFBIG", Glibc.ENOSPC: "ENOSPC", Glibc.ESPIPE: "ESPIPE",
        Glibc.EROFS: "EROFS", Glibc.EMLINK: "EMLINK", Glibc.EPIPE: "EPIPE", Glibc.ERANGE: "ERANGE",
        Glibc.EDEADLK: "EDEADLK", Glibc.ENAMETOOLONG: "ENAMETOOLONG", Glibc.ENOLCK: "ENOLCK",
        Glibc.ENOSYS: "ENOSYS", Glibc.ENOTEMPTY: "ENOTEMPTY", Glibc.ELOOP: "ELOOP",
        Glibc.ENODATA: "ENODATA", Glibc.EOVERFLOW: "EOVERFLOW", Glibc.EOPNOTSUPP: "EOPNOTSUPP",
        Glibc.EADDRINUSE: "EADDRINUSE", Glibc.EADDRNOTAVAIL: "EADDRNOTAVAIL", Glibc.ENETUNREACH: "ENETUNREACH",
        Glibc.ECONNREFUSED: "ECONNREFUSED", Glibc.ETIMEDOUT: "ETIMEDOUT", Glibc.EALREADY: "EALREADY",
        Glibc.EPROTONOSUPPORT: "EPROTONOSUPPORT", Glibc.ENOBUFS: "ENOBUFS", Glibc.EMSGSIZE: "EMSGSIZE",
        Glibc.EUCLEAN: "EUCLEAN", Glibc.EDQUOT: "EDQUOT", Glibc.ESTALE: "ESTALE", Glibc.EPROTO: "EPROTO", Glibc.ENETDOWN: "ENETDOWN", Glibc.ENOTCONN: "ENOTCONN", Glibc.ECANCELED: "ECANCELED",
        Glibc.ECONNRESET: "ECONNRESET", Glibc.EBADMSG: "EBADMSG",
    ]
}
