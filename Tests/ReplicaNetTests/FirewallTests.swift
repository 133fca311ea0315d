import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Testing

/// The rules as text, and the words they are written with, without privileges.
@Suite struct FirewallScriptTests {
    @Test func theTableIsReplacedWholeAndDeletedWithTheLastBridge() throws {
        var lab = try BridgeFirewall(owner: "lab", bridge: "br-lab", subnet: try IPPrefix("10.61.1.0/24"))
        lab.forwards = [PortForward(.tcp, hostPort: 8080, target: try IPPrefix("10.61.1.3/32"), targetPort: 80)]
        lab.allow = [try BridgeFirewall.Peer("br-ops")]
        let script = Firewall.script([lab])
        #expect(script.hasPrefix("table inet replica {\n  chain forward { type filter hook forward priority filter; policy accept; }\n"))
        #expect(script.contains("}\nflush table inet replica\ntable inet replica {\n"))
        for rule in ["iifname \"br-lab\" ip saddr != 10.61.1.0/24 drop", "iifname \"br-ops\" oifname \"br-lab\" accept",
                     "oifname \"br-lab\" drop", "iifname \"br-lab\" meta oifkind \"bridge\" drop",
                     "ip saddr 10.61.1.0/24 oifname != { \"br-lab\" } masquerade",
                     "fib daddr type local tcp dport 8080 dnat ip to 10.61.1.3:80"] {
            #expect(script.contains(rule), "\(rule)")
        }
        #expect(Firewall.script([]) == "table inet replica\ndelete table inet replica\n")
        #expect(script.contains("iifname \"br-lab\" meta nfproto ipv6 drop"), "no IPv6 leaves a bridge without it")
        #expect(!script.contains("meta nfproto ipv6 iifname"), "IPv6 forwarding is not Replica's to confine")
    }

    @Test func anOwnersForwardsAreChainsOfItsOwnReplacedAlone() throws {
        var lab = try BridgeFirewall(owner: "lab", bridge: "br-lab", subnet: try IPPrefix("10.61.1.0/24"))
        lab.forwards = [PortForward(.tcp, hostPort: 8080, target: try IPPrefix("10.61.1.3/32"), targetPort: 80)]
        let full = Firewall.script([lab], removed: ["old"])
        for line in ["  chain dnat-lab { }", "  chain snat-lab { }", "delete chain inet replica dnat-old", "    jump dnat-lab", "    jump snat-lab"] {
            #expect(full.contains(line), "\(line)")
        }
        let delta = Firewall.forwardsScript(lab)
        #expect(delta.hasPrefix("flush chain inet replica dnat-lab\nflush chain inet replica snat-lab\n"))
        #expect(delta.contains("dnat ip to 10.61.1.3:80") && !delta.contains("chain forward") && !delta.contains("flush table"))
        let (one, two) = (try BridgeFirewall(owner: "web@1.service", bridge: "br-lab", subnet: try IPPrefix("10.61.1.0/24")),
                          try BridgeFirewall(owner: "web@2.service", bridge: "br-lab", subnet: try IPPrefix("10.61.1.0/24")))
        let (first, second) = (Firewall.forwardsScript(one), Firewall.forwardsScript(two))
        #expect(first != second && first.contains("chain inet replica dnat-web_1.service-"), "an identifier nft 1.0 takes, one per owner: \(first)")
    }

    @Test func ipv6RulesMirrorTheIPv4Ones() throws {
        var lab = try BridgeFirewall(owner: "lab", bridge: "br-lab", subnet: try IPPrefix("10.61.1.0/24"))
        lab.subnet6 = try IPPrefix("fd00:61:1::/64")
        lab.forwards = [try PortForward(parsing: "tcp:8080:[fd00:61:1::3]:80"), try PortForward(parsing: "udp:[2001:db8::1]:53:[fd00:61:1::3]:53")]
        lab.allow = [try BridgeFirewall.Peer("fd00:99::/48")]
        let script = Firewall.script([lab], confineIPv6: true)
        for rule in ["iifname \"br-lab\" ip6 saddr != fd00:61:1::/64 drop", "ip6 saddr fd00:99::/48 oifname \"br-lab\" accept",
                     "ip6 saddr fd00:61:1::/64 oifname != { \"br-lab\" } masquerade",
                     "meta nfproto ipv6 fib daddr type local tcp dport 8080 dnat ip6 to [fd00:61:1::3]:80",
                     "ip6 daddr 2001:db8::1 udp dport 53 dnat ip6 to [fd00:61:1::3]:53",
                     "meta nfproto ipv6 iifname != { \"br-lab\" } oifname != { \"br-lab\" } drop"] {
            #expect(script.contains(rule), "\(rule)")
        }
        #expect(lab.forwards[1].description == "udp:[2001:db8::1]:53:[fd00:61:1::3]:53")
        #expect(throws: ReplicaError.self) { try PortForward(parsing: "tcp:192.0.2.1:80:[fd00::3]:80") }
        #expect(throws: ReplicaError.self) { try PortForward.words("tcp:[fd00::1:80:a:80") }
        let v4 = try PortForward(parsing: "tcp:8080:10.0.0.3:80"), v6 = try PortForward(parsing: "tcp:8080:[fd00::3]:80")
        let other6 = try PortForward(parsing: "tcp:[fd00::9]:8080:[fd00::4]:80")
        #expect(!v4.collides(with: v6) && v6.collides(with: other6))
    }

    @Test func uniqueLocalPrefixesAreStablePerBridgeAndAddressesPerMachine() throws {
        let one = UniqueLocal.prefix(bridge: "br-lab", host: "0123"), again = UniqueLocal.prefix(bridge: "br-lab", host: "0123")
        #expect(one == again && one.length == 64 && one.address[0] == 0xfd && one.address[8...].allSatisfy { $0 == 0 })
        #expect(UniqueLocal.prefix(bridge: "br-ops", host: "0123") != one && UniqueLocal.prefix(bridge: "br-lab", host: "4567") != one)
        #expect(UniqueLocal.gateway(one).addressText.hasSuffix("::1"))
        let id = UniqueLocal.interfaceID("5f1c2d3e4a5b6c7d8e9fa0b1c2d3e4f5")
        #expect(id == UniqueLocal.interfaceID("5f1c2d3e4a5b6c7d8e9fa0b1c2d3e4f5") && id != UniqueLocal.interfaceID("5f1c2d3e4a5b6c7d8e9fa0b1c2d3e4f6") && id > 1)
        #expect(try UniqueLocal.interfaceID(parsing: "::1a:2b:3c:4d") == 0x001a_002b_003c_004d)
        for bad in ["::1", "fd00::5", "10.0.0.1", "::"] { #expect(throws: ReplicaError.self, "\(bad)") { try UniqueLocal.interfaceID(parsing: bad) } }
        #expect(UniqueLocal.reverseZone(try IPPrefix("fd12:3456:789a:bcde::/64")) == "e.d.c.b.a.9.8.7.6.5.4.3.2.1.d.f.ip6.arpa")
    }

    @Test func forwardsAreReadAsWrittenAndCollideOnlyOnTheSamePort() throws {
        let words = try PortForward.words("udp:192.0.2.1:5353:db:53")
        #expect(words.transport == .udp && words.hostAddress?.addressText == "192.0.2.1" && words.hostPort == 5353 && words.target == "db" && words.port == 53)
        for bad in ["sctp:1:a:2", "tcp:0:a:80", "tcp:8080:a", "tcp:8080::80", "tcp:70000:a:80", "tcp:x.y:1:a:2"] {
            #expect(throws: ReplicaError.self, "\(bad)") { try PortForward.words(bad) }
        }
        let target = try IPPrefix("10.0.0.2/32")
        let any = PortForward(.tcp, hostPort: 80, target: target, targetPort: 80)
        #expect(any.collides(with: PortForward(.tcp, hostAddress: try IPPrefix("192.0.2.1/32"), hostPort: 80, target: target, targetPort: 8)))
        #expect(!any.collides(with: PortForward(.udp, hostPort: 80, target: target, targetPort: 80)))
        #expect(!any.collides(with: PortForward(.tcp, hostPort: 81, target: target, targetPort: 80)))
    }
}

/// A host in a network namespace of its own with two bridges (two sets), machines as namespaces on
/// them, and an "outside" namespace standing in for the internet that has no route back to the
/// bridges: what each machine reaches, from its own side, before and after the rules.
@Suite(.serialized) struct FirewallTests {
    static let tag = getpid() % 200

    /// Runs `body` with the host namespace's name; everything made is removed after.
    static func withHost(_ body: (_ host: String, _ records: String) throws -> Void) throws {
        let host = "fwh\(tag)", outside = "fwo\(tag)", machines = ["fwa\(tag)", "fwb\(tag)", "fwc\(tag)"]
        defer {
            for name in [host, outside] + machines {
                NetworkProbe.stopAll(in: name)  // the test's servers, which would keep it (and its links) alive
                _ = try? Command.run(["ip", "netns", "del", name])
            }
        }
        // Each bridge's unique local /64 as Replica derives it (PREFIX::1 the bridge's, ::N a machine's).
        let prefixes = (1...2).map { String(UniqueLocal.gateway(UniqueLocal.prefix(bridge: "br-s\($0)")).addressText.dropLast()) }
        let setup = """
            set -e
            p1=\(prefixes[0]); p2=\(prefixes[1])
            for n in \(host) \(outside) \(machines.joined(separator: " ")); do ip netns add $n; ip -n $n link set lo up; done
            ip -n \(host) link add up0 type veth peer name eth0 netns \(outside)
            ip -n \(host) addr add 198.51.100.1/24 dev up0; ip -n \(host) link set up0 up
            ip -n \(outside) addr add 198.51.100.2/24 dev eth0; ip -n \(outside) link set eth0 up
            ip -n \(host) route add default via 198.51.100.2
            for b in 1 2; do
              ip -n \(host) link add br-s$b type bridge; ip -n \(host) addr add 10.61.$b.1/24 dev br-s$b; ip -n \(host) link set br-s$b up
              ip -n \(host) addr add $(eval echo \\$p$b)1/64 dev br-s$b nodad
            done
            i=0
            for m in \(machines[0]):1:2 \(machines[1]):1:3 \(machines[2]):2:2; do
              n=${m%%:*}; rest=${m#*:}; b=${rest%%:*}; a=${rest#*:}; i=$((i+1))
              ip -n \(host) link add v$i type veth peer name eth0 netns $n
              ip -n \(host) link set v$i master br-s$b up
              ip -n $n addr add 10.61.$b.$a/24 dev eth0; ip -n $n link set eth0 up; ip -n $n route add default via 10.61.$b.1
              p=$(eval echo \\$p$b)
              ip -n $n addr add $p$a/64 dev eth0 nodad; ip -n $n -6 route add default via ${p}1
            done
            ip -n \(host) addr add 2001:db8:61::1/64 dev up0 nodad; ip -n \(outside) addr add 2001:db8:61::2/64 dev eth0 nodad
            ip -n \(host) -6 route add default via 2001:db8:61::2
            """
        _ = try Command.check(["sh", "-c", setup])
        try withTemporaryDirectory { records in try body(host, records) }
    }

    static func firewall(_ host: String, _ records: String, _ arguments: [String]) throws -> CommandResult {
        try Command.run(["ip", "netns", "exec", host, try builtTool("replica-net"), "firewall"] + arguments + ["--firewall-records", records])
    }

    @Test func setsReachOutThroughNATStayApartAndTakeForwardsOnly() throws {
        try Self.withHost { host, records in
            let (outside, a1, a2, b1) = ("fwo\(Self.tag)", "fwa\(Self.tag)", "fwb\(Self.tag)", "fwc\(Self.tag)")
            try NetworkProbe.serve(outside, "tcp", port: 7000, word: "internet")
            try NetworkProbe.serve(a2, "tcp", port: 80, word: "web")
            try NetworkProbe.serve(a2, "udp", port: 53, word: "dns")
            try NetworkProbe.serve(b1, "tcp", port: 80, word: "other")
            let sysctl = { (interface: String) throws -> String in
                try Command.check(["ip", "netns", "exec", host, "cat", "/proc/sys/net/ipv4/conf/\(interface)/forwarding"])
            }
            // Before: forwarding is off, so nothing leaves a bridge, and nothing comes in.
            #expect(try NetworkProbe.ask(a1, "tcp", "198.51.100.2", 7000) == "unreachable")
            #expect(try NetworkProbe.ask(outside, "tcp", "198.51.100.1", 8080) == "unreachable")
            #expect(try NetworkProbe.ask(a1, "tcp", "10.61.1.3", 80) == "web 10.61.1.2", "the control: one bridge's machines reach each other")

            let set1 = try Self.firewall(host, records, ["set", "s1", "--bridge", "br-s1", "--subnet", "10.61.1.0/24",
                                                        "--forward", "tcp:8080:10.61.1.3:80", "--forward", "udp:5353:10.61.1.3:53"])
            #expect(set1.status == .exited(0), "\(set1.output)")
            let set2 = try Self.firewall(host, records, ["set", "s2", "--bridge", "br-s2", "--subnet", "10.61.2.0/24"])
            #expect(set2.status == .exited(0), "\(set2.output)")
            #expect(try sysctl("br-s1") == "1\n" && sysctl("up0") == "1\n" && sysctl("all") == "0\n", "per interface, not host-wide")

            // Out, masqueraded: the outside sees the host's address, and has no route back otherwise.
            #expect(try NetworkProbe.ask(a1, "tcp", "198.51.100.2", 7000) == "internet 198.51.100.1")
            #expect(try NetworkProbe.ask(b1, "tcp", "198.51.100.2", 7000) == "internet 198.51.100.1")
            // Apart: neither set reaches the other; within a set, as before.
            #expect(try NetworkProbe.ask(a1, "tcp", "10.61.2.2", 80) == "unreachable")
            #expect(try NetworkProbe.ask(b1, "tcp", "10.61.1.3", 80) == "unreachable")
            #expect(try NetworkProbe.ask(a1, "tcp", "10.61.1.3", 80) == "web 10.61.1.2")
            // In: only the forwards, TCP and UDP, from outside and from the host itself.
            #expect(try NetworkProbe.ask(outside, "tcp", "198.51.100.1", 8080) == "web 198.51.100.2")
            #expect(try NetworkProbe.ask(outside, "udp", "198.51.100.1", 5353) == "dns 198.51.100.2")
            #expect(try NetworkProbe.ask(host, "tcp", "198.51.100.1", 8080).hasPrefix("web "))
            #expect(try NetworkProbe.ask(a1, "tcp", "198.51.100.1", 8080) == "web 10.61.1.1", "hairpin: a machine of the bridge, through the host")
            #expect(try NetworkProbe.ask(outside, "tcp", "10.61.1.3", 80) == "unreachable")

            // A change of set 1's forwards alone replaces only its own chains: every other rule keeps its handle.
            let handles = { () throws -> String in
                try Command.check(["ip", "netns", "exec", host, "nft", "-a", "list", "table", "inet", "replica"]).split(separator: "\n")
                    .filter { !$0.contains("dnat ip to") && !$0.contains("ct status dnat ip daddr") }.joined(separator: "\n")
            }
            let kept = try handles()
            let more = try Self.firewall(host, records, ["set", "s1", "--bridge", "br-s1", "--subnet", "10.61.1.0/24", "--forward", "tcp:8080:10.61.1.3:80",
                                                        "--forward", "udp:5353:10.61.1.3:53", "--forward", "tcp:8082:10.61.1.3:80"])
            #expect(more.status == .exited(0), "\(more.output)")
            #expect(try handles() == kept, "only set 1's forward chains changed")
            #expect(try NetworkProbe.ask(outside, "tcp", "198.51.100.1", 8082) == "web 198.51.100.2")

            // Allowed in: set 2 lets set 1 reach it (and only that way round).
            let allow = try Self.firewall(host, records, ["set", "s2", "--bridge", "br-s2", "--subnet", "10.61.2.0/24", "--allow", "br-s1"])
            #expect(allow.status == .exited(0), "\(allow.output)")
            #expect(try NetworkProbe.ask(a1, "tcp", "10.61.2.2", 80) == "other 10.61.1.2")
            #expect(try NetworkProbe.ask(b1, "tcp", "10.61.1.3", 80) == "unreachable")

            // Refused, nothing changed: a port another set forwards, one the host listens on, bad words.
            try NetworkProbe.serve(host, "tcp", port: 9090, word: "host")
            for (arguments, rule) in [(["--forward", "tcp:8080:10.61.2.2:80"], "s1 forwards tcp port 8080 already"),
                                      (["--forward", "tcp:9090:10.61.2.2:80"], "listens on tcp port 9090"),
                                      (["--forward", "tcp:8080:web1"], "write tcp:8080:web1:80"),
                                      (["--allow", "bad name!"], "interface name")] {
                let refused = try Self.firewall(host, records, ["set", "s2", "--bridge", "br-s2", "--subnet", "10.61.2.0/24"] + arguments)
                #expect(refused.status != .exited(0) && refused.output.contains(rule), "\(arguments): \(refused.output)")
            }
            let overlapping = try Self.firewall(host, records, ["set", "s3", "--bridge", "br-s3", "--subnet", "10.61.0.0/16"])
            #expect(overlapping.status == .exited(1) && overlapping.output.contains("overlaps s1's 10.61.1.0/24 on br-s1"), "\(overlapping.output)")
            #expect(try NetworkProbe.ask(a1, "tcp", "10.61.2.2", 80) == "other 10.61.1.2", "the rules in force are the last good ones")

            // Removed: the table goes with the last owner, forwarding goes back off, nothing else was there.
            #expect(try Self.firewall(host, records, ["unset", "s1"]).status == .exited(0))
            #expect(try NetworkProbe.ask(outside, "tcp", "198.51.100.1", 8080) == "unreachable")
            #expect(try NetworkProbe.ask(b1, "tcp", "198.51.100.2", 7000) == "internet 198.51.100.1", "the other set's rules stay")
            #expect(try Self.firewall(host, records, ["unset", "s2"]).status == .exited(0))
            #expect(try Command.check(["ip", "netns", "exec", host, "nft", "list", "ruleset"]).isEmpty)
            #expect(try sysctl("br-s1") == "0\n" && sysctl("up0") == "0\n")
            #expect(try NetworkProbe.ask(a1, "tcp", "198.51.100.2", 7000) == "unreachable")
        }
    }

    /// The same over IPv6, in each bridge's unique local /64: out through NAT (the outside has no
    /// route back), apart, in through a forward only, and the host-wide IPv6 forwarding switch on
    /// only while the table confines it to our bridges.
    @Test func ipv6GoesOutStaysApartAndComesInThroughForwardsOnly() throws {
        try Self.withHost { host, records in
            let (outside, a1, a2, b1) = ("fwo\(Self.tag)", "fwa\(Self.tag)", "fwb\(Self.tag)", "fwc\(Self.tag)")
            let p1 = String(UniqueLocal.gateway(UniqueLocal.prefix(bridge: "br-s1")).addressText.dropLast())
            let p2 = String(UniqueLocal.gateway(UniqueLocal.prefix(bridge: "br-s2")).addressText.dropLast())
            try NetworkProbe.serve(outside, "tcp", port: 7000, word: "internet", ipv6: true)
            try NetworkProbe.serve(a2, "tcp", port: 80, word: "web", ipv6: true)
            try NetworkProbe.serve(a2, "udp", port: 53, word: "dns", ipv6: true)
            try NetworkProbe.serve(b1, "tcp", port: 80, word: "other", ipv6: true)
            let sysctl = { (path: String) throws -> String in try Command.check(["ip", "netns", "exec", host, "cat", "/proc/sys/net/ipv6/conf/\(path)"]) }
            _ = try Command.check(["ip", "netns", "exec", host, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/up0/accept_ra"])
            #expect(try NetworkProbe.ask(a1, "tcp", "2001:db8:61::2", 7000) == "unreachable", "before: IPv6 forwarding is off")
            #expect(try NetworkProbe.ask(a1, "tcp", "\(p1)3", 80) == "web \(p1)2", "the control: one bridge's machines reach each other")
            #expect(try NetworkProbe.ask(b1, "tcp", "\(p2)1", 1) == "unreachable")

            let set1 = try Self.firewall(host, records, ["set", "s1", "--bridge", "br-s1", "--subnet", "10.61.1.0/24", "--ipv6",
                                                        "--forward", "tcp:8080:[\(p1)3]:80", "--forward", "udp:[2001:db8:61::1]:5353:[\(p1)3]:53"])
            #expect(set1.status == .exited(0), "\(set1.output)")
            #expect(try Self.firewall(host, records, ["set", "s2", "--bridge", "br-s2", "--subnet", "10.61.2.0/24", "--ipv6"]).status == .exited(0))
            #expect(try sysctl("all/forwarding") == "1\n" && sysctl("up0/accept_ra") == "2\n", "on, and the uplink still takes router advertisements")
            // The table confines IPv6 forwarding to what enters or leaves a bridge of ours.
            #expect(try Command.check(["ip", "netns", "exec", host, "nft", "list", "chain", "inet", "replica", "forward"])
                .contains("meta nfproto ipv6 iifname != { \"br-s1\", \"br-s2\" } oifname != { \"br-s1\", \"br-s2\" } drop"))

            #expect(try NetworkProbe.ask(a1, "tcp", "2001:db8:61::2", 7000) == "internet 2001:db8:61::1", "out, masqueraded")
            #expect(try NetworkProbe.ask(b1, "tcp", "2001:db8:61::2", 7000) == "internet 2001:db8:61::1")
            #expect(try NetworkProbe.ask(a1, "tcp", "\(p2)2", 80) == "unreachable", "apart")
            #expect(try NetworkProbe.ask(b1, "tcp", "\(p1)3", 80) == "unreachable")
            #expect(try NetworkProbe.ask(a1, "tcp", "\(p1)3", 80) == "web \(p1)2")
            #expect(try NetworkProbe.ask(outside, "tcp", "2001:db8:61::1", 8080) == "web 2001:db8:61::2", "in: the forward, the client's own address")
            #expect(try NetworkProbe.ask(outside, "udp", "2001:db8:61::1", 5353) == "dns 2001:db8:61::2")
            #expect(try NetworkProbe.ask(outside, "tcp", "198.51.100.1", 8080) == "unreachable", "an IPv6 target is not forwarded from IPv4")
            #expect(try NetworkProbe.ask(host, "tcp", "2001:db8:61::1", 8080) == "web \(p1)1", "from the host itself, via the gateway")
            #expect(try NetworkProbe.ask(outside, "tcp", "\(p1)3", 80) == "unreachable", "nothing else in")
            // A spoofed source is dropped: b1 sending from set 1's prefix.
            _ = try Command.check(["ip", "-n", b1, "addr", "add", "\(p1)99/64", "dev", "eth0", "nodad"])
            #expect(try Command.check(["ip", "netns", "exec", b1, "python3", "-c",
                                       "import socket\ns=socket.socket(socket.AF_INET6);s.settimeout(1);s.bind(('\(p1)99',0))\ntry:\n s.connect(('2001:db8:61::2',7000));print(s.recv(99).decode())\nexcept Exception: print('unreachable')"])
                == "unreachable\n")

            #expect(try Self.firewall(host, records, ["unset", "s1"]).status == .exited(0))
            #expect(try sysctl("all/forwarding") == "1\n", "set 2 still has IPv6")
            #expect(try Self.firewall(host, records, ["unset", "s2"]).status == .exited(0))
            #expect(try sysctl("all/forwarding") == "0\n" && sysctl("up0/accept_ra") == "1\n", "both as they were")
            #expect(try NetworkProbe.ask(a1, "tcp", "2001:db8:61::2", 7000) == "unreachable")
        }
    }

    @Test func machinesResolveEachOtherByNameTheMomentTheyHaveAnAddress() throws {
        try Self.withHost { host, records in
            let (a1, b1) = ("fwa\(Self.tag)", "fwc\(Self.tag)")
            let leases = "\(records)/leases", zones = "\(records)/names"
            chmod(records, 0o755)  // dnsmasq reads its hosts file as nobody, as under /run/replica/names
            let pool = try AddressPool(subnet: try IPPrefix("10.61.1.0/24"), root: leases)
            _ = try pool.take(for: "replica-machine-web1.service")  // 10.61.1.2, a1's address
            _ = try pool.take(for: "replica-machine-web2.service")  // 10.61.1.3
            let names = { (arguments: [String]) throws -> CommandResult in
                try Command.run(["ip", "netns", "exec", host, try builtTool("replica-net"), "names"] + arguments
                                + ["--bridge", "br-s1", "--leases", leases, "--names-directory", zones])
            }
            let served = try names(["serve", "--subnet", "10.61.1.0/24", "--domain", "s1.replica"])
            #expect(served.status == .exited(0) && served.output.contains("web2.s1.replica 10.61.1.3"), "\(served.output)")
            let forward = try NetworkProbe.lookup(a1, "10.61.1.1", "web2.s1.replica")
            let reverse = try NetworkProbe.lookup(a1, "10.61.1.1", "3.1.61.10.in-addr.arpa", reverse: true)
            #expect(forward == "10.61.1.3" && reverse == "web2.s1.replica", "\(forward); \(reverse)")
            #expect(try NetworkProbe.lookup(a1, "10.61.1.1", "nosuch.s1.replica") == "NXDOMAIN")
            // A new lease is a name at once; a released one is gone.
            _ = try pool.take(for: "replica-machine-db.service")
            try pool.release("replica-machine-web2.service")
            #expect(try names(["refresh"]).status == .exited(0))
            #expect(try NetworkProbe.lookup(a1, "10.61.1.1", "db.s1.replica") == "10.61.1.4")
            #expect(try NetworkProbe.lookup(a1, "10.61.1.1", "web2.s1.replica") == "NXDOMAIN")
            // Answered on the gateway only: not from the outside's side of the host.
            #expect(try NetworkProbe.lookup("fwo\(Self.tag)", "198.51.100.1", "db.s1.replica") == "no answer")
            _ = b1
            // Bad input changes nothing; stop leaves no process and no file.
            let bad = try names(["serve", "--subnet", "10.61.1.0/24", "--domain", "bad_domain"])
            #expect(bad.status == .exited(2) && bad.output.contains("not a DNS name"), "\(bad.output)")
            #expect(try NetworkProbe.lookup(a1, "10.61.1.1", "db.s1.replica") == "10.61.1.4")
            #expect(try names(["stop"]).status == .exited(0))
            #expect(try NetworkProbe.lookup(a1, "10.61.1.1", "db.s1.replica") == "no answer")
            #expect(try Command.run(["pgrep", "-f", "addn-hosts=\(zones)"]).status == .exited(1), "no dnsmasq left")
            #expect(access(zones, F_OK) != 0, "its folder went with the last zone")
        }
    }

    @Test func rulesOutsideOurTableAreNeverTouched() throws {
        try Self.withHost { host, records in
            let theirs = "table ip theirs {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n"
            _ = try Command.check(["sh", "-c", "printf '%s' '\(theirs)' | ip netns exec \(host) nft -f -"])
            let before = try Command.check(["ip", "netns", "exec", host, "nft", "list", "ruleset"])
            #expect(try Self.firewall(host, records, ["set", "s1", "--bridge", "br-s1", "--subnet", "10.61.1.0/24"]).status == .exited(0))
            #expect(try Command.check(["ip", "netns", "exec", host, "nft", "list", "table", "ip", "theirs"]) == before)
            #expect(try Self.firewall(host, records, ["unset", "s1"]).status == .exited(0))
            #expect(try Command.check(["ip", "netns", "exec", host, "nft", "list", "ruleset"]) == before)
        }
    }
}
