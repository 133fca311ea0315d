import CReplicaShim
import Dispatch
import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Synchronization
import Testing

/// The loopback proxy with real sockets in a real network namespace: traffic both ways, over
/// loopback TCP and UNIX sockets only, large transfers through the bounded buffers, clean shutdown.
@Suite(.requiresRoot) struct ProxyTests {
    /// A namespace with its loopback up.
    static func withNamespace<T>(_ body: (String) throws -> T) throws -> T {
        try withThrowawayNetworkNamespace { name in
            var inside = try NetlinkSocket(namespace: name)
            if let lo = try inside.link(named: "lo") { try inside.perform(RouteRequest.setLink(index: lo.index, up: true), "up", ["lo"]) }
            return try body(name)
        }
    }

    /// Sends `payload` through a new connection to `endpoint` (made in its namespace), half-closes,
    /// and returns everything read back.
    static func roundTrip(_ endpoint: ProxyEndpoint, _ payload: [UInt8]) throws -> [UInt8] {
        let socket = OwnedFD(adopting: try EchoServer.socket(for: endpoint))
        let fd = socket.rawValue
        guard endpoint.withSockaddr({ connect(fd, $0, $1) }) == 0 else { throw ReplicaError.current("connect", [endpoint.description]) }
        let writer = DispatchGroup()
        DispatchQueue.global().async(group: writer) {
            var offset = 0
            while offset < payload.count {
                let n = payload.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if n <= 0 { break }
                offset += n
            }
            shutdown(fd, Int32(SHUT_WR))
        }
        defer { writer.wait() }
        return try socket.readAll(name: endpoint.description)
    }

    /// Runs the proxy on this thread while `clients` runs on another; stops the proxy when it returns.
    static func serve<T: Sendable>(_ proxy: borrowing Proxy, _ clients: @escaping @Sendable () throws -> T) throws -> T {
        var stop: [Int32] = [0, 0]
        guard pipe(&stop) == 0 else { throw ReplicaError.current("pipe") }
        defer { close(stop[0]); close(stop[1]) }
        let outcome = Mutex<Result<T, any Error>?>(nil)
        let writeEnd = stop[1]
        DispatchQueue.global().async {
            let result = Result { try clients() }
            outcome.withLock { $0 = result }
            _ = write(writeEnd, "x", 1)
        }
        try proxy.run(until: stop[0])
        return try outcome.withLock { $0! }.get()
    }

    @Test func aHostUnixSocketReachesATCPPortInsideTheNamespace() throws {
        try Self.withNamespace { namespace in
            try withTemporaryDirectory { dir in
                let server = try EchoServer(ProxyEndpoint(.tcp(host: "127.0.0.1", port: 0), namespace: namespace))
                let proxy = try Proxy(listen: ProxyEndpoint(.unix("\(dir)/web.sock")),
                                      connect: ProxyEndpoint(.tcp(host: "127.0.0.1", port: server.port), namespace: namespace))
                var random = SeededRandom(seed: 7)
                let payload = (0..<(4 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
                let echoed = try Self.serve(proxy) { try Self.roundTrip(ProxyEndpoint(.unix("\(dir)/web.sock")), payload) }
                #expect(echoed.count == payload.count && echoed == payload, "4 MiB through 64 KiB buffers, both ways")
            }
        }
    }

    @Test func aTCPPortInsideTheNamespaceReachesAHostUnixSocket() throws {
        try Self.withNamespace { namespace in
            try withTemporaryDirectory { dir in
                let server = try EchoServer(ProxyEndpoint(.unix("\(dir)/host.sock")))
                let proxy = try Proxy(listen: ProxyEndpoint(.tcp(host: "127.0.0.1", port: 0), namespace: namespace),
                                      connect: ProxyEndpoint(.unix("\(dir)/host.sock")))
                let port = proxy.port!
                let echoed = try Self.serve(proxy) {
                    try Self.roundTrip(ProxyEndpoint(.tcp(host: "127.0.0.1", port: port), namespace: namespace), Array("from inside".utf8))
                }
                #expect(String(decoding: echoed, as: UTF8.self) == "from inside")
                _ = server
                // The port exists only inside the namespace, not on the host.
                let fd = socket(AF_INET, Int32(Glibc.SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                #expect(ProxyEndpoint(.tcp(host: "127.0.0.1", port: port)).withSockaddr { connect(fd, $0, $1) } == -1)
            }
        }
    }

    /// `replica-net proxy` as its own process, so its descriptors can be counted alone: after 40
    /// concurrent connections it holds what it held before them; SIGTERM stops it cleanly.
    @Test func manyConnectionsThenACleanShutdownLeaveNoDescriptorOrSocket() throws {
        try Self.withNamespace { namespace in
            try withTemporaryDirectory { dir in
                let server = try EchoServer(ProxyEndpoint(.tcp(host: "127.0.0.1", port: 0), namespace: namespace))
                let pid = try Command.spawn([try builtTool("replica-net"), "proxy", "--listen", "unix:\(dir)/web.sock",
                                             "--connect", "tcp:127.0.0.1:\(server.port)", "--connect-netns", namespace])
                var status: Int32 = 0
                defer { if waitpid(pid, &status, WNOHANG) == 0 { kill(pid, SIGKILL); waitpid(pid, &status, 0) } }
                for _ in 0..<200 where access("\(dir)/web.sock", F_OK) != 0 { usleep(10_000) }
                let fds = { (try? DirectoryEntries.names(in: OwnedFD.open("/proc/\(pid)/fd", O_RDONLY | O_DIRECTORY)).count) ?? -1 }
                let baseline = fds()
                let ok = Mutex<Int>(0)
                DispatchQueue.concurrentPerform(iterations: 40) { i in
                    let text = Array("connection \(i)".utf8)
                    if (try? Self.roundTrip(ProxyEndpoint(.unix("\(dir)/web.sock")), text)) == text { ok.withLock { $0 += 1 } }
                }
                #expect(ok.withLock { $0 } == 40)
                for _ in 0..<100 where fds() != baseline { usleep(10_000) }
                #expect(fds() == baseline, "the proxy's descriptors are back to \(baseline)")
                kill(pid, SIGTERM)
                waitpid(pid, &status, 0)
                #expect(status == 0, "SIGTERM is a clean stop (status \(status))")
                #expect(access("\(dir)/web.sock", F_OK) == -1, "the proxy removes its socket")
                _ = server
            }
        }
    }

    @Test func aStaleSocketIsReplacedButALiveOneOrAFileIsNot() throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/web.sock"
            do { _ = try Proxy(listen: ProxyEndpoint(.unix(path)), connect: ProxyEndpoint(.unix("\(dir)/x"))) }
            // Left behind as by a proxy killed with SIGKILL (deinit did not run): bind it by hand.
            let stale = try EchoServer.socket(for: ProxyEndpoint(.unix(path)))
            _ = ProxyEndpoint(.unix(path)).withSockaddr { bind(stale, $0, $1) }
            close(stale)
            _ = try Proxy(listen: ProxyEndpoint(.unix(path)), connect: ProxyEndpoint(.unix("\(dir)/x")))

            let live = try Proxy(listen: ProxyEndpoint(.unix(path)), connect: ProxyEndpoint(.unix("\(dir)/x")))
            let error = #expect(throws: ReplicaError.self) { _ = try Proxy(listen: ProxyEndpoint(.unix(path)), connect: ProxyEndpoint(.unix("\(dir)/x"))) }
            #expect(error?.errno == .EADDRINUSE)
            _ = live.port

            try OwnedFD.open("\(dir)/file", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("keep".utf8))
            let refused = #expect(throws: ReplicaError.self) { _ = try Proxy(listen: ProxyEndpoint(.unix("\(dir)/file")), connect: ProxyEndpoint(.unix("\(dir)/x"))) }
            #expect(refused?.errno == .EEXIST)
            #expect(try OwnedFD.open("\(dir)/file", O_RDONLY).readAll() == Array("keep".utf8))
        }
    }

    @Test(arguments: ["unix:relative", "tcp:127.0.0.1", "tcp:127.0.0.1:0", "tcp:localhost:80", "udp:1.2.3.4:5", "unix:"])
    func badEndpointsAreRefused(text: String) {
        #expect(throws: ReplicaError.self) { try ProxyEndpoint(parsing: text) }
    }

    @Test func endpointsParse() throws {
        #expect(try ProxyEndpoint(parsing: "tcp:[::1]:8080").address == .tcp(host: "::1", port: 8080))
        #expect(try ProxyEndpoint(parsing: "unix:/run/web.sock", namespace: "web").description == "unix:/run/web.sock in netns web")
    }
}

/// An echo server (each connection on its own thread) on an endpoint, possibly in a namespace.
final class EchoServer: Sendable {
    let fd: Int32
    let port: UInt16

    init(_ endpoint: ProxyEndpoint) throws {
        let fd = try Self.socket(for: endpoint)
        self.fd = fd
        guard endpoint.withSockaddr({ bind(fd, $0, $1) }) == 0, listen(fd, 64) == 0 else {
            throw ReplicaError.current("bind/listen", [endpoint.description])
        }
        var storage = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: storage.sin_port)
        DispatchQueue.global().async {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                DispatchQueue.global().async {
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let n = read(client, &buffer, buffer.count)
                        if n <= 0 { break }
                        var offset = 0
                        while offset < n {
                            let m = buffer.withUnsafeBytes { write(client, $0.baseAddress! + offset, n - offset) }
                            if m <= 0 { break }
                            offset += m
                        }
                    }
                    close(client)
                }
            }
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)) }
    deinit { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }

    /// A blocking stream socket made in the endpoint's namespace.
    static func socket(for endpoint: ProxyEndpoint) throws -> Int32 {
        let family: Int32 = if case .unix = endpoint.address { AF_UNIX } else { AF_INET }
        let type = Int32(Glibc.SOCK_STREAM.rawValue) | Int32(Glibc.SOCK_CLOEXEC.rawValue)
        guard let namespace = endpoint.namespace else { return Glibc.socket(family, type, 0) }
        return try NetworkNamespace.socket(in: namespace, family: family, type: type).release()
    }

    /// Connects to `address:port`, sends `text`, half-closes and returns what comes back; blocking
    /// and thread-free, so it can run in a child that joined a namespace.
    static func exchange(with address: String, port: UInt16, sending text: String) throws(ReplicaError) -> String {
        let socket = OwnedFD(adopting: Glibc.socket(AF_INET, Int32(Glibc.SOCK_STREAM.rawValue), 0))
        let fd = socket.rawValue
        guard ProxyEndpoint(.tcp(host: address, port: port)).withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            throw ReplicaError.current("connect", ["\(address):\(port)"])
        }
        try socket.writeAll(Array(text.utf8))
        shutdown(fd, Int32(SHUT_WR))
        return String(decoding: try socket.readAll(name: "\(address):\(port)"), as: UTF8.self)
    }
}
