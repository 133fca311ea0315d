import CReplicaShim
import Glibc
import ReplicaKit

/// A connection to a running QEMU's monitor, the QEMU Machine Protocol: JSON lines over the UNIX
/// socket QEMU listens on (`-qmp unix:PATH,server=on,wait=off`). What `socat - UNIX:PATH` and
/// typing `{"execute": …}` does.
struct QMP: ~Copyable {
    let socket: OwnedFD
    let path: String
    var pending: [UInt8] = []

    /// Connects, reads QEMU's greeting and leaves capabilities negotiation (`qmp_capabilities`),
    /// so commands may follow; fails after `timeout`.
    static func connect(_ path: String, timeout: Duration = .seconds(5)) throws(ReplicaError) -> QMP {
        let connected = OwnedFD(adopting: try syscall("socket", path) {
            Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        _ = try syscall("connect", path) { replica_connect_unix(connected.rawValue, path) }
        var monitor = QMP(socket: connected, path: path)
        let deadline = ContinuousClock.now + timeout
        guard try monitor.line(until: deadline).contains("\"QMP\"") else {
            throw ReplicaError("qmp", [path], errno: .EPROTO, hint: "not a QEMU monitor socket")
        }
        try monitor.execute("qmp_capabilities", until: deadline)
        return monitor
    }

    /// Runs `command` (`{"execute": "system_powerdown"}`) and returns its reply line, events before
    /// it skipped; an `error` reply is thrown with QEMU's description.
    @discardableResult
    mutating func execute(_ command: String, until deadline: ContinuousClock.Instant) throws(ReplicaError) -> String {
        try socket.writeAll(Array("{\"execute\": \"\(command)\"}\n".utf8), name: path)
        while true {
            let reply = try line(until: deadline)
            if reply.hasPrefix("{\"return\"") { return reply }
            if reply.hasPrefix("{\"error\"") { throw ReplicaError("qmp \(command)", [path], errno: .EIO, detail: reply) }
        }
    }

    /// Reads lines until an event named `event` (`SHUTDOWN`) arrives; false when the deadline
    /// passes or QEMU closes the socket first.
    mutating func await(event: String, until deadline: ContinuousClock.Instant) -> Bool {
        while let line = try? line(until: deadline) {
            if line.contains("\"event\": \"\(event)\"") { return true }
        }
        return false
    }

    /// The next line QEMU sends, waiting until `deadline`.
    mutating func line(until deadline: ContinuousClock.Instant) throws(ReplicaError) -> String {
        while true {
            if let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeSubrange(...end)
                return line
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw ReplicaError("qmp", [path], errno: .ETIMEDOUT, hint: "QEMU did not answer in time") }
            var poll = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000) + 1
            guard Glibc.poll(&poll, 1, milliseconds) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { read(socket.rawValue, $0.baseAddress, $0.count) }
            if count < 0 && Errno.current == .EINTR { continue }
            guard count > 0 else { throw ReplicaError("qmp", [path], errno: .ECONNRESET, hint: "QEMU closed its monitor") }
            pending += buffer[..<count]
        }
    }
}
