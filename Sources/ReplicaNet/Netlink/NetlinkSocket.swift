import CMnl
import Glibc
import ReplicaKit

/// An rtnetlink socket owned by one value (`mnl_socket_open(NETLINK_ROUTE)` + `mnl_socket_bind`),
/// closed when the value goes away. It talks to the network namespace of the thread that opened it.
public struct NetlinkSocket: ~Copyable {
    private let socket: OpaquePointer
    /// The port id the kernel assigned (`mnl_socket_get_portid`).
    public let portID: UInt32
    private var sequence: UInt32

    /// Opens and binds a route netlink socket.
    public init() throws(NetError) {
        guard let socket = mnl_socket_open(NETLINK_ROUTE) else { throw NetError("mnl_socket_open", errno: .current) }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let errno = Errno.current
            mnl_socket_close(socket)
            throw NetError("mnl_socket_bind", errno: errno)
        }
        self.socket = socket
        portID = mnl_socket_get_portid(socket)
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit { mnl_socket_close(socket) }

    /// The names of every link in this namespace: `ip -o link show | cut -d: -f2`
    /// (an `RTM_GETLINK` dump).
    public mutating func linkNames() throws(NetError) -> [String] {
        var buffer = [UInt8](repeating: 0, count: 32768)
        sequence &+= 1
        let seq = sequence
        let length: Int = buffer.withUnsafeMutableBytes { raw in
            let header = mnl_nlmsg_put_header(raw.baseAddress)!
            header.pointee.nlmsg_type = UInt16(RTM_GETLINK)
            header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
            header.pointee.nlmsg_seq = seq
            let info = mnl_nlmsg_put_extra_header(header, MemoryLayout<ifinfomsg>.size)!
                .assumingMemoryBound(to: ifinfomsg.self)
            info.pointee.ifi_family = UInt8(AF_UNSPEC)
            return Int(header.pointee.nlmsg_len)
        }
        let sent = buffer.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, length) }
        guard sent >= 0 else { throw NetError("sendto(RTM_GETLINK)", errno: .current) }
        let collector = NameCollector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        while true {
            let received = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) }
            guard received >= 0 else { throw NetError("recvfrom(RTM_GETLINK)", errno: .current) }
            let status = buffer.withUnsafeBytes {
                mnl_cb_run($0.baseAddress, received, seq, portID, { header, data in
                    let collector = Unmanaged<NameCollector>.fromOpaque(data!).takeUnretainedValue()
                    return mnl_attr_parse(header, UInt32(MemoryLayout<ifinfomsg>.size), { attribute, data in
                        if mnl_attr_get_type(attribute) == IFLA_IFNAME, let name = mnl_attr_get_str(attribute) {
                            Unmanaged<NameCollector>.fromOpaque(data!).takeUnretainedValue().names.append(String(cString: name))
                        }
                        return MNL_CB_OK
                    }, Unmanaged.passUnretained(collector).toOpaque())
                }, context)
            }
            if status < 0 { throw NetError("RTM_GETLINK", errno: .current) }
            if status == MNL_CB_STOP { return collector.names }
        }
    }

    /// Gathers names during one dump on the calling thread only; never shared.
    private final class NameCollector {
        var names: [String] = []
    }
}
