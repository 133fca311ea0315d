import CMnl
import Glibc

/// The rtnetlink requests Replica sends, each built as `ip` builds it (the tests compare the bytes).
/// Every request that changes something asks for an acknowledgement (`NLM_F_ACK`), so a kernel
/// error — with its extended ack message — comes back to the caller.
public enum RouteRequest {
    static let create = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK

    static func linkHeader(index: Int32 = 0, flags: UInt32 = 0, change: UInt32 = 0) -> ifinfomsg {
        var header = ifinfomsg()
        header.ifi_family = UInt8(AF_UNSPEC)
        header.ifi_index = index
        header.ifi_flags = flags
        header.ifi_change = change
        return header
    }

    /// `ip link add NAME type veth peer name PEER netns NETNS`: the peer is born inside the
    /// namespace `namespaceFD` refers to, never created on the host and moved.
    public static func addVeth(_ name: String, peer: String, peerNamespaceFD: Int32?) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWLINK), flags: create)
        message.put(linkHeader())
        message.put(Int32(IFLA_IFNAME), string: name)
        message.nest(Int32(IFLA_LINKINFO)) {
            message.put(Int32(IFLA_INFO_KIND), string: "veth", terminated: false)
            message.nest(Int32(IFLA_INFO_DATA)) {
                message.nest(Int32(VETH_INFO_PEER)) {
                    message.put(linkHeader())
                    if let peerNamespaceFD { message.put(Int32(IFLA_NET_NS_FD), u32: UInt32(bitPattern: peerNamespaceFD)) }
                    message.put(Int32(IFLA_IFNAME), string: peer)
                }
            }
        }
        return message
    }

    /// `ip link add NAME type bridge`.
    public static func addBridge(_ name: String) -> NetlinkMessage {
        addLink(name, kind: "bridge")
    }

    /// `ip link add NAME type dummy`.
    public static func addDummy(_ name: String) -> NetlinkMessage {
        addLink(name, kind: "dummy")
    }

    static func addLink(_ name: String, kind: String) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWLINK), flags: create)
        message.put(linkHeader())
        message.put(Int32(IFLA_IFNAME), string: name)
        message.nest(Int32(IFLA_LINKINFO)) { message.put(Int32(IFLA_INFO_KIND), string: kind, terminated: false) }
        return message
    }

    /// The modes of a macvlan (`MACVLAN_MODE_*`).
    public enum MacvlanMode: UInt32, Sendable, CaseIterable {
        /// No traffic between macvlans of the same parent.
        case `private` = 1
        /// Traffic between them goes out to the switch and back (802.1Qbg).
        case vepa = 2
        /// They talk to each other directly (the default).
        case bridge = 4
        /// One macvlan takes the parent over.
        case passthru = 8
        /// Only frames from listed source MACs.
        case source = 16
    }

    /// `ip link add NAME link PARENT type macvlan mode MODE`, optionally born in a namespace.
    public static func addMacvlan(_ name: String, parentIndex: Int32, mode: MacvlanMode, namespaceFD: Int32? = nil) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWLINK), flags: create)
        message.put(linkHeader())
        message.put(Int32(IFLA_LINK), u32: UInt32(parentIndex))
        message.put(Int32(IFLA_IFNAME), string: name)
        if let namespaceFD { message.put(Int32(IFLA_NET_NS_FD), u32: UInt32(bitPattern: namespaceFD)) }
        message.nest(Int32(IFLA_LINKINFO)) {
            message.put(Int32(IFLA_INFO_KIND), string: "macvlan", terminated: false)
            message.nest(Int32(IFLA_INFO_DATA)) { message.put(Int32(IFLA_MACVLAN_MODE), u32: mode.rawValue) }
        }
        return message
    }

    /// `ip link set dev INDEX [up|down] [mtu N] [master M | nomaster] [addrgenmode none]` in one
    /// message; only what is given changes. `noIPv6LinkLocal` (`addrgenmode none`) is for bridge
    /// ports, which carry no addresses: no link-local address to make now or tear down later.
    public static func setLink(index: Int32, up: Bool? = nil, mtu: UInt32? = nil, master: Int32? = nil,
                               noIPv6LinkLocal: Bool = false, alias: String? = nil, address: [UInt8]? = nil) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWLINK), flags: NLM_F_ACK)
        let flag = UInt32(IFF_UP)
        message.put(linkHeader(index: index, flags: up == true ? flag : 0, change: up == nil ? 0 : flag))
        if let mtu { message.put(Int32(IFLA_MTU), u32: mtu) }
        if let alias { message.put(Int32(IFLA_IFALIAS), string: alias) }
        if let address { message.put(Int32(IFLA_ADDRESS), bytes: address) }
        if let master { message.put(Int32(IFLA_MASTER), u32: UInt32(master)) }
        if noIPv6LinkLocal {
            message.nest(Int32(IFLA_AF_SPEC)) {
                message.nest(AF_INET6) { message.put(Int32(IFLA_INET6_ADDR_GEN_MODE), u8: UInt8(IN6_ADDR_GEN_MODE_NONE.rawValue)) }
            }
        }
        return message
    }

    /// `ip link del dev INDEX`.
    public static func deleteLink(index: Int32) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_DELLINK), flags: NLM_F_ACK)
        message.put(linkHeader(index: index))
        return message
    }

    /// `ip link del NAME`, by name, without looking the index up first (teardown batches these).
    public static func deleteLink(named name: String) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_DELLINK), flags: NLM_F_ACK)
        message.put(linkHeader())
        message.put(Int32(IFLA_IFNAME), string: name)
        return message
    }

    /// `ip link set NAME group GROUP`.
    public static func setGroup(named name: String, group: UInt32) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWLINK), flags: NLM_F_ACK)
        message.put(linkHeader())
        message.put(Int32(IFLA_IFNAME), string: name)
        message.put(Int32(IFLA_GROUP), u32: group)
        return message
    }

    /// `ip link del group GROUP`: every link of the group in one kernel transaction, which pays
    /// the unregister's RCU grace periods once for all of them.
    public static func deleteGroup(_ group: UInt32) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_DELLINK), flags: NLM_F_ACK)
        message.put(linkHeader())
        message.put(Int32(IFLA_GROUP), u32: group)
        return message
    }

    /// `ip link show NAME` (without `name`: every link, a dump).
    public static func getLink(named name: String? = nil) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_GETLINK), flags: name == nil ? NLM_F_DUMP : 0)
        message.put(linkHeader())
        message.put(Int32(IFLA_EXT_MASK), u32: UInt32(RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS))
        if let name { message.put(Int32(IFLA_IFNAME), string: name) }
        return message
    }

    /// `ip addr add PREFIX dev INDEX` (`nodad` for IPv6).
    public static func addAddress(_ prefix: IPPrefix, index: Int32) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWADDR), flags: create)
        var header = ifaddrmsg()
        header.ifa_family = UInt8(prefix.family)
        header.ifa_prefixlen = UInt8(prefix.length)
        header.ifa_index = UInt32(index)
        message.put(header)
        message.put(Int32(IFA_LOCAL), bytes: prefix.address)
        message.put(Int32(IFA_ADDRESS), bytes: prefix.address)
        // An address the plan derived is its own: usable at once, without duplicate address detection's second.
        if prefix.family == AF_INET6 { message.put(Int32(IFA_FLAGS), u32: UInt32(IFA_F_NODAD)) }
        return message
    }

    /// `ip addr show` (a dump of every address).
    public static func getAddresses() -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_GETADDR), flags: NLM_F_DUMP)
        message.put(ifaddrmsg())
        return message
    }

    /// `ip route add DESTINATION [via GATEWAY] dev INDEX` (`default` is 0.0.0.0/0 or ::/0).
    public static func addRoute(to destination: IPPrefix, via gateway: IPPrefix?, index: Int32) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_NEWROUTE), flags: create)
        var header = rtmsg()
        header.rtm_family = UInt8(destination.family)
        header.rtm_dst_len = UInt8(destination.length)
        header.rtm_table = UInt8(RT_TABLE_MAIN.rawValue)
        header.rtm_protocol = UInt8(RTPROT_BOOT)
        header.rtm_scope = UInt8(gateway == nil ? RT_SCOPE_LINK.rawValue : RT_SCOPE_UNIVERSE.rawValue)
        header.rtm_type = UInt8(RTN_UNICAST)
        message.put(header)
        if destination.length > 0 { message.put(Int32(RTA_DST.rawValue), bytes: destination.address) }
        if let gateway { message.put(Int32(RTA_GATEWAY.rawValue), bytes: gateway.address) }
        message.put(Int32(RTA_OIF.rawValue), u32: UInt32(index))
        return message
    }

    /// `ip route show table all` for one family (a dump).
    public static func getRoutes(family: Int32) -> NetlinkMessage {
        let message = NetlinkMessage(type: Int32(RTM_GETROUTE), flags: NLM_F_DUMP)
        var header = rtmsg()
        header.rtm_family = UInt8(family)
        message.put(header)
        return message
    }
}
