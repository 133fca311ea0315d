import CReplicaShim
import Glibc

/// A connection to a D-Bus peer over a UNIX socket, speaking the protocol itself (what sd-bus does
/// for `systemctl`): `AUTH EXTERNAL` with this process's uid, then method calls, answered in
/// order of their serials. Calls can be sent together and their replies read after
/// (`call(_:)` with several), so asking PID 1 for many properties costs one round trip.
public final class BusConnection {
    /// One method call to send.
    struct Call {
        var path: String
        var interface: String
        var member: String
        var signature: String = ""
        var arguments: (inout BusWriter) -> Void = { _ in }

        /// `org.freedesktop.DBus.Properties.Get` of property `name` of `interface` on object `path`.
        static func property(_ name: String, of interface: String, at path: String) -> Call {
            Call(path: path, interface: "org.freedesktop.DBus.Properties", member: "Get", signature: "ss") { body in
                body.string(interface)
                body.string(name)
            }
        }
    }

    /// A call's answer: its values, or the error the peer replied with (its name and message).
    enum Reply {
        case values([BusValue])
        case error(name: String, message: String)

        /// The values; an error reply thrown as `operation` on `objects`, with the errno sd-bus
        /// gives its name and the peer's message before `hint`.
        func values(_ operation: String, _ objects: [String], hint: String) throws(ReplicaError) -> [BusValue] {
            switch self {
            case .values(let values): return values
            case .error(let name, let message):
                throw ReplicaError(operation, objects, errno: BusConnection.errno(name), hint: message.isEmpty ? hint : "\(message); \(hint)")
            }
        }
    }

    private let socket: OwnedFD
    private let path: String
    private let destination: String?
    private var opened = false
    private var serial: UInt32 = 0
    private var received: [UInt8] = []

    /// PID 1's private socket, as `systemctl` connects when run as root: no bus daemon between
    /// and no `Hello`.
    static let systemdPrivateSocket = "/run/systemd/private"
    /// The system bus's socket, as the D-Bus specification fixes it.
    static let systemBusSocket = "/run/dbus/system_bus_socket"

    /// The two ways to the service manager.
    public enum Route: Sendable {
        /// PID 1's own socket, `/run/systemd/private`: root only, no bus daemon between, and no
        /// `Hello` (what `systemctl` uses as root). PID 1 sets every such connection up itself,
        /// about 1.4 ms of its time on a small machine.
        case privateSocket
        /// The system bus, `/run/dbus/system_bus_socket` (never another address from the
        /// environment: a unit's `Environment=` must not choose who answers for PID 1), through
        /// dbus-daemon, which PID 1 is connected to already.
        case systemBus
    }

    /// A connection to the service manager: by default its private socket for root where there
    /// is one (never waiting on dbus-daemon, which may be started after the caller), else the
    /// system bus; calls addressed to `org.freedesktop.systemd1`.
    public static func systemd(_ route: Route? = nil) throws(ReplicaError) -> BusConnection {
        let chosen = route ?? (geteuid() == 0 ? .privateSocket : .systemBus)
        if case .privateSocket = chosen, access(systemdPrivateSocket, F_OK) == 0 {
            return try BusConnection(path: systemdPrivateSocket, destination: nil)
        }
        return try BusConnection(path: systemBusSocket, destination: "org.freedesktop.systemd1")
    }

    /// Whether this connection goes through a bus daemon (`Route.systemBus`).
    var throughBusDaemon: Bool { destination != nil }

    /// Connects to the socket at `path` and authenticates; with a `destination`, the peer is a
    /// bus daemon: `Hello` is sent first and every call is addressed to `destination`. The
    /// authentication (and `Hello`) go out at once, as sd-bus sends them, and their answers are
    /// read later (`send`, `replies(to:)`): the peer sets the connection up while the caller
    /// prepares its calls. Replies not come within 25 s (sd-bus's default) fail with ETIMEDOUT.
    init(path: String, destination: String?) throws(ReplicaError) {
        socket = OwnedFD(adopting: try syscall("socket", path) {
            Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        var timeout = timeval(tv_sec: 25, tv_usec: 0)
        _ = setsockopt(socket.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(socket.rawValue, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let fd = socket.rawValue
        _ = try syscall("connect", path, hint: Self.hint) { replica_connect_unix(fd, path) }
        (self.path, self.destination) = (path, destination)
        let uid = String(geteuid()).utf8.map { String($0, radix: 16) }.joined()
        var opening = Array("\0AUTH EXTERNAL \(uid)\r\nBEGIN\r\n".utf8)
        if destination != nil {
            serial = 1
            opening += BusMessage.methodCall(serial: serial, destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                             interface: "org.freedesktop.DBus", member: "Hello")
        }
        try write(opening, path)
    }

    private static let hint = "is systemd running, with its D-Bus socket?"

    /// Reads the answers to the opening: `OK GUID` to the authentication, then `Hello`'s reply.
    /// With a `deadline`, the peer must have begun to answer by then (ETIMEDOUT otherwise).
    private func awaitOpening(by deadline: ContinuousClock.Instant?) throws(ReplicaError) {
        guard !opened else { return }
        while !received.contains(UInt8(ascii: "\n")) {
            if let deadline, received.isEmpty {
                let left = (deadline - .now).components
                let milliseconds = Int32(clamping: max(0, left.seconds * 1000 + left.attoseconds / 1_000_000_000_000_000))
                var descriptor = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, milliseconds) > 0 else {
                    throw ReplicaError("D-Bus AUTH EXTERNAL", [path], errno: .ETIMEDOUT, hint: "nothing answers on the socket yet")
                }
            }
            try receive(path)
        }
        let line = received.prefix { $0 != UInt8(ascii: "\n") }
        received.removeFirst(line.count + 1)
        guard line.starts(with: "OK ".utf8) else {
            throw ReplicaError("D-Bus AUTH EXTERNAL", [path], errno: .EACCES, detail: String(decoding: line, as: UTF8.self), hint: Self.hint)
        }
        opened = true
        if destination != nil, case .error(let name, let message) = try replies(from: 1, count: 1, path)[0] {
            throw ReplicaError("D-Bus Hello", [path], errno: Self.errno(name), detail: message, hint: Self.hint)
        }
    }

    /// Calls sent and not yet answered: their serials, `first` and the `count` after it.
    struct Sent {
        var first: UInt32
        var count: Int
        var what: String
    }

    /// Sends every call at once, without waiting for an answer (read them with `replies(to:)`).
    /// A bus daemon takes calls right behind the authentication, as the specification allows;
    /// PID 1's private socket (an sd-bus server) gets them only once it has said `OK`: measured
    /// with systemd 252, a call that came in with the authentication may never be read.
    func send(_ calls: [Call]) throws(ReplicaError) -> Sent {
        if !throughBusDaemon { try awaitOpening(by: nil) }
        var message: [UInt8] = []
        let first = serial &+ 1
        for call in calls {
            serial &+= 1
            message += BusMessage.methodCall(serial: serial, destination: destination, path: call.path, interface: call.interface,
                                             member: call.member, signature: call.signature, call.arguments)
        }
        let what = calls.first?.member ?? path
        try write(message, what)
        return Sent(first: first, count: calls.count, what: what)
    }

    /// Reads until each call `sent` is answered; the replies in the calls' order. Signals and
    /// replies to other calls are skipped. `deadline`: see `awaitOpening(by:)`.
    func replies(to sent: Sent, openedBy deadline: ContinuousClock.Instant? = nil) throws(ReplicaError) -> [Reply] {
        try awaitOpening(by: deadline)
        return try replies(from: sent.first, count: sent.count, sent.what)
    }

    /// Sends every call at once, then reads until each is answered (`send`, then `replies(to:)`).
    func call(_ calls: [Call]) throws(ReplicaError) -> [Reply] {
        try replies(to: try send(calls))
    }

    /// The replies to the `count` calls from serial `first` on, in order.
    private func replies(from first: UInt32, count: Int, _ what: String) throws(ReplicaError) -> [Reply] {
        var replies = [Reply?](repeating: nil, count: count)
        var answered = 0
        while answered < count {
            let reply = try next(what)
            guard reply.kind == .methodReturn || reply.kind == .error, let to = reply.replySerial,
                  to &- first < UInt32(count), replies[Int(to &- first)] == nil else { continue }
            if reply.kind == .error {
                let message = reply.body.first.flatMap { if case .string(let text) = $0 { text } else { nil } } ?? ""
                replies[Int(to &- first)] = .error(name: reply.errorName ?? "", message: message)
            } else {
                replies[Int(to &- first)] = .values(reply.body)
            }
            answered += 1
        }
        return replies.map { $0! }
    }

    /// The errno sd-bus gives an error reply's name: `System.Error.ENOENT` as named, the
    /// common `org.freedesktop.DBus.Error.*` as sd-bus maps them, EIO otherwise.
    static func errno(_ name: String) -> Errno {
        if name.hasPrefix("System.Error."), let errno = Errno.named(String(name.dropFirst("System.Error.".count))) { return errno }
        switch name {
        case "org.freedesktop.DBus.Error.AccessDenied", "org.freedesktop.DBus.Error.AuthFailed",
             "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": return .EACCES
        case "org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.InvalidSignature": return .EINVAL
        case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout", "org.freedesktop.DBus.Error.TimedOut": return .ETIMEDOUT
        case "org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
             "org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod",
             "org.freedesktop.DBus.Error.UnknownInterface", "org.freedesktop.DBus.Error.UnknownProperty",
             "org.freedesktop.DBus.Error.FileNotFound": return .ENOENT
        case "org.freedesktop.DBus.Error.PropertyReadOnly": return .EPERM
        case "org.freedesktop.DBus.Error.NoMemory": return .ENOMEM
        default: return .EIO
        }
    }

    /// The next whole message from the peer.
    private func next(_ what: String) throws(ReplicaError) -> BusMessage {
        while true {
            if received.count >= 16 {
                guard let size = BusMessage.size(received.prefix(16)) else { throw BusReader.malformed("header") }
                if received.count >= size {
                    let bytes = Array(received.prefix(size))
                    received.removeFirst(size)
                    return try BusMessage(bytes)
                }
            }
            try receive(what)
        }
    }

    private func receive(_ what: String) throws(ReplicaError) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let fd = socket.rawValue
        let count = try syscall("recv", what, hint: "PID 1 did not answer") {
            buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
        }
        guard count > 0 else { throw ReplicaError("recv", [what], errno: .ECONNRESET, hint: "the D-Bus peer closed the connection") }
        received += buffer[..<count]
    }

    private func write(_ bytes: [UInt8], _ what: String) throws(ReplicaError) {
        var sent = 0
        let fd = socket.rawValue
        while sent < bytes.count {
            sent += try syscall("send", what) {
                bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            }
        }
    }
}
