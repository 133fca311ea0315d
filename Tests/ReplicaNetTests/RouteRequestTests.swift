import ReplicaKit
import ReplicaNet
import Testing

/// Each request against the bytes iproute2 sends for the same command (captured with
/// `strace -e trace=sendmsg -xx ip …`, sequence number set to 0). No privileges needed.
@Suite struct RouteRequestTests {
    /// A netlink header (length, type, flags; sequence and port 0) followed by `payload`.
    static func message(type: UInt16, flags: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(16 + payload.count)
        return bytes(length) + bytes(type) + bytes(flags) + [UInt8](repeating: 0, count: 8) + payload
    }
    static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    static func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }
    static let zeroLinkHeader = [UInt8](repeating: 0, count: 16)
    static func linkHeader(index: Int32, flags: UInt32 = 0, change: UInt32 = 0) -> [UInt8] {
        [0, 0] + bytes(UInt16(0)) + bytes(index) + bytes(flags) + bytes(change)
    }
    static let newLink: UInt16 = 16, create: UInt16 = 0x605, ack: UInt16 = 0x5

    @Test func aBridgeIsWhatIpLinkAddTypeBridgeSends() {
        let expected = Self.message(type: Self.newLink, flags: Self.create, Self.zeroLinkHeader
            + [9, 0, 3, 0] + Self.ascii("br-g") + [0, 0, 0, 0]
            + [16, 0, 18, 0, 10, 0, 1, 0] + Self.ascii("bridge") + [0, 0])
        #expect(RouteRequest.addBridge("br-g").bytes == expected)
    }

    @Test func aVethPeerIsBornInItsNamespace() {
        let peer = Self.zeroLinkHeader + [8, 0, 28, 0, 4, 0, 0, 0] + [9, 0, 3, 0] + Self.ascii("eth0") + [0, 0, 0, 0]
        let expected = Self.message(type: Self.newLink, flags: Self.create, Self.zeroLinkHeader
            + [9, 0, 3, 0] + Self.ascii("vh-g") + [0, 0, 0, 0]
            + [56, 0, 18, 0, 8, 0, 1, 0] + Self.ascii("veth")
            + [44, 0, 2, 0, 40, 0, 1, 0] + peer)
        #expect(RouteRequest.addVeth("vh-g", peer: "eth0", peerNamespaceFD: 4).bytes == expected)
        // Without a namespace, as `ip link add vh-g type veth peer name eth0`.
        let plain = Self.message(type: Self.newLink, flags: Self.create, Self.zeroLinkHeader
            + [9, 0, 3, 0] + Self.ascii("vh-g") + [0, 0, 0, 0]
            + [48, 0, 18, 0, 8, 0, 1, 0] + Self.ascii("veth")
            + [36, 0, 2, 0, 32, 0, 1, 0] + Self.zeroLinkHeader + [9, 0, 3, 0] + Self.ascii("eth0") + [0, 0, 0, 0])
        #expect(RouteRequest.addVeth("vh-g", peer: "eth0", peerNamespaceFD: nil).bytes == plain)
    }

    @Test func aMacvlanNamesItsParentAndMode() {
        let expected = Self.message(type: Self.newLink, flags: Self.create, Self.zeroLinkHeader
            + [8, 0, 5, 0, 1, 0, 0, 0]
            + [9, 0, 3, 0] + Self.ascii("mv-g") + [0, 0, 0, 0]
            + [28, 0, 18, 0, 11, 0, 1, 0] + Self.ascii("macvlan") + [0]
            + [12, 0, 2, 0, 8, 0, 1, 0, 4, 0, 0, 0])
        #expect(RouteRequest.addMacvlan("mv-g", parentIndex: 1, mode: .bridge).bytes == expected)
    }

    @Test func settingALinkIsOneAttributeEach() {
        #expect(RouteRequest.setLink(index: 7, up: true).bytes
                == Self.message(type: Self.newLink, flags: Self.ack, Self.linkHeader(index: 7, flags: 1, change: 1)))
        #expect(RouteRequest.setLink(index: 7, mtu: 1400).bytes
                == Self.message(type: Self.newLink, flags: Self.ack, Self.linkHeader(index: 7) + [8, 0, 4, 0] + Self.bytes(UInt32(1400))))
        #expect(RouteRequest.setLink(index: 7, master: 6).bytes
                == Self.message(type: Self.newLink, flags: Self.ack, Self.linkHeader(index: 7) + [8, 0, 10, 0, 6, 0, 0, 0]))
        #expect(RouteRequest.deleteLink(index: 7).bytes == Self.message(type: 17, flags: Self.ack, Self.linkHeader(index: 7)))
    }

    @Test func anAddressAndADefaultRoute() throws {
        #expect(RouteRequest.addAddress(try IPPrefix("10.88.0.5/24"), index: 3).bytes == Self.message(type: 20, flags: Self.create,
            [2, 24, 0, 0, 3, 0, 0, 0] + [8, 0, 2, 0, 10, 88, 0, 5] + [8, 0, 1, 0, 10, 88, 0, 5]))
        #expect(RouteRequest.addRoute(to: try IPPrefix("0.0.0.0/0"), via: try IPPrefix("10.88.0.1"), index: 2).bytes
                == Self.message(type: 24, flags: Self.create,
                                [2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0] + [8, 0, 5, 0, 10, 88, 0, 1] + [8, 0, 4, 0, 2, 0, 0, 0]))
    }

    @Test func aLookupByName() {
        #expect(RouteRequest.getLink(named: "dm-g").bytes == Self.message(type: 18, flags: 1, Self.zeroLinkHeader
            + [8, 0, 29, 0, 9, 0, 0, 0] + [9, 0, 3, 0] + Self.ascii("dm-g") + [0, 0, 0, 0]))
    }

    @Test(arguments: [
        ("", "empty"), ("sixteen-bytes-xx", "16 bytes"), (".", "not a name"), ("..", "not a name"),
        ("a/b", "\"/\""), ("a:1", "\":\""), ("a b", "spaces"), ("eth%d", "%"), ("tab\tx", "spaces"),
    ])
    func badInterfaceNamesAreRefusedBeforeAnyNetlinkCall(name: String, why: String) {
        let error = #expect(throws: ReplicaError.self) { _ = try LinkName(name) }
        #expect(error?.hint?.contains(why) == true, "\(String(describing: error))")
    }

    @Test func fifteenBytesIsAllowed() throws {
        _ = try LinkName("fifteen-bytes-x")
    }

    @Test func prefixesParseAndKnowTheirNetwork() throws {
        let prefix = try IPPrefix("10.88.0.5/24")
        #expect(prefix.network.description == "10.88.0.0/24")
        let inside = try IPPrefix("10.88.0.200"), outside = try IPPrefix("10.89.0.1")
        #expect(prefix.contains(inside) && !prefix.contains(outside))
        #expect(try IPPrefix("fd00::5/64").network.description == "fd00::/64")
        #expect(throws: ReplicaError.self) { try IPPrefix("10.88.0.5/33") }
        #expect(throws: ReplicaError.self) { try IPPrefix("10.88.0") }
    }
}
