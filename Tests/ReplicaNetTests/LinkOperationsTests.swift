import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Testing

/// Each request against the real kernel, inside a throwaway namespace, checked with `ip`.
@Suite(.requiresRoot) struct LinkOperationsTests {
    @Test(arguments: RouteRequest.MacvlanMode.allCases.filter { $0 != .source })
    func aMacvlanIsMadeInEachMode(mode: RouteRequest.MacvlanMode) throws {
        try withThrowawayNetworkNamespace { namespace in
            var socket = try NetlinkSocket(namespace: namespace)
            try socket.perform(RouteRequest.addBridge("parent0"), "add bridge", ["parent0"])
            let parent = try #require(try socket.link(named: "parent0"))
            try socket.perform(RouteRequest.addMacvlan("mv0", parentIndex: parent.index, mode: mode), "add macvlan", ["mv0"])
            let link = try #require(try socket.link(named: "mv0"))
            #expect(link.kind == "macvlan")
            let shown = try Command.check(["ip", "-n", namespace, "-d", "link", "show", "mv0"])
            #expect(shown.contains("macvlan mode \(mode)"), "\(shown)")
        }
    }

    @Test func ipv6AddressesRoutesAndMTU() throws {
        try withThrowawayNetworkNamespace { namespace in
            var socket = try NetlinkSocket(namespace: namespace)
            try socket.perform(RouteRequest.addVeth("a0", peer: "b0", peerNamespaceFD: nil), "add veth", ["a0"])
            let a = try #require(try socket.link(named: "a0"))
            try socket.perform(RouteRequest.setLink(index: a.index, up: true, mtu: 1400), "set link", ["a0"])
            try socket.perform(RouteRequest.addAddress(try IPPrefix("fd00:88::5/64"), index: a.index), "add address", ["a0"])
            try socket.perform(RouteRequest.addRoute(to: try IPPrefix("fd00:99::/64"), via: try IPPrefix("fd00:88::1"), index: a.index),
                               "add route", ["a0"])
            #expect(try socket.link(named: "a0")?.mtu == 1400)
            #expect(try socket.addresses().contains { $0.index == a.index && $0.prefix.description == "fd00:88::5/64" })
            let routes = try Command.check(["ip", "-n", namespace, "-6", "route", "show"])
            #expect(routes.contains("fd00:99::/64 via fd00:88::1 dev a0"), "\(routes)")
            try socket.perform(RouteRequest.deleteLink(index: a.index), "delete link", ["a0"])
            #expect(try socket.link(named: "b0") == nil, "the peer goes with it")
        }
    }

    @Test func kernelErrorsCarryTheExtendedAckText() throws {
        try withThrowawayNetworkNamespace { namespace in
            var socket = try NetlinkSocket(namespace: namespace)
            try socket.perform(RouteRequest.addBridge("br0"), "add bridge", ["br0"])
            let error = #expect(throws: ReplicaError.self) {
                try socket.perform(RouteRequest.addBridge("br0"), "add bridge", ["br0"])
            }
            #expect(error?.errno == .EEXIST)
            // A gateway no address reaches: the kernel explains in its extended ack.
            let bridge = try #require(try socket.link(named: "br0"))
            let route = #expect(throws: ReplicaError.self) {
                try socket.perform(RouteRequest.addRoute(to: try IPPrefix("10.99.0.0/24"), via: try IPPrefix("192.0.2.1"), index: bridge.index),
                                   "add route", ["10.99.0.0/24", "192.0.2.1"])
            }
            #expect(route?.detail == "kernel says \"Nexthop has invalid gateway\"", "\(String(describing: route))")
            #expect(route?.description.contains("kernel says \"Nexthop has invalid gateway\"") == true)
        }
    }
}
