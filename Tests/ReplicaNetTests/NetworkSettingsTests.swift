import ReplicaKit
import ReplicaNet
import Testing

@Suite struct NetworkSettingsTests {
    static func profile(_ text: String) throws -> Profile {
        Profile(unit: "web.service", files: ["web.service.conf"], settings: try ProfileParser.parse(text, file: "web.service.conf"))
    }

    /// Cut names get a hash of the whole name: `advlongname12345` and `advlongname1zzzz` used to
    /// share `rv-advlongname1`. Names that fit stay readable; the two forms never meet.
    @Test func hostLinkNamesAreCollisionFree() {
        let (a, b) = (NetworkPlan.hostLinkName(for: "advlongname12345"), NetworkPlan.hostLinkName(for: "advlongname1zzzz"))
        #expect(a == "rv-advlo.edb48e" && b.hasPrefix("rv-advlo.") && a != b, "the documented example")
        #expect(NetworkPlan.hostLinkName(for: "web") == "rv-web")
        #expect(NetworkPlan.hostLinkName(for: "advlongname1") == "rv-advlongname1", "12 bytes fit")
        #expect(NetworkPlan.hostLinkName(for: "a.b").contains("."), "a name with a dot is hashed: rv-a.b could be another's cut name")
        var seen: [String: String] = [:]
        for n in 0..<20_000 {
            let name = "service-\(n)-of-many"
            let link = NetworkPlan.hostLinkName(for: name)
            #expect(link.utf8.count <= 15)
            if let other = seen.updateValue(name, forKey: link) { Issue.record("\(name) and \(other) both get \(link)") }
        }
        #expect(NetworkPlan.hostLinkName(for: "advlongname12345") == a, "stable across runs")
    }

    @Test func aProfileBecomesAPlanWithALeasedAddress() throws {
        var asked: IPPrefix?
        let plan = try NetworkPlan(profile: try Self.profile("[Network]\nBridge=br-replica\nSubnet=10.88.0.0/24\nMTU=1400\n")) {
            (subnet) throws(ReplicaError) -> IPPrefix in
            asked = subnet
            return try IPPrefix("10.88.0.7/24")
        }
        #expect(asked?.description == "10.88.0.0/24")
        #expect(plan?.namespace == "web" && plan?.hostLink == "rv-web" && plan?.bridge == "br-replica")
        #expect(plan?.commands == [
            "ip netns add web",
            "ip link add br-replica type bridge   # when missing",
            "ip addr add 10.88.0.1/24 dev br-replica",
            "ip link set br-replica address 02:… alias 'made by replica' up",
            "ip link add rv-web type veth peer name eth0 netns web",
            "ip link set rv-web master br-replica up",
            "ip -n web link set lo up",
            "ip -n web link set eth0 mtu 1400 up",
            "ip -n web addr add 10.88.0.7/24 dev eth0",
            "ip -n web route add default via 10.88.0.1 dev eth0",
        ])
    }

    @Test func ipv6IsTheBridgesUniqueLocalPrefixAndATokenOfItsOwn() throws {
        let text = "[Network]\nBridge=br-replica\nSubnet=10.88.0.0/24\nIPv6=yes\n"
        let plan = try #require(try NetworkPlan(profile: try Self.profile(text)) { (_) throws(ReplicaError) in try IPPrefix("10.88.0.7/24") })
        let prefix = UniqueLocal.prefix(bridge: "br-replica")
        let gateway = UniqueLocal.gateway(prefix)
        let address = UniqueLocal.address(prefix, interface: UniqueLocal.interfaceID("web.service"))
        let leased = try IPPrefix("10.88.0.7/24")
        #expect(plan.bridgeAddress6 == gateway && plan.addresses == [leased, address])
        #expect(plan.commands.contains("ip addr add \(gateway) dev br-replica nodad"))
        #expect(plan.commands.contains("ip -n web addr add \(address) dev eth0 nodad"))
        #expect(plan.commands.last == "ip -n web route add default via \(gateway.addressText) dev eth0")
        let tokened = try #require(try NetworkPlan(profile: try Self.profile(text + "IPv6Token=::1a:2b:3c:4d\n")) { (_) throws(ReplicaError) in
            try IPPrefix("10.88.0.7/24")
        })
        #expect(tokened.addresses[1].addressText.hasSuffix(":1a:2b:3c:4d"), "\(tokened.addresses)")
    }

    @Test func noNetworkSectionIsNoPlan() throws {
        #expect(try NetworkPlan(profile: try Self.profile("[Sandbox]\nPrivateTmp=yes\n")) { (_) throws(ReplicaError) in
            try IPPrefix("10.0.0.1")
        } == nil)
    }

    @Test(arguments: [
        ("[Network]\nBridge=br-replica\nSubnet=10.88.0.0/33\n", "Subnet", "prefix length"),
        ("[Network]\nNamespace=a/b\n", "Namespace", "\"/\""),
        ("[Network]\nBridge=bridge-name-too-long\nAddress=10.88.0.5/24\n", "Bridge", "at most 15"),
        ("[Network]\nMTU=9\n", "MTU", "68 to 65535"),
        ("[Network]\nAddress=10.0.0.5/24\nIPv6=yes\n", "IPv6", "needs Bridge="),
        ("[Network]\nBridge=br0\nAddress=10.0.0.5/24\nIPv6Token=::5\n", "IPv6Token", "add IPv6=yes"),
        ("[Network]\nBridge=br0\nAddress=10.0.0.5/24\nIPv6=yes\nIPv6Token=fd00::5\n", "IPv6Token", "the last 64 bits only"),
        ("[Network]\nBrige=br0\n", "Brige", "unknown key"),
        ("[Network]\nMacvlan=eth0\nMacvlanMode=sideways\n", "MacvlanMode", "one of private, vepa, bridge"),
        ("[Network]\nMacvlan=eth0\nBridge=br0\nAddress=10.0.0.5/24\n", "Address", "two ways in"),
    ])
    func errorsNameTheKeyAndTheRule(text: String, key: String, rule: String) throws {
        let error = #expect(throws: ProfileError.self) {
            try NetworkPlan(profile: try Self.profile(text)) { (subnet) throws(ReplicaError) in subnet }
        }
        #expect(error?.description.contains(rule) == true, "\(String(describing: error))")
        #expect(error?.location?.file == "web.service.conf" && error?.location?.key == key, "\(String(describing: error))")
    }
}

/// A plan's steps, decided without privileges: what the dry run prints is what `apply` takes, in
/// the same order, host steps before those inside the namespace.
@Suite struct NetworkStepTests {
    @Test func aBridgedPlanIsOneStepPerCommandHostStepsFirst() throws {
        var plan = NetworkPlan(namespace: "web")
        (plan.bridge, plan.bridgeAddress) = ("br-replica", try IPPrefix("10.88.0.1/24"))
        plan.addresses = [try IPPrefix("10.88.0.7/24")]
        plan.routes = [.init(try IPPrefix("0.0.0.0/0"), via: try IPPrefix("10.88.0.1/24"))]
        let (gateway, address) = (try IPPrefix("10.88.0.1/24"), try IPPrefix("10.88.0.7/24"))
        #expect(plan.steps == [.addNamespace, .addBridge("br-replica"), .addBridgeAddress(gateway, bridge: "br-replica"),
                               .bridgeUp("br-replica"), .addVeth, .hostLinkUp, .loopbackUp, .innerLinkUp,
                               .addAddress(address), .addRoute(plan.routes[0])])
        #expect(plan.commands.count == plan.steps.count)
        let inside = plan.steps.map(\.isInside)
        #expect(inside == [false, false, false, false, false, false, true, true, true, true], "apply opens the namespace's socket once, after the host steps")
    }

    @Test func aMacvlanPlanHasNoVethNoBridgeAndNothingLeftOnTheHost() throws {
        var plan = NetworkPlan(namespace: "lan")
        plan.macvlanParent = "eth1"
        plan.addresses = [try IPPrefix("192.168.1.50/24")]
        let address = try IPPrefix("192.168.1.50/24")
        #expect(plan.steps == [.addNamespace, .addMacvlan(parent: "eth1", mode: .bridge), .loopbackUp, .innerLinkUp, .addAddress(address)])
        #expect(plan.commands[1] == "ip link add link eth1 name eth0 netns lan type macvlan mode bridge")
    }
}

/// What `replica-net down` does with what `up` recorded, decided from the record and what is there
/// now, without a kernel: only the very link and namespace `up` made are removed.
@Suite struct TeardownDecisionTests {
    static let record = """
        owner=web.service
        namespace=web
        namespace_inode=4026532801
        host_link=rv-web
        host_link_index=17
        lease_subnet=10.88.0.0/24
        address=10.88.0.7/24

        """

    @Test func theLinkAndNamespaceUpMadeAreRemoved() throws {
        let made = try NetworkRecord(parsing: Self.record, path: "web.service")
        #expect(made.hostLinkDecision(found: 17) == .remove("rv-web"))
        #expect(made.namespaceDecision(found: 4026532801) == .remove("namespace web"))
    }

    @Test func aNameTakenAgainByAnotherIsLeftAlone() throws {
        let made = try NetworkRecord(parsing: Self.record, path: "web.service")
        #expect(made.hostLinkDecision(found: 23) == .leave("rv-web", why: "index 23, not 17"))
        #expect(made.namespaceDecision(found: 4026532999) == .leave("namespace web", why: "inode 4026532999, not 4026532801"))
        #expect(made.hostLinkDecision(found: nil) == .gone("veth rv-web") && made.namespaceDecision(found: nil) == .gone("namespace web"))
    }

    @Test func aMacvlanRecordHasNoHostLinkAndARecordMissingAKeyIsRefused() throws {
        let macvlan = try NetworkRecord(parsing: Self.record.split(separator: "\n").filter { !$0.hasPrefix("host_link") }.joined(separator: "\n") + "\n",
                                        path: "lan.service")
        #expect(macvlan.hostLinkDecision(found: 17) == TeardownDecision.none)
        #expect(throws: ReplicaError.self) { try NetworkRecord(parsing: "owner=web.service\nnamespace=web\n", path: "web.service") }
    }
}
