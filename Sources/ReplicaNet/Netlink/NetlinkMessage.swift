import CMnl
import Glibc

/// One netlink message being built with libmnl (`mnl_nlmsg_put_header`, `mnl_attr_put_*`,
/// `mnl_attr_nest_*`) in a buffer it owns. Building needs no privileges and no socket, so each
/// request is tested against the bytes `ip` sends.
public struct NetlinkMessage: ~Copyable {
    /// Room for any request Replica sends (`MNL_SOCKET_BUFFER_SIZE` is 8 KiB).
    static let capacity = 4096
    private let buffer: UnsafeMutableRawPointer
    private let header: UnsafeMutablePointer<nlmsghdr>

    /// `type` is `RTM_NEWLINK` …; `flags` beyond `NLM_F_REQUEST`, which is always set.
    public init(type: Int32, flags: Int32 = 0, sequence: UInt32 = 0) {
        buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity, alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.capacity)
        header = LibMnl.putHeader(buffer)!
        header.pointee.nlmsg_type = UInt16(type)
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | flags)
        header.pointee.nlmsg_seq = sequence
    }

    deinit { buffer.deallocate() }

    /// `nlmsg_seq`: matched against the replies; set by the socket when the message is sent.
    public var sequence: UInt32 {
        get { header.pointee.nlmsg_seq }
        nonmutating set { header.pointee.nlmsg_seq = newValue }
    }

    /// `nlmsg_type` (`RTM_NEWLINK` …).
    public var type: UInt16 { header.pointee.nlmsg_type }

    /// The encoded message.
    public var bytes: [UInt8] {
        Array(UnsafeRawBufferPointer(start: buffer, count: Int(header.pointee.nlmsg_len)))
    }

    var length: Int { Int(header.pointee.nlmsg_len) }
    var start: UnsafeRawPointer { UnsafeRawPointer(buffer) }

    /// Appends a fixed family header (`struct ifinfomsg`, `ifaddrmsg`, `rtmsg`) —
    /// `mnl_nlmsg_put_extra_header` — also inside a nest, as a veth peer needs.
    public func put<Header>(_ value: Header) {
        let space = LibMnl.putExtraHeader(header, MemoryLayout<Header>.size)!
        space.assumingMemoryBound(to: Header.self).pointee = value
    }

    /// `mnl_attr_put_strz`: a NUL-terminated string attribute; `mnl_attr_put_str` without the NUL
    /// (`IFLA_INFO_KIND`, as `ip` sends it).
    public func put(_ type: Int32, string: String, terminated: Bool = true) {
        if terminated { LibMnl.attrPutStrz(header, UInt16(type), string) } else { LibMnl.attrPutStr(header, UInt16(type), string) }
    }
    /// `mnl_attr_put_u8`.
    public func put(_ type: Int32, u8 value: UInt8) { LibMnl.attrPutU8(header, UInt16(type), value) }
    /// `mnl_attr_put_u32`.
    public func put(_ type: Int32, u32 value: UInt32) { LibMnl.attrPutU32(header, UInt16(type), value) }
    /// `mnl_attr_put`: raw bytes (an address in network order).
    public func put(_ type: Int32, bytes: [UInt8]) {
        bytes.withUnsafeBytes { LibMnl.attrPut(header, UInt16(type), $0.count, $0.baseAddress) }
    }

    /// `mnl_attr_nest_start` … `mnl_attr_nest_end` around what `body` puts. Without libmnl's
    /// `NLA_F_NESTED` flag, as iproute2 sends these (the link attributes predate the flag).
    public func nest(_ type: Int32, _ body: () -> Void) {
        let nest = LibMnl.nestStart(header, UInt16(type))!
        nest.pointee.nla_type = UInt16(type)
        body()
        LibMnl.nestEnd(header, nest)
    }
}
