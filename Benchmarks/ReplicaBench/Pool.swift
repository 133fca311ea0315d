import BenchmarkSupport
import Glibc
import Replica
import ReplicaKit
import ReplicaStore

/// A warm pool of the end-to-end suite's Debian 12 template, then one on a bridge (its network
/// made at claim): 100 and 30 claims, each `replica-machine
/// claim` as a whole process (its background refill included, as a user runs it) followed by a
/// command run in the claimed machine (`nsenter --target LEADER --all true`): claim → usable.
/// Against the cold path a user would otherwise take, `replica-machine fork` then `start --wait`.
/// Between claims the claimed machine is stopped and removed and the pool is let fill again, so
/// every claim finds a full pool. Also what a waiting machine holds in memory (its cgroup's).
func benchmarkPool() throws -> [Comparison] {
    guard let rootfs = cachedRoot(skipping: "pool figures") else { return [] }
    return try withBenchmarkStore(size: 3 << 30) { store, mountPoint in
        _ = try Templates.importTemplate("debian12", from: rootfs, into: store)
        let plain = try claimRounds(100, store: store, mountPoint: mountPoint)
        let bridge = "rbpool\(getpid() % 10_000)"
        defer { _ = try? Command.run(["ip", "link", "del", bridge]) }
        let bridged = try claimRounds(30, network: ["--bridge", bridge, "--subnet", "10.252.\(getpid() % 250).0/24"], store: store, mountPoint: mountPoint)
        return [plain, bridged]
    }
}

/// `rounds` claims from a pool of three of template `debian12` (`network`: the options of
/// `pool` and `fork` that put it on a bridge), each followed by a command in the claimed machine,
/// and every tenth round the cold path; prints the claims' median, 90th percentile and worst.
func claimRounds(_ rounds: Int, network: [String] = [], store: borrowing Store, mountPoint: String) throws -> Comparison {
    let tool = Command.beside("replica-machine")
    let size = 3
    try Command.check([tool, "pool", "debian12", "--size", "\(size)", "--store", mountPoint] + network)
    defer {
        _ = try? Command.run([tool, "pool", "debian12", "--size", "0", "--store", mountPoint])
    }
    let memory = try MachinePool.members("debian12", in: store).compactMap { cgroupMemory(MachinePlacement.cgroupName($0.name)) }
    // Stopped and removed as a user would: `stop` takes its network down, `remove` gives its address back.
    let discard = { (name: String) throws in
        try Command.check([tool, "stop", name])
        try Command.check([tool, "remove", name, "--store", mountPoint])
    }
    var claims: [Double] = [], cold: [Double] = []
    for round in 0..<rounds {
        // A full pool, as a steady one is between claims.
        let deadline = ContinuousClock.now + .seconds(120)
        while try MachinePool.members("debian12", in: store).filter(\.ready).count < size {
            guard ContinuousClock.now < deadline else { throw ReplicaError("bench", ["pool"], errno: .ETIMEDOUT, hint: "the pool did not fill again") }
            usleep(20_000)
        }
        let name = "c\(round)"
        let began = monotonicNanoseconds()
        try Command.check([tool, "claim", name, "--template", "debian12", "--store", mountPoint])
        guard let leader = MachineProcess.leader(name) else { throw ReplicaError("bench", [name], errno: .ENOENT, hint: "no init in the claimed machine") }
        try Command.check(["nsenter", "--target", "\(leader)", "--all", "true"])
        claims.append(Double(monotonicNanoseconds() - began))
        try discard(name)
        if round % 10 == 0 {  // the cold path, now and then (each boots a machine)
            let began = monotonicNanoseconds()
            try Command.check([tool, "fork", "cold\(round)", "--template", "debian12", "--store", mountPoint] + network)
            try Command.check([tool, "start", "cold\(round)", "--wait", "60", "--store", mountPoint])
            guard let leader = MachineProcess.leader("cold\(round)") else { throw ReplicaError("bench", ["cold\(round)"], errno: .ENOENT) }
            try Command.check(["nsenter", "--target", "\(leader)", "--all", "true"])
            cold.append(Double(monotonicNanoseconds() - began))
            try discard("cold\(round)")
        }
    }
    let sorted = claims.sorted()
    let on = network.isEmpty ? "" : " on a bridge"
    print("replica-bench: claim\(on) → a command runs in it, \(claims.count) claims from a pool of \(size) (whole \(linkage(of: tool)) process): "
          + "median \(formatDuration(median(claims))), 90th percentile \(formatDuration(sorted[sorted.count * 9 / 10])), "
          + "worst \(formatDuration(sorted.last!)) (goal: 20 ms)")
    if !memory.isEmpty {
        print("replica-bench: each waiting machine holds \(memory.sorted()[memory.count / 2] >> 20) MiB of memory (its cgroup's, median of \(memory.count))")
    }
    return Comparison(operation: "claim from a warm pool\(on) → a command runs in it", replica: median(claims),
                      tool: "replica-machine fork + start --wait (cold):", toolTime: median(cold))
}

/// What cgroup `replica.slice/NAME` holds in memory: `memory.current` (cgroup2) or
/// `memory.usage_in_bytes` (the v1 controller); nil where neither is.
func cgroupMemory(_ name: String) -> UInt64? {
    guard let group = try? ControlGroup.existing(name) else { return nil }
    for hierarchy in group.hierarchies where hierarchy.controllers.contains("memory") {
        for file in ["memory.current", "memory.usage_in_bytes"] {
            if let text = try? OwnedFD.open("\(hierarchy.path)/\(group.path)/\(file)", O_RDONLY).readLine(), let bytes = UInt64(text.trimmed) { return bytes }
        }
    }
    return nil
}
