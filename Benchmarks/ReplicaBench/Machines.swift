import BenchmarkSupport
import Glibc
import Replica
import ReplicaKit
import ReplicaStore

/// Machines forked from the end-to-end suite's Debian 12 template: the host-side fork (snapshot,
/// identity reset, seed) against what a user would run (`btrfs subvolume snapshot`, then a manual
/// sysprep with `truncate`, `rm` and a hostname file); the same with the network, `replica-machine
/// fork --bridge` against that plus the `ip` commands of a veth on a bridge in a namespace; fork to
/// READY against a bare `systemd-nspawn --template= --boot --notify-ready=yes` (nspawn's own
/// snapshot of the template, then the same boot); a trimmed template's fork to READY against the
/// stock one's, and the floor of any trim (the trimmed fork booting to an empty target); ten machines
/// in parallel.
func benchmarkMachines() throws -> [Comparison] {
    guard let rootfs = cachedRoot(skipping: "machine figures") else { return [] }
    return try withBenchmarkStore(size: 3 << 30) { store, mountPoint in
        _ = try Templates.importTemplate("debian12", from: rootfs, into: store)
        sync()  // the image file written back now: timed forks and boots, not the writeback of the import
        var forks: [Double] = [], byHand: [Double] = []
        for round in 0..<20 {
            // Each from a committed store: a snapshot commits the transaction, so what the one before
            // left unsynced (the by-hand sequence syncs nothing) would be charged to the next.
            try Command.check(["btrfs", "filesystem", "sync", mountPoint])
            var began = monotonicNanoseconds()
            try Machines.fork("f\(round)", template: "debian12", in: store)
            forks.append(Double(monotonicNanoseconds() - began))
            let copy = "\(mountPoint)/by-hand-\(round)"
            try Command.check(["btrfs", "filesystem", "sync", mountPoint])
            began = monotonicNanoseconds()
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(mountPoint)/templates/debian12", copy])
            try Command.check(["sh", "-c", "truncate -s 0 \(copy)/etc/machine-id && rm -f \(copy)/var/lib/dbus/machine-id "
                               + "\(copy)/etc/ssh/ssh_host_* && echo h\(round) > \(copy)/etc/hostname"])
            byHand.append(Double(monotonicNanoseconds() - began))
        }

        // With the network: the whole tool against the sysprep and the ip commands a user types.
        let bridge = "rbench\(getpid() % 10_000)"
        let networked = try forkWithNetwork(store: mountPoint, bridge: bridge)
        for machine in try Machines.list(in: store) { try Machines.remove(machine.name, from: store) }

        // Fork → READY, against a bare nspawn of a plain snapshot and from the same root trimmed
        // (template import --minimal); taking turns, the order changing each round (a Williams
        // square: within four rounds each of the four follows each other once), where the trimmed
        // boots used to follow the stock ones always and so met what those left behind.
        _ = try Templates.importTemplate("debian12-minimal", from: rootfs, into: store, minimal: true)
        sync()
        var ready: [Double] = [], bare: [Double] = [], boots: [Double] = [], trimmed: [Double] = [], floor: [Double] = []
        let orders = [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
        for round in 0..<32 {  // a boot's time wanders by ±25 ms here: 16 rounds moved the trimmed ratio by ±0.03
            for kind in orders[round % 4] {
                switch kind {
                case 0:
                    let (total, boot) = try forkAndBoot(round, store: store)
                    ready.append(total)
                    boots.append(boot)
                case 1: bare.append(try bootPlainSnapshot(round, mountPoint: mountPoint))
                case 2: trimmed.append(try forkAndBoot(100 + round, template: "debian12-minimal", store: store).total)
                default: floor.append(try forkAndBoot(200 + round, template: "debian12-minimal", store: store, emptyBoot: true).total)
                }
            }
        }

        let ten = try forkAndBootAtOnce(10, template: "debian12", store: store)
        print("replica-bench: fork → READY \(formatDuration(median(ready))) of which the boot \(formatDuration(median(boots))); "
              + "bare nspawn \(formatDuration(median(bare))) (middle half \(formatDuration(quartile(bare, 1)))–\(formatDuration(quartile(bare, 3))))")
        print("replica-bench: ten machines forked and booted at once, all READY in \(formatDuration(ten.time)), "
              + "\(ten.failures) failed (target: under 3 s)")
        return [
            Comparison(operation: "fork: snapshot + identity reset + seed", replica: median(forks),
                       tool: "btrfs subvolume snapshot + sysprep by hand:", toolTime: median(byHand)),
            networked,
            Comparison(operation: "fork → READY (replica-machine start --wait)", replica: median(ready),
                       tool: "systemd-nspawn --template= --boot --notify-ready:", toolTime: median(bare)),
            Comparison(operation: "fork → READY, template import --minimal", replica: median(trimmed),
                       tool: "the same root untrimmed (stock):", toolTime: median(ready)),
            Comparison(operation: "fork → READY, minimal, nothing to start (any trim's floor)", replica: median(floor),
                       tool: "the same root untrimmed (stock):", toolTime: median(ready)),
        ]
    }
}

/// `replica-machine fork NAME --bridge --subnet` (snapshot, identity reset, seed with the lease,
/// namespace, veth, bridge port, address, route), a whole process, against the same by hand:
/// `btrfs subvolume snapshot`, a sysprep and seed in `sh`, and the `ip` commands.
func forkWithNetwork(store mountPoint: String, bridge: String) throws -> Comparison {
    let tool = Command.beside("replica-machine")
    let subnet = "10.24.\(getpid() % 200).0/24"
    let prefix = subnet.split(separator: ".").prefix(3).joined(separator: ".")
    defer { _ = try? Command.run(["ip", "link", "del", bridge]) }
    // The bridge made once, as it is on a host that runs machines.
    try Command.check([tool, "fork", "warm", "--template", "debian12", "--bridge", bridge, "--subnet", subnet, "--store", mountPoint])
    try Command.check([tool, "remove", "warm", "--store", mountPoint])
    var ours: [Double] = [], byHand: [Double] = []
    for round in 0..<15 {
        try Command.check(["btrfs", "filesystem", "sync", mountPoint])  // each from a committed store, as above
        var began = monotonicNanoseconds()
        try Command.check([tool, "fork", "n\(round)", "--template", "debian12", "--bridge", bridge, "--subnet", subnet, "--store", mountPoint])
        ours.append(Double(monotonicNanoseconds() - began))
        let copy = "\(mountPoint)/by-hand-net-\(round)", namespace = "bh\(getpid() % 10_000)-\(round)", veth = "bh\(getpid() % 10_000)v\(round)"
        let address = "\(prefix).\(200 + round)"
        try Command.check(["btrfs", "filesystem", "sync", mountPoint])
        began = monotonicNanoseconds()
        try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(mountPoint)/templates/debian12", copy])
        try Command.check(["sh", "-c", "truncate -s 0 \(copy)/etc/machine-id && rm -f \(copy)/var/lib/dbus/machine-id "
                           + "\(copy)/etc/ssh/ssh_host_* \(copy)/var/lib/systemd/random-seed && echo h\(round) > \(copy)/etc/hostname && "
                           + "mkdir -p \(copy)/var/lib/cloud/seed/nocloud && cd \(copy)/var/lib/cloud/seed/nocloud && "
                           + "printf 'instance-id: h\(round)-%s\\nlocal-hostname: h\(round)\\n' $(date +%s%N) > meta-data && "
                           + "printf 'version: 2\\nethernets:\\n  eth0:\\n    addresses: [\(address)/24]\\n' > network-config"])
        try Command.check(["ip", "netns", "add", namespace])
        try Command.check(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace])
        try Command.check(["ip", "link", "set", veth, "master", bridge, "up"])
        try Command.check(["ip", "-n", namespace, "addr", "add", "\(address)/24", "dev", "eth0"])
        try Command.check(["ip", "-n", namespace, "link", "set", "eth0", "up"])
        try Command.check(["ip", "-n", namespace, "link", "set", "lo", "up"])
        try Command.check(["ip", "-n", namespace, "route", "add", "default", "via", "\(prefix).1"])
        byHand.append(Double(monotonicNanoseconds() - began))
        try Command.check(["ip", "netns", "del", namespace])
        try Command.check(["btrfs", "-q", "subvolume", "delete", copy])
        try Command.check([tool, "remove", "n\(round)", "--store", mountPoint])
    }
    return Comparison(operation: "fork + network (replica-machine fork --bridge)", replica: median(ours),
                      tool: "snapshot + sysprep + seed + 7 ip commands:", toolTime: median(byHand))
}

/// Fork → READY of machine `rROUND` from `template`: `Machines.fork` then `MachineProcess.start --wait`; stopped after.
/// `emptyBoot`: the fork's default target made an empty one (untimed), so that its systemd starts
/// no unit: what is left is systemd-nspawn's setup and the guest manager's own start.
func forkAndBoot(_ round: Int, template: String = "debian12", store: borrowing Store, emptyBoot: Bool = false) throws -> (total: Double, boot: Double) {
    var began = monotonicNanoseconds()
    let machine = try Machines.fork("r\(round)", template: template, in: store)
    if emptyBoot {
        let edited = monotonicNanoseconds()
        let root = try RootDirectory(machine.path)
        try root.replaceFile("etc/systemd/system/empty.target", contents: Array("[Unit]\nDescription=Nothing\n".utf8))
        try root.replaceSymlink("etc/systemd/system/default.target", target: "empty.target")
        began += monotonicNanoseconds() - edited
    }
    let forked = monotonicNanoseconds()
    _ = try MachineProcess.start(machine, wait: .seconds(60))
    let ready = monotonicNanoseconds()
    try MachineProcess.stop(machine.name)
    try Command.check(["btrfs", "filesystem", "sync", store.path])  // what the guest wrote, on disk before the next round
    return (Double(ready - began), Double(ready - forked))
}

/// A bare `systemd-nspawn -U --template=TEMPLATE --boot --notify-ready=yes`: nspawn's own fork
/// of the template (a btrfs snapshot into --directory, identity unchanged), a user namespace of
/// its own, to READY; stopped after. In a cgroup of its own as Replica's machines are (a scope,
/// or Replica's cgroup where no systemd runs: nspawn's user namespace needs one it may own).
func bootPlainSnapshot(_ round: Int, mountPoint: String) throws -> Double {
    let path = "\(mountPoint)/plain-\(round)", name = "plain\(round)"
    let began = monotonicNanoseconds()
    let placement = MachinePlacement.current(for: name, foreground: false)
    let command = ["systemd-nspawn", "--quiet", "--boot", "--notify-ready=yes", "-U", "--private-network",
                   "--template=\(mountPoint)/templates/debian12", "--directory=\(path)", "--machine=\(name)"]
        + placement.nspawnArguments(MachineLimits())
    _ = try MachineProcess.begin(name, command: command, in: try placement.prepare(name, limits: MachineLimits()))
        .waitReady(timeout: .seconds(60))
    let took = Double(monotonicNanoseconds() - began)
    try MachineProcess.stop("plain\(round)")
    unlink("\(MachineProcess.runDirectory)/plain\(round).log")
    try Command.check(["btrfs", "filesystem", "sync", mountPoint])  // what the guest wrote, on disk before the next round
    return took
}

/// `count` machines forked from `template` and started at once: the time until all are READY,
/// and how many failed to fork or were not READY within two minutes. All are stopped and removed.
func forkAndBootAtOnce(_ count: Int, template: String, store: borrowing Store) throws -> (time: Double, failures: Int) {
    let names = (0..<count).map { "p\($0)" }
    let began = monotonicNanoseconds()
    var starting: [MachineProcess.Starting] = [], failures = 0
    for name in names {
        do { starting.append(try MachineProcess.begin(try Machines.fork(name, template: template, in: store))) } catch { failures += 1 }
    }
    for machine in starting where (try? machine.waitReady(timeout: .seconds(120))) == nil { failures += 1 }
    let time = Double(monotonicNanoseconds() - began)
    for name in names { try? MachineProcess.stop(name) }
    for machine in try Machines.list(in: store) { try Machines.remove(machine.name, from: store) }  // and their console logs
    return (time, failures)
}

/// The `q`th quartile (1 or 3) of `values`: with the median, how wide the spread is.
func quartile(_ values: [Double], _ q: Int) -> Double { values.sorted()[values.count * q / 4] }

/// The end-to-end suite's cached root in /var/cache/replica/e2e: its Debian 12 rootfs, or with
/// `vm` the VM guest's (`Tests/EndToEnd/rootfs [vm]` builds them); nil, and `skipping` said so,
/// when it was never built.
func cachedRoot(vm: Bool = false, skipping: String) -> String? {
    let prefix = vm ? "vm-rootfs" : "rootfs"
    guard let found = try? Command.check(["sh", "-c", "ls -d /var/cache/replica/e2e/\(prefix)-*/ | head -1"]).split(separator: "\n").first,
          !found.isEmpty else {
        print("(\(skipping) skipped: no \(vm ? "VM guest root" : "end-to-end rootfs") in /var/cache/replica/e2e; run Tests/EndToEnd/rootfs\(vm ? " vm" : ""))")
        return nil
    }
    return String(found.dropLast())
}
