import ReplicaKit
import CMnl
import Glibc

/// A network interface as rtnetlink reports it (`ip -d link show`).
public struct Link: Equatable, Sendable {
    /// The interface index (`ifindex`).
    public var index: Int32
    /// The name (`IFLA_IFNAME`).
    public var name: String
    /// `veth`, `bridge`, `macvlan`, `dummy` … (`IFLA_INFO_KIND`); nil for physical and loopback.
    public var kind: String?
    /// Whether it is administratively up (`IFF_UP`).
    public var isUp: Bool
    /// Its MTU (`IFLA_MTU`).
    public var mtu: UInt32
    /// The bridge it is enslaved to (`IFLA_MASTER`).
    public var masterIndex: Int32?
    /// Its alias (`IFLA_IFALIAS`, `ip link set NAME alias TEXT`): `NetworkPlan.madeMark` on a
    /// bridge Replica made.
    public var alias: String?

    init?(_ reply: NetlinkReply) {
        guard reply.type == Int(RTM_NEWLINK), reply.payload.count >= MemoryLayout<ifinfomsg>.size else { return nil }
        let header = reply.payload.withUnsafeBytes { $0.loadUnaligned(as: ifinfomsg.self) }
        let attributes = NetlinkAttributes(reply.payload[MemoryLayout<ifinfomsg>.size...])
        index = header.ifi_index
        name = attributes.string(Int(IFLA_IFNAME)) ?? ""
        kind = attributes.nested(Int(IFLA_LINKINFO))?.string(Int(IFLA_INFO_KIND))
        isUp = header.ifi_flags & UInt32(IFF_UP) != 0
        mtu = attributes.u32(Int(IFLA_MTU)) ?? 0
        masterIndex = attributes.u32(Int(IFLA_MASTER)).map { Int32(bitPattern: $0) }
        alias = attributes.string(Int(IFLA_IFALIAS))
    }
}

/// An address on a link (`ip addr show`).
public struct LinkAddress: Equatable, Sendable {
    /// The index of the link it is on.
    public var index: Int32
    /// The address and its prefix length (`IFA_LOCAL`, else `IFA_ADDRESS`).
    public var prefix: IPPrefix

    init?(_ reply: NetlinkReply) {
        guard reply.type == Int(RTM_NEWADDR), reply.payload.count >= MemoryLayout<ifaddrmsg>.size else { return nil }
        let header = reply.payload.withUnsafeBytes { $0.loadUnaligned(as: ifaddrmsg.self) }
        let attributes = NetlinkAttributes(reply.payload[MemoryLayout<ifaddrmsg>.size...])
        guard let address = attributes.values[Int(IFA_LOCAL)] ?? attributes.values[Int(IFA_ADDRESS)] else { return nil }
        index = Int32(bitPattern: header.ifa_index)
        prefix = IPPrefix(address: address, length: Int(header.ifa_prefixlen))
    }
}

/// A route in the main table (`ip route show`).
public struct Route: Equatable, Sendable {
    /// Where it leads (`0.0.0.0/0` for the default route).
    public var destination: IPPrefix
    /// The next hop (`RTA_GATEWAY`), if any.
    public var gateway: IPPrefix?
    /// The outgoing link (`RTA_OIF`), if any.
    public var index: Int32?

    init?(_ reply: NetlinkReply) {
        guard reply.type == Int(RTM_NEWROUTE), reply.payload.count >= MemoryLayout<rtmsg>.size else { return nil }
        let header = reply.payload.withUnsafeBytes { $0.loadUnaligned(as: rtmsg.self) }
        guard header.rtm_table == UInt8(RT_TABLE_MAIN.rawValue) else { return nil }
        let attributes = NetlinkAttributes(reply.payload[MemoryLayout<rtmsg>.size...])
        let width = Int(header.rtm_family) == AF_INET ? 4 : 16
        destination = IPPrefix(address: attributes.values[Int(RTA_DST.rawValue)] ?? [UInt8](repeating: 0, count: width),
                               length: Int(header.rtm_dst_len))
        gateway = attributes.values[Int(RTA_GATEWAY.rawValue)].map { IPPrefix(address: $0, length: $0.count * 8) }
        index = attributes.u32(Int(RTA_OIF.rawValue)).map { Int32(bitPattern: $0) }
    }
}

extension NetlinkSocket {
    /// `ip link show NAME`; nil when there is no such link.
    public mutating func link(named name: String) throws(ReplicaError) -> Link? {
        _ = try LinkName(name)
        do throws(ReplicaError) {
            return try perform(RouteRequest.getLink(named: name), "get link", [name]).compactMap(Link.init).first
        } catch where error.errno == .ENODEV {
            return nil
        }
    }

    /// `ip link show`: every link in this namespace.
    public mutating func links() throws(ReplicaError) -> [Link] {
        try perform(RouteRequest.getLink(), "list links").compactMap(Link.init)
    }

    /// The names of every link in this namespace (`ip -o link show | cut -d: -f2`).
    public mutating func linkNames() throws(ReplicaError) -> [String] { try links().map(\.name) }

    /// `ip addr show`: every address in this namespace.
    public mutating func addresses() throws(ReplicaError) -> [LinkAddress] {
        try perform(RouteRequest.getAddresses(), "list addresses").compactMap(LinkAddress.init)
    }

    /// `ip route show` and `ip -6 route show`: the main table.
    public mutating func routes() throws(ReplicaError) -> [Route] {
        try (perform(RouteRequest.getRoutes(family: AF_INET), "list routes")
            + perform(RouteRequest.getRoutes(family: AF_INET6), "list routes")).compactMap(Route.init)
    }
}
