import CMnl  // SOCK_STREAM, SOCK_NONBLOCK…: <sys/socket.h> reaches Swift through it, not through Glibc
import Glibc
import ReplicaKit

/// One side of a proxy: a UNIX socket path or a TCP address, on the host or inside a named network
/// namespace. Written `unix:/run/web.sock` or `tcp:127.0.0.1:8080` (`tcp:[::1]:8080`).
public struct ProxyEndpoint: Equatable, Sendable, CustomStringConvertible {
    /// The socket's address.
    public enum Address: Equatable, Sendable {
        /// A UNIX socket path.
        case unix(String)
        /// A TCP host (a literal IPv4 or IPv6 address) and port.
        case tcp(host: String, port: UInt16)
    }

    /// The socket's address.
    public var address: Address
    /// The namespace the socket is made in (`/run/netns/NAME`); nil for the caller's.
    public var namespace: String?

    /// An endpoint at `address`, in `namespace` (nil: the caller's).
    public init(_ address: Address, namespace: String? = nil) { (self.address, self.namespace) = (address, namespace) }

    /// Parses `unix:/PATH`, `tcp:HOST:PORT` or `tcp:[V6]:PORT`; refuses anything else, naming the form.
    public init(parsing text: String, namespace: String? = nil) throws(ReplicaError) {
        self.namespace = namespace
        if text.hasPrefix("unix:"), text.count > 5 {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count < 108 else {
                throw ReplicaError("proxy endpoint", [text], errno: .EINVAL, hint: "a UNIX socket is an absolute path under 108 bytes")
            }
            address = .unix(path)
            return
        }
        guard text.hasPrefix("tcp:"), let colon = text.lastIndex(of: ":"), colon > text.index(text.startIndex, offsetBy: 3),
              let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
            throw ReplicaError("proxy endpoint", [text], errno: .EINVAL, hint: "write unix:/PATH or tcp:HOST:PORT (tcp:127.0.0.1:8080, tcp:[::1]:8080)")
        }
        var host = String(text[text.index(text.startIndex, offsetBy: 4)..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard IPPrefix.parseAddress(host) != nil else {
            throw ReplicaError("proxy endpoint", [text], errno: .EINVAL, hint: "\(host) is not an IPv4 or IPv6 address")
        }
        address = .tcp(host: host, port: port)
    }

    public var description: String {
        let base = switch address {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        }
        return namespace.map { "\(base) in netns \($0)" } ?? base
    }

    /// A new non-blocking stream socket of the endpoint's family, made inside its namespace (a
    /// socket keeps the namespace it was made in).
    func makeSocket() throws(ReplicaError) -> OwnedFD {
        let family = switch address {
        case .unix: AF_UNIX
        case .tcp(let host, _): host.contains(":") ? AF_INET6 : AF_INET
        }
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        guard let namespace else {
            let fd = socket(family, flags, 0)
            guard fd >= 0 else { throw ReplicaError.current("socket", [description]) }
            return OwnedFD(adopting: fd)
        }
        return try NetworkNamespace.socket(in: namespace, family: family, type: flags)
    }

    /// A socket listening at the endpoint (`makeSocket`, `SO_REUSEADDR` for TCP, `bind`, `listen`
    /// with a backlog of 128), non-blocking.
    public func listeningSocket() throws(ReplicaError) -> OwnedFD {
        let listener = try makeSocket()
        if case .tcp = address {
            var on: Int32 = 1
            _ = setsockopt(listener.rawValue, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let fd = listener.rawValue
        guard withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            throw ReplicaError("bind", [description], errno: .current, hint: Errno.current == .EADDRINUSE ? "something else listens there" : nil)
        }
        guard Glibc.listen(fd, 128) == 0 else { throw ReplicaError.current("listen", [description]) }
        return listener
    }

    /// Calls `body` with the endpoint's `sockaddr`.
    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        switch address {
        case .unix(let path):
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
            }
            return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        case .tcp(let host, let port):
            if host.contains(":") {
                var addr = sockaddr_in6()
                addr.sin6_family = sa_family_t(AF_INET6)
                addr.sin6_port = port.bigEndian
                inet_pton(AF_INET6, host, &addr.sin6_addr)
                return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &addr.sin_addr)
            return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
    }
}
