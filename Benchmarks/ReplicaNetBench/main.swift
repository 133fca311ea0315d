// replica-net-bench: ReplicaNet's operations against the `ip` commands a user would run for the
// same result, measured in the same run (each `ip` a whole process, as a user runs it). Root only.
// Separate from replica-bench, which is built static: libmnl ships no static library.
import Glibc
import ReplicaKit
import ReplicaNet

func now() -> UInt64 { var ts = timespec(); clock_gettime(CLOCK_MONOTONIC, &ts); return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec) }
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
func show(_ nanoseconds: Double) -> String {
    let ms = Int(nanoseconds / 10_000)
    return nanoseconds >= 1_000_000 ? "\(ms / 100).\(ms % 100 < 10 ? "0" : "")\(ms % 100) ms" : "\(Int(nanoseconds / 1000)) µs"
}
func row(_ operation: String, _ ours: Double, _ tool: String, _ theirs: Double) {
    let ratio = theirs / ours
    let verdict = ratio >= 1 ? "\(Int(ratio * 10) / 10).\(Int(ratio * 100) % 10)× faster" : "\(Int(10 / ratio) / 10)× slower"
    print(operation.padding(58) + show(ours).padding(10) + (tool + " " + show(theirs)).padding(34) + verdict)
}
extension String { func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(1, width - count)) } }
func ip(_ arguments: String) throws { try Command.check(["ip"] + arguments.split(separator: " ").map(String.init)) }

let rounds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 30 : 30
let tag = "\(getpid() % 10000)"
print("replica-net-bench: median of \(rounds); ip is a whole process per command, as a user runs it")

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
        let began = now()
        try host.perform(RouteRequest.addVeth(name, peer: peer, peerNamespaceFD: namespaceFD.rawValue), "add veth", [name])
        guard let link = try host.link(named: name), let inner = try inside.link(named: peer) else { throw NetError("lookup", errno: .ENODEV) }
        try host.perform(RouteRequest.setLink(index: link.index, up: true), "up", [name])
        try inside.perform(RouteRequest.addAddress(address, index: inner.index), "addr", [peer])
        try inside.perform(RouteRequest.setLink(index: inner.index, up: true), "up", [peer])
        ours.append(Double(now() - began))
        let (ipName, ipPeer) = ("nv\(tag)b\(i)", "f\(i)")
        let began2 = now()
        try ip("link add \(ipName) type veth peer name \(ipPeer) netns nb-\(tag)")
        try ip("-n nb-\(tag) addr add 10.98.\(i).2/24 dev \(ipPeer)")
        try ip("link set \(ipName) up")
        try ip("-n nb-\(tag) link set \(ipPeer) up")
        theirs.append(Double(now() - began2))
    }
    row("veth, peer born in netns, address, both ends up", median(ours), "ip (4 commands):", median(theirs))

    // 4. Batched teardown: `rounds` services, each a namespace with a veth in a shared bridge, torn
    // down together, against one `ip link del` + `ip netns del` per service.
    func services(_ prefix: String) throws -> [NetworkPlan] {
        try (0..<rounds).map { i in
            var plan = NetworkPlan(namespace: "\(prefix)\(tag)-\(i)", hostLink: "\(prefix)\(tag)v\(i)")
            plan.bridge = "tbr\(tag)"
            try plan.apply()
            return plan
        }
    }
    defer { try? NetworkPlan.deleteLinks(["tbr\(tag)"]) }
    let batch = try services("ta")
    var began = now()
    try NetworkPlan.teardown(batch)
    let perService = Double(now() - began) / Double(batch.count)
    let single = try services("tb")
    began = now()
    for plan in single { try ip("link del \(plan.hostLink)"); try ip("netns del \(plan.namespace)") }
    row("batched teardown, per service link (\(rounds) services)", perService, "ip link del + netns del:",
        Double(now() - began) / Double(rounds))
    for i in 0..<rounds { try? ip("link del nv\(tag)a\(i)"); try? ip("link del nv\(tag)b\(i)") }

    // 2. Bridge + veth + enslave + up.
    ours = []; theirs = []
    for i in 0..<rounds {
        let (bridge, veth) = ("nb\(tag)a\(i)", "nw\(tag)a\(i)")
        let start = now()
        try host.perform(RouteRequest.addBridge(bridge), "add bridge", [bridge])
        guard let made = try host.link(named: bridge) else { throw NetError("lookup", errno: .ENODEV) }
        try host.perform(RouteRequest.setLink(index: made.index, up: true), "up", [bridge])
        try host.perform(RouteRequest.addVeth(veth, peer: "p\(veth)", peerNamespaceFD: nil), "add veth", [veth])
        guard let port = try host.link(named: veth) else { throw NetError("lookup", errno: .ENODEV) }
        try host.perform(RouteRequest.setLink(index: port.index, up: true, master: made.index), "enslave", [veth])
        ours.append(Double(now() - start))
        let (ipBridge, ipVeth) = ("nb\(tag)b\(i)", "nw\(tag)b\(i)")
        let start2 = now()
        try ip("link add \(ipBridge) type bridge")
        try ip("link set \(ipBridge) up")
        try ip("link add \(ipVeth) type veth peer name p\(ipVeth)")
        try ip("link set \(ipVeth) master \(ipBridge) up")
        theirs.append(Double(now() - start2))
    }
    row("bridge + veth + enslave + up", median(ours), "ip (4 commands):", median(theirs))
    try NetworkPlan.deleteLinks((0..<rounds).flatMap { ["nb\(tag)a\($0)", "nw\(tag)a\($0)", "nb\(tag)b\($0)", "nw\(tag)b\($0)"] })

    // 3. Named netns add + delete.
    ours = []; theirs = []
    for i in 0..<rounds {
        let start = now()
        try NetworkNamespace.create("nn-\(tag)-\(i)")
        try NetworkNamespace.delete("nn-\(tag)-\(i)")
        ours.append(Double(now() - start))
        let start2 = now()
        try ip("netns add nm-\(tag)-\(i)")
        try ip("netns del nm-\(tag)-\(i)")
        theirs.append(Double(now() - start2))
    }
    row("named netns add + delete", median(ours), "ip netns add + del:", median(theirs))
} catch {
    print("replica-net-bench: \(error)")
    exit(1)
}
