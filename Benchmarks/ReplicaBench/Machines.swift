import BenchmarkSupport
import Glibc
import ReplicaKit
import ReplicaStore

/// Machines forked from the end-to-end suite's Debian 12 template: the host-side fork (snapshot,
/// identity reset, seed) against what a user would run (`btrfs subvolume snapshot`, then a manual
/// sysprep with `truncate`, `rm` and a hostname file); fork to READY against a bare
/// `systemd-nspawn --boot --notify-ready=yes` of a plain snapshot; ten machines in parallel.
func benchmarkMachines() throws -> [Comparison] {
    guard let rootfs = try? Command.check(["sh", "-c", "ls -d /var/cache/replica/e2e/rootfs-*/ | head -1"]).split(separator: "\n").first,
          !rootfs.isEmpty else {
        print("(machine figures skipped: no end-to-end rootfs in /var/cache/replica/e2e; run Tests/EndToEnd/rootfs)")
        return []
    }
    return try withBenchmarkStore(size: 3 << 30) { store, mountPoint in
        try Templates.importTemplate("debian12", from: String(rootfs.dropLast()), into: store)
        var forks: [Double] = [], byHand: [Double] = []
        for round in 0..<20 {
            var began = monotonicNanoseconds()
            try Machines.fork("f\(round)", template: "debian12", in: store)
            forks.append(Double(monotonicNanoseconds() - began))
            let copy = "\(mountPoint)/by-hand-\(round)"
            began = monotonicNanoseconds()
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(mountPoint)/templates/debian12", copy])
            try Command.check(["sh", "-c", "truncate -s 0 \(copy)/etc/machine-id && rm -f \(copy)/var/lib/dbus/machine-id "
                               + "\(copy)/etc/ssh/ssh_host_* && echo h\(round) > \(copy)/etc/hostname"])
            byHand.append(Double(monotonicNanoseconds() - began))
        }

        // Fork → READY, against a bare nspawn of a plain snapshot; alternating.
        var ready: [Double] = [], bare: [Double] = []
        for round in 0..<5 {
            var began = monotonicNanoseconds()
            let machine = try Machines.fork("r\(round)", template: "debian12", in: store)
            _ = try MachineProcess.start(machine.name, command: Machines.spawnCommand(machine), wait: .seconds(60))
            ready.append(Double(monotonicNanoseconds() - began))
            try MachineProcess.stop(machine.name)
            let plain = "\(mountPoint)/plain-\(round)"
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(mountPoint)/templates/debian12", plain])
            began = monotonicNanoseconds()
            let pid = try MachineProcess.start("plain\(round)", command: ["systemd-nspawn", "--quiet", "--boot", "--notify-ready=yes",
                                                                         "--register=no", "--keep-unit", "--private-network",
                                                                         "--directory=\(plain)", "--machine=plain\(round)"],
                                               wait: .seconds(60))
            bare.append(Double(monotonicNanoseconds() - began))
            _ = pid
            try MachineProcess.stop("plain\(round)")
            unlink("\(MachineProcess.runDirectory)/plain\(round).log")
        }

        // Ten at once, ready when all are.
        let names = (0..<10).map { "p\($0)" }
        let began = monotonicNanoseconds()
        let starting = try names.map { name in
            let machine = try Machines.fork(name, template: "debian12", in: store)
            return try MachineProcess.begin(name, command: Machines.spawnCommand(machine))
        }
        for machine in starting { _ = try machine.waitReady(timeout: .seconds(120)) }
        let ten = Double(monotonicNanoseconds() - began)
        for name in names { try MachineProcess.stop(name) }
        for machine in try Machines.list(in: store) { try Machines.remove(machine.name, from: store) }  // and their console logs
        print("replica-bench: ten machines forked and booted at once, all READY in \(formatDuration(ten)) (target: under 3 s)")
        return [
            Comparison(operation: "fork: snapshot + identity reset + seed", replica: median(forks),
                       tool: "btrfs subvolume snapshot + sysprep by hand:", toolTime: median(byHand)),
            Comparison(operation: "fork → READY (replica-machine start --wait)", replica: median(ready),
                       tool: "systemd-nspawn --boot --notify-ready=yes:", toolTime: median(bare)),
        ]
    }
}
