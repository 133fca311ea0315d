import CMnl  // SOCK_STREAM, SOCK_NONBLOCK…: <sys/socket.h> reaches Swift through it, not through Glibc
import CReplicaShim
import Glibc
import ReplicaKit

/// A forwarder between two sockets that may live in different network namespaces: it accepts on
/// `listen` and, for each client, connects to `connect` and copies bytes both ways — so a service
/// in a private namespace is reachable from the host (or reaches the host) without routes or
/// firewall rules. UNIX sockets are preferred where they fit: no ports, file permissions as access
/// control. One thread, `poll(2)`, non-blocking sockets; each direction of each connection has a
/// bounded buffer (a full buffer stops reading from its sender: backpressure, not memory growth);
/// an end's EOF is passed on with `shutdown(SHUT_WR)` once its buffer is drained.
public struct Proxy: ~Copyable {
    /// Where connections are accepted.
    public let listen: ProxyEndpoint
    /// Where each connection is forwarded.
    public let connect: ProxyEndpoint
    private let listener: OwnedFD
    /// The UNIX socket this proxy made (its inode), removed again on stop.
    private let socketFile: (path: String, inode: UInt64)?

    /// Bytes buffered per direction per connection.
    public static let bufferSize = 64 * 1024
    /// Connections at once; more wait in the listen backlog.
    public static let maxConnections = 512

    /// Binds and listens on `listen` (a stale UNIX socket nobody listens on is replaced; anything
    /// else at the path is refused).
    public init(listen: ProxyEndpoint, connect: ProxyEndpoint) throws(ReplicaError) {
        if case .unix(let path) = listen.address { try Self.removeStaleSocket(path) }
        let listener = try listen.listeningSocket()
        var socketFile: (String, UInt64)?
        if case .unix(let path) = listen.address { socketFile = (path, (try? FileStatus.of(path).inode) ?? 0) }
        self.listen = listen
        self.connect = connect
        self.listener = listener
        self.socketFile = socketFile
    }

    deinit {
        if let socketFile, (try? FileStatus.of(socketFile.path).inode) == socketFile.inode { unlink(socketFile.path) }
    }

    /// The TCP port it listens on (useful after binding port 0), or nil for a UNIX socket.
    public var port: UInt16? {
        guard case .tcp = listen.address else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener.rawValue, $0, &length) } }
        return withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
    }

    /// Forwards until SIGTERM or SIGINT (`systemctl stop`, Ctrl-C), which arrive through a signalfd
    /// polled with the sockets, so a stop is clean and no handler runs: the calling thread blocks
    /// both signals first. Returns the number of connections served.
    @discardableResult
    public func runUntilTerminated() throws(ReplicaError) -> Int {
        let stop = OwnedFD(adopting: try syscall("signalfd(SIGTERM, SIGINT)") { replica_termination_signalfd() })
        return try run(until: stop.rawValue)
    }

    /// Forwards until `stopFD` becomes readable (a pipe written to, or a signalfd), then closes
    /// every connection. Returns the number of connections served.
    @discardableResult
    public func run(until stopFD: Int32) throws(ReplicaError) -> Int {
        var pairs: [Connection] = []
        var served = 0
        defer { for pair in pairs { pair.close() } }
        while true {
            var fds = [pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: pairs.count < Self.maxConnections ? listener.rawValue : -1, events: Int16(POLLIN), revents: 0)]
            for pair in pairs { fds += pair.pollRequests() }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if Errno.current == .EINTR { continue }
                throw ReplicaError.current("poll", [listen.description])
            }
            if fds[0].revents != 0 { return served }
            let polled = pairs.count  // connections accepted below were not in this poll
            if fds[1].revents & Int16(POLLIN) != 0 {
                while pairs.count < Self.maxConnections, let client = acceptClient() {
                    if let pair = try? Connection(client: client, to: connect) { pairs.append(pair); served += 1 }
                }
            }
            for (index, pair) in pairs.prefix(polled).enumerated() {
                pair.handle(client: fds[2 + index * 2].revents, upstream: fds[3 + index * 2].revents)
            }
            pairs.removeAll { pair in
                guard pair.isFinished else { return false }
                pair.close()
                return true
            }
        }
    }

    private func acceptClient() -> Int32? {
        let fd = replica_accept_nonblocking(listener.rawValue)
        return fd >= 0 ? fd : nil
    }

    /// A UNIX socket left by a proxy that died is replaced; a live one, or any other file, is not.
    static func removeStaleSocket(_ path: String) throws(ReplicaError) {
        guard let status = try? FileStatus.of(path) else { return }
        guard status.kind == .socket else {
            throw ReplicaError("bind", [path], errno: .EEXIST, hint: "\(status.kind) is there, not a socket; move it aside")
        }
        let endpoint = ProxyEndpoint(.unix(path))
        let probe = try endpoint.makeSocket()
        // Non-blocking: a live listener accepts at once or is busy (EAGAIN); a dead one refuses.
        let live = endpoint.withSockaddr { Glibc.connect(probe.rawValue, $0, $1) } == 0 || Errno.current == .EAGAIN
        if live { throw ReplicaError("bind", [path], errno: .EADDRINUSE, hint: "a live socket is there; another proxy listens on it") }
        unlink(path)
    }
}

/// One client and its upstream connection, with a bounded buffer each way.
final class Connection {
    let client: Int32
    let upstream: Int32
    var connecting = true
    var toUpstream = Buffer(), toClient = Buffer()
    var clientDone = false, upstreamDone = false     // EOF read from that side
    var clientShut = false, upstreamShut = false     // EOF passed on to that side
    var failed = false

    init(client: Int32, to endpoint: ProxyEndpoint) throws(ReplicaError) {
        self.client = client
        let socket = try endpoint.makeSocket()
        let fd = socket.release()
        upstream = fd
        if endpoint.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 {
            connecting = false
        } else if Errno.current != Errno(rawValue: EINPROGRESS) {
            Glibc.close(fd)
            Glibc.close(client)
            throw ReplicaError.current("connect", [endpoint.description])
        }
    }

    func pollRequests() -> [pollfd] {
        var clientEvents: Int16 = 0, upstreamEvents: Int16 = 0
        if !clientDone && toUpstream.hasRoom && !connecting { clientEvents |= Int16(POLLIN) }
        if !toClient.isEmpty { clientEvents |= Int16(POLLOUT) }
        if connecting { upstreamEvents |= Int16(POLLOUT) } else {
            if !upstreamDone && toClient.hasRoom { upstreamEvents |= Int16(POLLIN) }
            if !toUpstream.isEmpty { upstreamEvents |= Int16(POLLOUT) }
        }
        return [pollfd(fd: client, events: clientEvents, revents: 0), pollfd(fd: upstream, events: upstreamEvents, revents: 0)]
    }

    func handle(client clientEvents: Int16, upstream upstreamEvents: Int16) {
        if connecting {
            guard upstreamEvents != 0 else { return }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(upstream, SOL_SOCKET, SO_ERROR, &error, &length)
            if error != 0 { failed = true; return }
            connecting = false
        }
        if clientEvents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !clientDone {
            switch toUpstream.fill(from: client) {
            case .eof: clientDone = true
            case .error: failed = true
            case .some: break
            }
        }
        if upstreamEvents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !upstreamDone {
            switch toClient.fill(from: upstream) {
            case .eof: upstreamDone = true
            case .error: failed = true
            case .some: break
            }
        }
        if !toUpstream.isEmpty && !toUpstream.drain(into: upstream) { failed = true }
        if !toClient.isEmpty && !toClient.drain(into: client) { failed = true }
        if clientDone && toUpstream.isEmpty && !upstreamShut { shutdown(upstream, Int32(SHUT_WR)); upstreamShut = true }
        if upstreamDone && toClient.isEmpty && !clientShut { shutdown(client, Int32(SHUT_WR)); clientShut = true }
    }

    var isFinished: Bool { failed || (clientShut && upstreamShut) }

    func close() {
        Glibc.close(client)
        Glibc.close(upstream)
    }
}

/// A fixed-size byte buffer, filled by `read` and drained by `write`.
struct Buffer {
    private var bytes = [UInt8](repeating: 0, count: Proxy.bufferSize)
    private var start = 0, end = 0

    var isEmpty: Bool { start == end }
    var hasRoom: Bool { end < bytes.count || start > 0 }

    enum Fill { case some, eof, error }

    mutating func fill(from fd: Int32) -> Fill {
        if end == bytes.count && start > 0 {  // compact
            bytes.withUnsafeMutableBufferPointer { buffer in
                _ = memmove(buffer.baseAddress!, buffer.baseAddress! + start, end - start)
            }
            (start, end) = (0, end - start)
        }
        guard end < bytes.count else { return .some }
        let n = bytes.withUnsafeMutableBufferPointer { read(fd, $0.baseAddress! + end, $0.count - end) }
        if n > 0 { end += n; return .some }
        if n == 0 { return .eof }
        return Errno.current == .EAGAIN || Errno.current == .EINTR ? .some : .error
    }

    /// Writes what it can; false on a real error.
    mutating func drain(into fd: Int32) -> Bool {
        let n = bytes.withUnsafeBufferPointer { write(fd, $0.baseAddress! + start, end - start) }
        if n > 0 {
            start += n
            if start == end { (start, end) = (0, 0) }
            return true
        }
        return n == 0 || Errno.current == .EAGAIN || Errno.current == .EINTR
    }
}
