import BenchmarkSupport
import CReplicaShim
import Glibc
import Replica
import ReplicaKit
import ReplicaStore

/// VMs forked from the tests' guest root (`Tests/EndToEnd/rootfs vm`): the host-side fork of a
/// 1 GiB fresh disk and of a 20 GiB one fragmented by 100,000 scattered writes, against the reflink copy of the disk a
/// user would make (`cp --reflink=always`, as libvirt's btrfs pools clone; each copy removed before
/// the next round, whose fork and copy would otherwise pay for its references); fork → READY against a
/// bare QEMU boot of the same disk, kernel, machine type and acceleration (none of our extra devices), READY read from
/// the same port by a plain listener, taking turns; and fork → READY of the same root imported
/// `--minimal` (units trimmed, no initrd where its kernel mounts the root itself) against it stock.
func benchmarkVirtualMachines() throws -> [Comparison] {
    guard let root = cachedRoot(vm: true, skipping: "VM figures") else { return [] }
    return try withBenchmarkStore(size: 24 << 30) { store, mountPoint in
        var rows: [Comparison] = []
        for (name, size, extents) in [("fresh", UInt64(1) << 30, 0), ("fragmented", UInt64(20) << 30, 100_000)] {
            _ = try Templates.importTemplate(name, from: root, into: store, vm: VMImage(), diskSize: size, check: false)
            let counted = extents > 0 ? try fragment("\(mountPoint)/templates/\(name)", writes: extents) : 0
            var forks: [Double] = [], copies: [Double] = []
            for round in 0..<10 {
                try Command.check(["btrfs", "filesystem", "sync", mountPoint])
                var began = monotonicNanoseconds()
                try Machines.fork("\(name)\(round)", template: name, in: store)
                forks.append(Double(monotonicNanoseconds() - began))
                try Command.check(["btrfs", "filesystem", "sync", mountPoint])
                began = monotonicNanoseconds()
                try Command.check(["cp", "--reflink=always", "\(mountPoint)/templates/\(name)/\(VMImage.disk)", "\(mountPoint)/copy-\(name).raw"])
                copies.append(Double(monotonicNanoseconds() - began))
                // Each round from the same store: a copy left behind adds a reference to every
                // extent, which the next fork's commit and the next copy would both pay for.
                unlink("\(mountPoint)/copy-\(name).raw")
            }
            let described = extents > 0 ? "\(size >> 30) GiB disk, \(counted) extents" : "\(size >> 30) GiB disk, fresh"
            rows.append(Comparison(operation: "VM fork, host-side (\(described))", replica: median(forks),
                                   tool: "cp --reflink=always of the disk:", toolTime: median(copies)))
            for machine in try Machines.list(in: store) { try Machines.remove(machine.name, from: store) }
        }

        // Fork → READY against a bare QEMU of the same image, devices and acceleration (no TPM: the
        // tests' guest makes an endorsement key at boot when it has one); alternating which goes first.
        var plain = VMImage()
        plain.tpm = false
        _ = try Templates.importTemplate("plain", from: root, into: store, vm: plain, diskSize: 1 << 30, check: false)
        _ = try Templates.importTemplate("trimmed", from: root, into: store, minimal: true, vm: plain, diskSize: 1 << 30, check: false)
        let (acceleration, _) = QEMU.acceleration(probing: "\(mountPoint)/templates/plain/\(VMImage.kernel)")
        var ready: [Double] = [], bare: [Double] = [], trimmed: [Double] = []
        for round in 0..<5 {
            if round % 2 == 1 { bare.append(try bareBoot(round, template: "\(mountPoint)/templates/plain", mountPoint: mountPoint, acceleration)) }
            let began = monotonicNanoseconds()
            _ = try MachineProcess.start(try Machines.fork("boot\(round)", template: "plain", in: store), wait: .seconds(300))
            ready.append(Double(monotonicNanoseconds() - began))
            try MachineProcess.stop("boot\(round)")
            if round % 2 == 0 { bare.append(try bareBoot(round, template: "\(mountPoint)/templates/plain", mountPoint: mountPoint, acceleration)) }
            let trimmedBegan = monotonicNanoseconds()
            _ = try MachineProcess.start(try Machines.fork("trim\(round)", template: "trimmed", in: store), wait: .seconds(300))
            trimmed.append(Double(monotonicNanoseconds() - trimmedBegan))
            try MachineProcess.stop("trim\(round)")
        }
        for machine in try Machines.list(in: store) { try Machines.remove(machine.name, from: store) }
        print("replica-bench: VMs here run under \(acceleration == .kvm ? "KVM" : "QEMU's emulation (TCG): KVM cannot run a guest on this host")")
        rows.append(Comparison(operation: "VM fork → READY (q35, \(acceleration.rawValue))", replica: median(ready),
                               tool: "bare qemu -kernel of a reflink copy:", toolTime: median(bare)))
        let kernelOnly = try Templates.template("trimmed", in: store).vm?.hasInitrd == false
        rows.append(Comparison(operation: "VM fork → READY, template import --minimal\(kernelOnly ? " (no initrd)" : "")", replica: median(trimmed),
                               tool: "the same root untrimmed (stock):", toolTime: median(ready)))
        return rows
    }
}

/// Fragments the template's disk: its subvolume writable a moment, `writes` blocks of 4 KiB written
/// 128 KiB apart, synced, read-only again. Returns its extents as FIEMAP lists them (`filefrag -v`'s
/// rows: what a reflink copy clones one by one); `filefrag`'s own total counts only the physically
/// discontiguous ones, which these writes, allocated in order, mostly are not.
func fragment(_ template: String, writes extents: Int) throws -> Int {
    let folder = try OwnedFD.open(template, O_RDONLY | O_DIRECTORY)
    try Btrfs.setReadOnly(folder, false, path: template)
    let disk = try OwnedFD.open("\(template)/\(VMImage.disk)", O_WRONLY)
    let block = [UInt8](repeating: 0xa5, count: 4096)
    for index in 0..<extents {
        _ = block.withUnsafeBytes { pwrite(disk.rawValue, $0.baseAddress, $0.count, off_t(index) * (128 << 10)) }
    }
    _ = fsync(disk.rawValue)
    try Btrfs.setReadOnly(folder, true, path: template)
    let listed = try Command.check(["filefrag", "-v", "\(template)/\(VMImage.disk)"])  // "   N:   LOGICAL..  PHYSICAL.. LENGTH: …"
    return listed.split(separator: "\n").filter { line in
        let first = line.drop { $0 == " " }.prefix { $0 != ":" }
        return !first.isEmpty && first.allSatisfy(\.isNumber)
    }.count
}

/// A user's QEMU boot of the template's disk (a reflink copy, made before timing): the same
/// machine type, memory, kernel, initrd and acceleration, no TPM, READY read from the same port
/// by a plain listener. Returns QEMU's start to READY.
func bareBoot(_ round: Int, template: String, mountPoint: String, _ acceleration: QEMU.Acceleration) throws -> Double {
    let disk = "\(mountPoint)/bare\(round).raw", socketPath = "/run/replica-bench-bare-\(getpid()).sock"
    try Command.check(["cp", "--reflink=always", "\(template)/\(VMImage.disk)", disk])
    defer { unlink(disk); unlink(socketPath) }
    unlink(socketPath)
    let listener = OwnedFD(adopting: socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    precondition(replica_bind_unix(listener.rawValue, socketPath) == 0 && listen(listener.rawValue, 1) == 0)
    let began = monotonicNanoseconds()
    let pid = try Command.spawn([QEMU.program, "-machine", "q35,accel=\(acceleration.rawValue)", "-cpu", acceleration == .kvm ? "host" : "max",
                                 "-m", "1024", "-smp", "2", "-nodefaults", "-display", "none", "-serial", "null",
                                 "-kernel", "\(template)/\(VMImage.kernel)", "-initrd", "\(template)/\(VMImage.initrd)",
                                 "-append", "root=/dev/vda rw console=ttyS0",
                                 "-drive", "file=\(disk),format=raw,if=virtio", "-device", "virtio-serial-pci",
                                 "-chardev", "socket,id=n,path=\(socketPath)", "-device", "virtserialport,chardev=n,name=\(VMImage.notifyPort)"])
    let connection = OwnedFD(adopting: accept(listener.rawValue, nil, nil))
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 256)
    while !String(decoding: received, as: UTF8.self).contains("READY=1") {
        let count = read(connection.rawValue, &buffer, buffer.count)
        guard count > 0 else { break }
        received += buffer[..<count]
    }
    let elapsed = Double(monotonicNanoseconds() - began)
    kill(pid, SIGKILL)
    _ = try ExitStatus.wait(for: pid)
    return elapsed
}
