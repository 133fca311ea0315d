import CMnl
import Glibc
import ReplicaKit

/// An rtnetlink socket owned by one value (`mnl_socket_open(NETLINK_ROUTE)` + `mnl_socket_bind`),
/// closed when the value goes away. It acts in the network namespace it was opened in — the
/// caller's, or a named one (`init(namespace:)`), for as long as it lives, whatever thread uses it.
/// Extended acks are on (`NETLINK_EXT_ACK`, `NETLINK_CAP_ACK`), so kernel errors carry their text.
public struct NetlinkSocket: ~Copyable {
    private let socket: OpaquePointer
    /// The port id the kernel assigned (`mnl_socket_get_portid`).
    public let portID: UInt32
    private var sequence: UInt32

    /// Opens and binds a route netlink socket in the calling thread's network namespace.
    public init() throws(ReplicaError) {
        let fd = Glibc.socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        guard fd >= 0 else { throw ReplicaError.current("socket(AF_NETLINK)") }
        try self.init(adopting: fd)
    }

    /// Opens the socket inside the network namespace pinned at `/run/netns/NAME` (`ip -n NAME`):
    /// made on a dedicated thread that joined it; the caller's thread never changes namespace.
    public init(namespace name: String) throws(ReplicaError) {
        let fd = try NetworkNamespace.socket(in: name, family: AF_NETLINK,
                                             type: Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), protocol: NETLINK_ROUTE)
        try self.init(adopting: fd.release())
    }

    private init(adopting fd: Int32) throws(ReplicaError) {
        do { try LibMnl.available() } catch { Glibc.close(fd); throw error }
        var on: Int32 = 1
        for option in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            _ = setsockopt(fd, SOL_NETLINK, option, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        guard let socket = LibMnl.socketFdopen(fd) else {
            Glibc.close(fd)
            throw ReplicaError.current("mnl_socket_fdopen")
        }
        guard LibMnl.socketBind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let errno = Errno.current
            _ = LibMnl.socketClose(socket)
            throw ReplicaError("mnl_socket_bind", errno: errno, reason: .init(errno, fromCall: true))
        }
        self.socket = socket
        portID = LibMnl.socketPortID(socket)
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit { _ = LibMnl.socketClose(socket) }

    /// Sends one request and waits for its answer: the data messages it returned (a `get` or a
    /// dump), or the kernel's error as a `ReplicaError` naming `operation` and `objects`.
    @discardableResult
    public mutating func perform(_ message: consuming NetlinkMessage, _ operation: String,
                                 _ objects: [String] = []) throws(ReplicaError) -> [NetlinkReply] {
        sequence &+= 1
        message.sequence = sequence
        let sent = LibMnl.socketSendto(socket, message.start, message.length)
        guard sent >= 0 else { throw ReplicaError.current(operation, objects) }
        var replies: [NetlinkReply] = []
        var buffer = [UInt8](repeating: 0, count: 32768)
        while true {
            let received = try receive(&buffer, operation, objects)
            for reply in NetlinkReply.split(buffer[0..<received]) where reply.sequence == sequence {
                switch reply.type {
                case Int(NLMSG_ERROR):
                    if let error = reply.error(operation, objects) { throw error }
                    return replies  // an ack: success
                case Int(NLMSG_DONE): return replies
                default:
                    replies.append(reply)
                    if reply.flags & Int(NLM_F_MULTI) == 0 { return replies }  // a single answer to a get
                }
            }
        }
    }

    /// Sends several requests in one `sendto` and collects each one's acknowledgement: the
    /// failures, by position (`ip -batch`, without the process per request). For teardown.
    public mutating func batch(_ messages: [BatchRequest]) throws(ReplicaError) -> [Int: ReplicaError] {
        // In chunks, so the acknowledgements of one never overflow the socket's receive buffer.
        let chunk = 64
        var failures: [Int: ReplicaError] = [:]
        for start in stride(from: 0, to: messages.count, by: chunk) {
            for (index, error) in try sendBatch(Array(messages[start..<min(start + chunk, messages.count)])) {
                failures[start + index] = error
            }
        }
        return failures
    }

    private mutating func sendBatch(_ messages: [BatchRequest]) throws(ReplicaError) -> [Int: ReplicaError] {
        var bytes: [UInt8] = []
        var positions: [UInt32: Int] = [:]
        for (index, request) in messages.enumerated() {
            sequence &+= 1
            positions[sequence] = index
            var encoded = request.bytes
            withUnsafeBytes(of: sequence) { encoded.replaceSubrange(8..<12, with: $0) }
            bytes += encoded
        }
        let sent = bytes.withUnsafeBytes { LibMnl.socketSendto(socket, $0.baseAddress, $0.count) }
        guard sent >= 0 else { throw ReplicaError.current("sendto(batch)") }
        var failures: [Int: ReplicaError] = [:]
        var pending = Set(positions.keys)
        var buffer = [UInt8](repeating: 0, count: 32768)
        while !pending.isEmpty {
            let received = try receive(&buffer, "batch", [])
            for reply in NetlinkReply.split(buffer[0..<received]) where reply.type == Int(NLMSG_ERROR) {
                guard let index = positions[reply.sequence], pending.remove(reply.sequence) != nil else { continue }
                if let error = reply.error(messages[index].operation, messages[index].objects) { failures[index] = error }
            }
        }
        return failures
    }

    private func receive(_ buffer: inout [UInt8], _ operation: String, _ objects: [String]) throws(ReplicaError) -> Int {
        let socket = self.socket
        while true {
            let received = buffer.withUnsafeMutableBytes { LibMnl.socketRecvfrom(socket, $0.baseAddress, $0.count) }
            if received >= 0 { return received }
            if Errno.current == .EINTR { continue }
            throw ReplicaError.current(operation, objects)
        }
    }
}

/// One request of a batch: its bytes and how to name it in an error.
public struct BatchRequest: Sendable {
    /// The encoded message.
    public var bytes: [UInt8]
    /// The operation an error names (`add veth`).
    public var operation: String
    /// The objects an error names.
    public var objects: [String]

    /// A request of `message` (copied), named `operation` on `objects` in errors.
    public init(_ message: borrowing NetlinkMessage, _ operation: String, _ objects: [String] = []) {
        (bytes, self.operation, self.objects) = (message.bytes, operation, objects)
    }
}

/// One message the kernel sent back, with its payload.
public struct NetlinkReply: Sendable {
    /// `nlmsg_type`.
    public var type: Int
    /// `nlmsg_flags` (`NLM_F_MULTI` …).
    public var flags: Int
    /// `nlmsg_seq` of the request it answers.
    public var sequence: UInt32
    /// What follows the 16-byte header.
    public var payload: [UInt8]

    static func split(_ bytes: ArraySlice<UInt8>) -> [NetlinkReply] {
        var replies: [NetlinkReply] = []
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= 16 {
            let length = Int(bytes.u32(at: offset))
            guard length >= 16, offset + length <= bytes.endIndex else { break }
            replies.append(NetlinkReply(type: Int(bytes.u16(at: offset + 4)), flags: Int(bytes.u16(at: offset + 6)),
                                        sequence: bytes.u32(at: offset + 8), payload: Array(bytes[(offset + 16)..<(offset + length)])))
            offset += (length + 3) & ~3
        }
        return replies
    }

    /// For an `NLMSG_ERROR`: nil when it is an ack (error 0), else the error with the extended ack
    /// message (`NLMSGERR_ATTR_MSG`) when the kernel sent one.
    func error(_ operation: String, _ objects: [String]) -> ReplicaError? {
        guard payload.count >= 4 else { return ReplicaError(operation, objects, errno: .EPROTO) }
        let code = Int32(bitPattern: payload[...].u32(at: 0))
        guard code != 0 else { return nil }
        var message: String?
        if flags & Int(NLM_F_ACK_TLVS) != 0 {
            // With NETLINK_CAP_ACK the echoed request is only its header: TLVs start after 4 + 16.
            let attributes = NetlinkAttributes(payload[20...])
            message = attributes.string(Int(NLMSGERR_ATTR_MSG.rawValue))
        }
        let errno = Errno(rawValue: -code)
        return ReplicaError(operation, objects, errno: errno, detail: message.map { "kernel says \"\($0)\"" },
                            reason: .init(errno, fromCall: true))
    }
}

/// The attributes (`struct nlattr` TLVs) of a message, by type; the last of each type wins.
public struct NetlinkAttributes: Sendable {
    /// Each attribute's payload by its type.
    public private(set) var values: [Int: [UInt8]] = [:]

    /// The attributes in `bytes` (aligned TLVs); a truncated one ends the list.
    public init(_ bytes: ArraySlice<UInt8>) {
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= 4 {
            let length = Int(bytes.u16(at: offset))
            guard length >= 4, offset + length <= bytes.endIndex else { break }
            let type = Int(bytes.u16(at: offset + 2)) & 0x3fff  // NLA_TYPE_MASK: without NLA_F_NESTED, NLA_F_NET_BYTEORDER
            values[type] = Array(bytes[(offset + 4)..<(offset + length)])
            offset += (length + 3) & ~3
        }
    }

    /// A string attribute, up to its NUL.
    public func string(_ type: Int) -> String? {
        values[type].map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// A 32-bit attribute in host byte order.
    public func u32(_ type: Int) -> UInt32? {
        guard let value = values[type], value.count >= 4 else { return nil }
        return value[...].u32(at: 0)
    }

    /// A nested attribute's own attributes.
    public func nested(_ type: Int) -> NetlinkAttributes? { values[type].map { NetlinkAttributes($0[...]) } }
}

extension ArraySlice<UInt8> {
    /// Host-order integers, as netlink carries them.
    func u32(at offset: Int) -> UInt32 {
        UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16 | UInt32(self[offset + 3]) << 24
    }
    func u16(at offset: Int) -> UInt16 { UInt16(self[offset]) | UInt16(self[offset + 1]) << 8 }
}
