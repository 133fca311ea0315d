// replica-net-bench: ReplicaNet's operations against the `ip` commands a user would run for the
// same result, measured in the same run (each `ip` a whole process, as a user runs it). Root only.
// Separate from replica-bench, which is built static: libmnl ships no static library.
import BenchmarkSupport
import Glibc
import ReplicaKit
import ReplicaNet

func ip(_ arguments: String) throws { try Command.check(["ip"] + arguments.split(separator: " ").map(String.init)) }
func row(_ operation: String, _ ours: Double, _ tool: String, _ theirs: Double) {
    Comparison(operation: operation, replica: ours, tool: tool, toolTime: theirs).printRow()
}

let rounds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 30 : 30
let tag = "\(getpid() % 10000)"
print("replica-net-bench: median of \(rounds); ip is a whole process per command, as a user runs it")
Comparison.printHeader()

do {
    // 1. veth with its peer born in a namespace, an address inside, both ends up.
    try NetworkNamespace.create("nb-\(tag)")
    defer { try? NetworkNamespace.delete("nb-\(tag)") }
    var host = try NetlinkSocket()
    var inside = try NetlinkSocket(namespace: "nb-\(tag)")
    let namespaceFD = try OwnedFD.open("\(NetworkNamespace.directory)/nb-\(tag)", O_RDONLY)
    var ours: [Double] = [], theirs: [Double] = []
    for i in 0..<rounds {
        let (name, peer) = ("nv\(tag)a\(i)", "e\(i)")
        let address = try IPPrefix("10.99.\(i).2/24")
        let began = monotonicNanoseconds()
        try host.perform(RouteRequest.addVeth(name, peer: peer, peerNamespaceFD: namespaceFD.rawValue), "add veth", [name])
        guard let link = try host.link(named: name), let inner = try inside.link(named: peer) else { throw ReplicaError("lookup", errno: .ENODEV) }
        try host.perform(RouteRequest.setLink(index: link.index, up: true), "up", [name])
        try inside.perform(RouteRequest.addAddress(address, index: inner.index), "addr", [peer])
        try inside.perform(RouteRequest.setLink(index: inner.index, up: true), "up", [peer])
        ours.append(Double(monotonicNanoseconds() - began))
        let (ipName, ipPeer) = ("nv\(tag)b\(i)", "f\(i)")
        let began2 = monotonicNanoseconds()
        try ip("link add \(ipName) type veth peer name \(ipPeer) netns nb-\(tag)")
        try ip("-n nb-\(tag) addr add 10.98.\(i).2/24 dev \(ipPeer)")
        try ip("link set \(ipName) up")
        try ip("-n nb-\(tag) link set \(ipPeer) up")
        theirs.append(Double(monotonicNanoseconds() - began2))
    }
    row("veth, peer born in netns, address, both ends up", median(ours), "ip (4 commands):", median(theirs))

    // 2. Batched teardown: `rounds` services, each a namespace with a veth pair (two links) in a
    // shared bridge, left to settle for a second as running services are, then torn down together.
    // Against ip one service at a time, as a user runs it, and against ip at its best: one batch
    // moving the links into a group, one `ip link del group`, one batch of `netns del`.
    func services(_ prefix: String) throws -> [NetworkPlan] {
        let plans = try (0..<rounds).map { i in
            var plan = NetworkPlan(namespace: "\(prefix)\(tag)-\(i)", hostLink: "\(prefix)\(tag)v\(i)")
            plan.bridge = "tbr\(tag)"
            try plan.apply()
            return plan
        }
        sleep(1)
        return plans
    }
    defer { try? NetworkPlan.deleteLinks(["tbr\(tag)"]) }
    let batch = try services("ta")
    var began = monotonicNanoseconds()
    try NetworkPlan.teardown(batch)
    let perService = Double(monotonicNanoseconds() - began) / Double(rounds)
    let single = try services("tb")
    began = monotonicNanoseconds()
    for plan in single { try ip("link del \(plan.hostLink)"); try ip("netns del \(plan.namespace)") }
    let ipSingle = Double(monotonicNanoseconds() - began) / Double(rounds)
    let best = try services("tc")
    let script = "/tmp/replica-net-bench-\(tag)"
    defer { unlink(script + ".links"); unlink(script + ".netns") }
    do {
        try OwnedFD.open(script + ".links", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
            .writeAll(Array(best.map { "link set dev \($0.hostLink) group 4242\n" }.joined().utf8))
        try OwnedFD.open(script + ".netns", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
            .writeAll(Array(best.map { "netns del \($0.namespace)\n" }.joined().utf8))
    }
    began = monotonicNanoseconds()
    try ip("-batch \(script).links")
    try ip("link del group 4242")
    try ip("-batch \(script).netns")
    let ipBest = Double(monotonicNanoseconds() - began) / Double(rounds)
    row("batched teardown, per service: veth pair + netns (\(rounds))", perService, "ip, one service at a time:", ipSingle)
    row("", perService, "ip -batch + one group delete:", ipBest)
    for i in 0..<rounds { try? ip("link del nv\(tag)a\(i)"); try? ip("link del nv\(tag)b\(i)") }

    // 3. Bridge + veth + enslave + up.
    ours = []; theirs = []
    for i in 0..<rounds {
        let (bridge, veth) = ("nb\(tag)a\(i)", "nw\(tag)a\(i)")
        let start = monotonicNanoseconds()
        try host.perform(RouteRequest.addBridge(bridge), "add bridge", [bridge])
        guard let made = try host.link(named: bridge) else { throw ReplicaError("lookup", errno: .ENODEV) }
        try host.perform(RouteRequest.setLink(index: made.index, up: true), "up", [bridge])
        try host.perform(RouteRequest.addVeth(veth, peer: "p\(veth)", peerNamespaceFD: nil), "add veth", [veth])
        guard let port = try host.link(named: veth) else { throw ReplicaError("lookup", errno: .ENODEV) }
        try host.perform(RouteRequest.setLink(index: port.index, up: true, master: made.index), "enslave", [veth])
        ours.append(Double(monotonicNanoseconds() - start))
        let (ipBridge, ipVeth) = ("nb\(tag)b\(i)", "nw\(tag)b\(i)")
        let start2 = monotonicNanoseconds()
        try ip("link add \(ipBridge) type bridge")
        try ip("link set \(ipBridge) up")
        try ip("link add \(ipVeth) type veth peer name p\(ipVeth)")
        try ip("link set \(ipVeth) master \(ipBridge) up")
        theirs.append(Double(monotonicNanoseconds() - start2))
    }
    row("bridge + veth + enslave + up", median(ours), "ip (4 commands):", median(theirs))
    try NetworkPlan.deleteLinks((0..<rounds).flatMap { ["nb\(tag)a\($0)", "nw\(tag)a\($0)", "nb\(tag)b\($0)", "nw\(tag)b\($0)"] })

    // 4. Named netns add + delete.
    ours = []; theirs = []
    for i in 0..<rounds {
        let start = monotonicNanoseconds()
        try NetworkNamespace.create("nn-\(tag)-\(i)")
        try NetworkNamespace.delete("nn-\(tag)-\(i)")
        ours.append(Double(monotonicNanoseconds() - start))
        let start2 = monotonicNanoseconds()
        try ip("netns add nm-\(tag)-\(i)")
        try ip("netns del nm-\(tag)-\(i)")
        theirs.append(Double(monotonicNanoseconds() - start2))
    }
    row("named netns add + delete", median(ours), "ip netns add + del:", median(theirs))

    // 5. A set's rules and names (SetNetwork.swift).
    try benchmarkSetNetwork(rounds: min(rounds, 10), tag: tag)
} catch {
    print("replica-net-bench: \(error)")
    exit(1)
}
