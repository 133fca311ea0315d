import Glibc
import Replica
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Testing

/// A set file's way out, in and apart (`Forward=`, `Allow=`, `NAT=`), read without privileges.
@Suite struct ServiceSetNetworkTests {
    static func load(_ text: String) throws -> ServiceSet? {
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/lab.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(text.utf8))
            return try ServiceSet.load("lab", loader: .sets(directories: [dir]))
        }
    }

    @Test func forwardsAllowAndNATAreReadWithTheirMachines() throws {
        let set = try #require(try Self.load("""
            [Set]
            Machine=web1:debian12 db:debian12
            Bridge=br-lab
            Subnet=10.61.1.0/24
            Forward=tcp:8080:web1:80 udp:192.0.2.1:5353:db:53
            Allow=br-ops 192.0.2.0/24
            NAT=no
            """))
        #expect(set.forwards.map { "\($0.transport):\($0.hostPort):\($0.machine):\($0.port)" } == ["tcp:8080:web1:80", "udp:5353:db:53"])
        #expect(set.forwards[1].hostAddress?.addressText == "192.0.2.1")
        #expect(set.allow.map(\.description) == ["br-ops", "192.0.2.0/24"] && !set.masquerade)
        #expect(set.machineNetwork == ["Bridge=br-lab", "Subnet=10.61.1.0/24", "IPv6=yes"] && set.ipv6, "IPv6 unless IPv6=no")
        let forwards = try #require(try Self.load("[Set]\nMachine=web1:debian12\nBridge=br-lab\nSubnet=10.61.1.0/24\nIPv6=no\nForward=tcp:[2001:db8::1]:8080:web1:80\n"))
        #expect(!forwards.ipv6 && forwards.forwards[0].hostAddress?.addressText == "2001:db8::1")
    }

    @Test func aLANSetIsAMacvlanEachAndNeitherABridgeNorANamespace() throws {
        let set = try #require(try Self.load("[Set]\nMachine=web1:debian12\nMacvlan=eth0\n"))
        #expect(set.machineNetwork == ["Macvlan=eth0"] && MachineNetwork.lanParent(of: set.machineNetwork) == "eth0")
        #expect(MachineNetwork.lanParent(of: ["Macvlan=eth0", "Address=192.0.2.5/24"]) == nil, "a static address is Replica's to set")
        for (extra, rule) in [("Bridge=br-lab\nSubnet=10.61.1.0/24", "one of them"), ("Network=lab", "one of them"),
                              ("IPv6=no", "needs Bridge="), ("Zone=lan", "needs Bridge=")] {
            #expect("\(extra)") { try Self.load("[Set]\nMachine=web1:debian12\nMacvlan=eth0\n\(extra)\n") } throws: { "\($0)".contains(rule) }
        }
        #expect { try Self.load("[Set]\nMachine=web1:debian12\nMacvlan=bad name\n") } throws: { "\($0)".contains("Macvlan") }
    }

    @Test(arguments: [
        ("Forward=tcp:8080:web9:80", "web9 is not a machine of the set"),
        ("Forward=tcp:8080:web1", "write tcp:8080:web1:80"),
        ("Allow=10.0.0.0/33", "a bridge's name or a subnet"),
        ("NAT=maybe", "yes or no"),
    ])
    func badRulesNameTheKeyAndTheRule(line: String, rule: String) throws {
        #expect { try Self.load("[Set]\nMachine=web1:debian12\nBridge=br-lab\nSubnet=10.61.1.0/24\n\(line)\n") } throws: { error in
            "\(error)".contains(rule) && "\(error)".contains(String(line.prefix(while: { $0 != "=" })))
        }
    }

    @Test func rulesNeedTheSetsBridge() throws {
        #expect { try Self.load("[Set]\nMachine=web1:debian12\nForward=tcp:8080:web1:80\n") } throws: { error in
            "\(error)".contains("needs Bridge= and Subnet=")
        }
    }
}
