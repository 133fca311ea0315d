import ReplicaKit

/// A service's network as a value: a named namespace, a veth pair whose host end is enslaved to a
/// bridge and whose other end is born inside the namespace, and the addresses and routes in there —
/// "netns svc-a, veth to bridge br-replica, 10.88.0.5/24, default via 10.88.0.1". It is printed,
/// compared and validated without privileges; `apply`, `teardown` and `check` act on the kernel.
public struct NetworkPlan: Equatable, Sendable {
    /// A route inside the namespace (`ip route add DESTINATION via GATEWAY`).
    public struct RouteSpec: Equatable, Sendable {
        /// Where it leads (`0.0.0.0/0` for the default route).
        public var destination: IPPrefix
        /// The next hop; nil for a route on the link.
        public var gateway: IPPrefix?
        /// A route to `destination` through `gateway`.
        public init(_ destination: IPPrefix, via gateway: IPPrefix?) { (self.destination, self.gateway) = (destination, gateway) }
    }

    /// Pinned as `/run/netns/NAME`.
    public var namespace: String
    /// The veth end on the host (default: `hostLinkName(for:)`).
    public var hostLink: String
    /// The veth end inside the namespace.
    public var innerLink = "eth0"
    /// The bridge the host end joins; made (with `bridgeAddress`, up) when missing, and then only
    /// removed again if applying fails. An existing bridge is used, never changed.
    public var bridge: String?
    /// The bridge's own address (the subnet's gateway), given to a bridge the plan makes.
    public var bridgeAddress: IPPrefix?
    /// The bridge's IPv6 address (`UniqueLocal.gateway`, `PREFIX::1/64`), given to a bridge the plan makes.
    public var bridgeAddress6: IPPrefix?
    /// Instead of a veth: a macvlan on this host interface (the external one), born inside the
    /// namespace as `innerLink`, so the service sits on that network itself. The parent is never
    /// changed; nothing is left on the host side.
    public var macvlanParent: String?
    /// The macvlan's mode (`bridge` by default, as `ip link` uses).
    public var macvlanMode: RouteRequest.MacvlanMode = .bridge
    /// The addresses inside the namespace, on `innerLink`.
    public var addresses: [IPPrefix] = []
    /// The routes inside the namespace.
    public var routes: [RouteSpec] = []
    /// The links' MTU; nil leaves the kernel's.
    public var mtu: UInt32?
    /// For a virtual machine: the addresses and routes are its guest's, which sets them itself, so
    /// none is set in the namespace; there `innerLink` is a port of a bridge of this name (`br0`),
    /// which the VM's tap joins when it starts (`TapDevice`). The namespace is then only the
    /// guest's wire to the host's bridge, and goes with everything in it.
    public var guestBridge: String?

    /// A plan for `namespace` whose host link is `hostLink` (default: derived from the namespace).
    public init(namespace: String, hostLink: String? = nil) {
        self.namespace = namespace
        self.hostLink = hostLink ?? Self.hostLinkName(for: namespace)
    }

    /// The host veth's name for a namespace, collision-free within 15 bytes (IFNAMSIZ): `rv-NAME`
    /// when NAME is at most 12 letters, digits, `_` or `-`; otherwise `rv-` and its first 5 such
    /// characters, `.` and 6 hex digits of a hash of the whole name (`rv-advlo.edb48e`). The two
    /// forms never meet (only the second has a `.`), and two names that share a cut prefix get
    /// different hashes.
    public static func hostLinkName(for namespace: String) -> String {
        let plain = { (c: Character) in c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-") }
        if namespace.utf8.count <= 12 && namespace.allSatisfy(plain) { return "rv-" + namespace }
        let hash = FNV1a.hash32(namespace)
        let digits = String(hash & 0xff_ffff, radix: 16)
        return "rv-" + String(namespace.filter(plain).prefix(5)) + "." + String(repeating: "0", count: 6 - digits.count) + digits
    }

    /// Refuses what cannot be applied, before anything is made: names (`LinkName`,
    /// `NamespaceName`), routes whose gateway is in no address's network.
    public func validate() throws(ReplicaError) {
        _ = try NamespaceName(namespace)
        for name in [hostLink, innerLink] + (bridge.map { [$0] } ?? []) + (guestBridge.map { [$0] } ?? []) { _ = try LinkName(name) }
        guard hostLink != bridge else {
            throw ReplicaError("network plan", [hostLink], errno: .EINVAL, hint: "the veth and the bridge need different names")
        }
        if let macvlanParent {
            _ = try LinkName(macvlanParent)
            guard bridge == nil else {
                throw ReplicaError("network plan", [macvlanParent, bridge!], errno: .EINVAL,
                               hint: "a macvlan on \(macvlanParent) and a bridge port are two ways in; give one")
            }
        }
        for route in routes {
            guard let gateway = route.gateway else { continue }
            guard gateway.family == route.destination.family, addresses.contains(where: { $0.contains(gateway) }) else {
                throw ReplicaError("network plan", ["\(route.destination) via \(gateway.addressText)"], errno: .EINVAL,
                               hint: "the gateway is not in the network of any address of \(innerLink)")
            }
        }
    }

    /// The plan for `--json` (snake_case keys, absent parts as null).
    public var json: JSON {
        .object([
            ("namespace", .string(namespace)),
            ("path", .string("\(NetworkNamespace.directory)/\(namespace)")),
            ("kind", .string(macvlanParent == nil ? "veth" : "macvlan")),
            ("host_link", macvlanParent == nil ? .string(hostLink) : .null),
            ("inner_link", .string(innerLink)),
            ("bridge", bridge.map(JSON.string) ?? .null),
            ("bridge_address", bridgeAddress.map { .string($0.description) } ?? .null),
            ("bridge_address6", bridgeAddress6.map { .string($0.description) } ?? .null),
            ("macvlan_parent", macvlanParent.map(JSON.string) ?? .null),
            ("macvlan_mode", macvlanParent == nil ? .null : .string("\(macvlanMode)")),
            ("addresses", .array(addresses.map { .string($0.description) })),
            ("routes", .array(routes.map { route in
                .object([("destination", .string(route.destination.description)),
                         ("gateway", route.gateway.map { .string($0.addressText) } ?? .null)])
            })),
            ("mtu", mtu.map { .int(Int64($0)) } ?? .null),
            ("guest_bridge", guestBridge.map(JSON.string) ?? .null),
        ])
    }
}
