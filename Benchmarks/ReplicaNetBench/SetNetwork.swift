import BenchmarkSupport
import Glibc
import ReplicaKit
import ReplicaNet

/// A set's rules and names against the commands a user would type for the same, in a network
/// namespace of the benchmark's own (nothing of the host's is touched): ten machines' leases on a
/// bridge, NAT and ten port forwards (`Firewall.update`: one `nft -f` batch, against one `nft add`
/// process per table, chain and rule), names served (`BridgeNames.serve`, against writing the
/// hosts file and starting dnsmasq by hand), a name query answered, and one more machine added to
/// the running set's rules and zone.
func benchmarkSetNetwork(rounds: Int, tag: String) throws {
    let namespace = "nbfw-\(tag)"
    try NetworkNamespace.create(namespace)
    defer { try? NetworkNamespace.delete(namespace) }
    try DedicatedThread.run { () throws(ReplicaError) in
        try SandboxMounter.joinNetworkNamespace("\(NetworkNamespace.directory)/\(namespace)")
        for command in ["link add nbr0 type bridge", "addr add 10.97.0.1/24 dev nbr0", "link set nbr0 up", "link set lo up"] {
            _ = try Command.check(["ip"] + command.split(separator: " ").map(String.init))
        }
        // Records and names on tmpfs, as under /run; leases on disk, as under /var/lib.
        var template = Array("/run/replica-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ReplicaError.current("mkdtemp") }
        let dir = String(cString: made)
        defer { _ = try? Command.run(["rm", "-rf", dir]) }
        chmod(dir, 0o755)  // dnsmasq reads its hosts file as nobody
        var leaseTemplate = Array("/var/tmp/replica-bench-XXXXXX".utf8CString)
        guard let leaseMade = mkdtemp(&leaseTemplate) else { throw ReplicaError.current("mkdtemp") }
        let leases = String(cString: leaseMade)
        defer { _ = try? Command.run(["rm", "-rf", leases]) }
        let (records, names) = ("\(dir)/firewall", "\(dir)/names")
        let subnet = try IPPrefix("10.97.0.0/24")
        let pool = try AddressPool(subnet: subnet, root: leases)
        var rules = try BridgeFirewall(owner: "bench", bridge: "nbr0", subnet: subnet)
        for machine in 0..<10 {
            let address = try pool.take(for: "replica-machine-m\(machine).service").address
            rules.forwards.append(PortForward(.tcp, hostPort: UInt16(20_000 + machine), target: IPPrefix(address: address.address, length: 32),
                                              targetPort: 80))
        }
        let zone = try BridgeNames.Zone(bridge: "nbr0", domain: "bench.replica", subnet: subnet, listen: try IPPrefix("10.97.0.1/24"))

        // The rules and names of ten machines: ours against nft one rule per process and dnsmasq by hand.
        let chains = ["forward": "filter hook forward priority filter", "prerouting": "nat hook prerouting priority dstnat",
                      "output": "nat hook output priority -100", "postrouting": "nat hook postrouting priority srcnat"]
        var byChain: [(chain: String, rule: String)] = []
        var chain = ""
        let script = Firewall.script([rules])
        let filled = script.split(separator: "\n").drop(while: { !$0.hasPrefix("flush table") }).dropFirst()
        for line in filled.map({ $0.trimmingCharacters() }) {
            if line.hasPrefix("chain ") { chain = String(line.dropFirst(6).dropLast(2)); continue }
            if !chain.isEmpty, line != "}" { byChain.append((chain, line)) }
        }
        var ours: [Double] = [], theirs: [Double] = []
        for _ in 0..<rounds {
            var began = monotonicNanoseconds()
            try Firewall.update("bench", rules, records: records)
            try BridgeNames.serve(zone, leases: leases, directory: names)
            ours.append(Double(monotonicNanoseconds() - began))
            try Firewall.update("bench", nil, records: records)
            try BridgeNames.stop("nbr0", directory: names)
            began = monotonicNanoseconds()
            try Command.check(["nft", "add", "table", "inet", "bench"])
            for (name, hook) in chains.sorted(by: { $0.key < $1.key }) {
                try Command.check(["nft", "add chain inet bench \(name) { type \(hook); policy accept; }"])
            }
            for name in Set(byChain.map(\.chain)).subtracting(chains.keys).sorted() { try Command.check(["nft", "add", "chain", "inet", "bench", name]) }
            for (name, rule) in byChain { try Command.check(["nft", "add rule inet bench \(name) \(rule)"]) }
            try RootDirectory(dir).writeFileAtomically("hand.hosts", contents: Array((0..<10).map { "10.97.0.\($0 + 2) m\($0)\n" }.joined().utf8))
            let dnsmasq = try Command.spawn(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--bind-interfaces",
                                             "--listen-address=10.97.0.1", "--no-hosts", "--addn-hosts=\(dir)/hand.hosts", "--domain=bench.replica",
                                             "--local=/bench.replica/", "--expand-hosts", "--pid-file="], output: nil, newSession: true)
            try waitForAnswer()
            theirs.append(Double(monotonicNanoseconds() - began))
            kill(dnsmasq, SIGTERM)
            _ = try ExitStatus.wait(for: dnsmasq)
            try Command.check(["nft", "delete", "table", "inet", "bench"])
        }
        row("a set's NAT, isolation, 10 forwards and names, host-side", median(ours),
            "nft add ×\(byChain.count + Set(byChain.map(\.chain)).count + 1) + dnsmasq:", median(theirs))

        // A name query, answered (the zone being served).
        try Firewall.update("bench", rules, records: records)
        try BridgeNames.serve(zone, leases: leases, directory: names)
        try waitForAnswer()
        var queries: [Double] = []
        for _ in 0..<200 {
            let began = monotonicNanoseconds()
            guard try query("m3.bench.replica") == [10, 97, 0, 5] else { throw ReplicaError("query", errno: .EIO, hint: "a wrong answer") }
            queries.append(Double(monotonicNanoseconds() - began))
        }
        print("replica-net-bench: a name query on the bridge, median of 200: \(formatDuration(median(queries))) (goal < 1 ms)")

        // One machine more: its lease, its forward, its name.
        var adding: [Double] = [], byHand: [Double] = []
        for round in 0..<rounds {
            let owner = "replica-machine-extra\(round).service"
            let address = try pool.take(for: owner).address  // the fork's, before its rules and name
            usleep(50_000)  // the kernel's cleanup of the last change done (a grace period), for either side
            let began = monotonicNanoseconds()
            var more = rules
            more.forwards.append(PortForward(.tcp, hostPort: 21_000, target: IPPrefix(address: address.address, length: 32), targetPort: 80))
            try Firewall.update("bench", more, records: records)
            try BridgeNames.refresh(bridge: "nbr0", leases: leases, directory: names)
            adding.append(Double(monotonicNanoseconds() - began))
            try pool.release(owner)
            try Firewall.update("bench", rules, records: records)
            usleep(50_000)
            let began2 = monotonicNanoseconds()
            try Command.check(["nft", "add rule inet replica prerouting fib daddr type local tcp dport 21000 dnat ip to \(address.addressText):80"])
            try Command.check(["nft", "add rule inet replica output fib daddr type local tcp dport 21000 dnat ip to \(address.addressText):80"])
            try Command.check(["nft", "add rule inet replica postrouting oifname \"nbr0\" ct status dnat ip daddr \(address.addressText) masquerade"])
            try RootDirectory(dir).writeFileAtomically("hand.hosts", contents: Array("\(address.addressText) extra\n".utf8))
            try Command.check(["pkill", "-HUP", "-f", "addn-hosts=\(names)/nbr0.hosts"])
            byHand.append(Double(monotonicNanoseconds() - began2))
        }
        row("one machine more: its forward and name (running set)", median(adding), "nft add ×3 + hosts + pkill -HUP:", median(byHand))
        try BridgeNames.stop("nbr0", directory: names)
        try Firewall.update("bench", nil, records: records)
    }
}

/// A UDP DNS query for NAME's A record to 10.97.0.1; the answer's first address.
func query(_ name: String) throws(ReplicaError) -> [UInt8] {
    let fd = OwnedFD(adopting: try syscall("socket") { socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0) })
    var timeout = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var packet: [UInt8] = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    for label in name.split(separator: ".") { packet += [UInt8(label.utf8.count)] + Array(label.utf8) }
    packet += [0, 0, 1, 0, 1]
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(53).bigEndian
    address.sin_addr.s_addr = UInt32(0x0A61_0001).bigEndian
    let sent = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd.rawValue, packet, packet.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard sent == packet.count else { throw ReplicaError.current("sendto") }
    var answer = [UInt8](repeating: 0, count: 512)
    let got = recv(fd.rawValue, &answer, answer.count, 0)
    guard got > packet.count + 12, answer[7] > 0 else { return [] }
    return Array(answer[got - 4..<got])
}

/// Waits until the bridge's dnsmasq answers.
func waitForAnswer() throws(ReplicaError) {
    for _ in 0..<200 {
        if (try? query("m0.bench.replica")) == [10, 97, 0, 2] { return }
        usleep(2_000)
    }
    throw ReplicaError("dnsmasq", errno: .ETIMEDOUT, hint: "no answer within 0.4 s")
}

extension Substring {
    func trimmingCharacters() -> String { String(drop(while: { $0 == " " })) }
}
