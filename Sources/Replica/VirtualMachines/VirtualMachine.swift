import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaNet

/// A virtual machine's processes: its software TPM and its QEMU, started in the machine's cgroup,
/// READY read from the virtio-serial port QEMU connects to a socket Replica listens on (before
/// QEMU starts), stopped by ACPI power-off over QEMU's monitor.
public enum VirtualMachine {
    /// Starts booting `machine` (a fork of a VM template, from `Machines.prepareStart`): `swtpm`
    /// first when it has a TPM, then QEMU with the acceleration this host gives a guest (its notice
    /// printed when that is emulation), both in `group` (Replica's own cgroup) or moved into the
    /// scope `machine-NAME.scope` where systemd places it. `extra`: more QEMU arguments
    /// (`-snapshot` for a template's check boot), whose pid is not
    /// recorded unless `record`. Nothing of it is left running when this fails.
    static func begin(_ machine: Machines.Machine, _ vm: VMImage, placement: MachinePlacement?, in group: ControlGroup?,
                      networkNamespace: String? = nil, extra: [String] = [], record: Bool = true) throws(ReplicaError) -> MachineProcess.Starting {
        let name = machine.name
        try QEMU.checkFirmware(vm.machineType, vm.firmware)
        let (acceleration, notice) = QEMU.acceleration(probing: "\(machine.path)/\(VMImage.kernel)")
        if let notice { printError("replica-machine: \(name): \(notice)") }
        let socketPath = QEMU.runtimePath(name, "notify")
        let notify = try MachineProcess.unixSocket(socketPath, stream: true)
        let log = try MachineProcess.openLog(name)
        // Started in its cgroup: QEMU, and swtpm before it.
        func startHere() throws(ReplicaError) -> Int32 {
            var started: [Int32] = []
            do throws(ReplicaError) {
                if vm.tpm {
                    // Its state file, the machine's uid's, opened here: never a link, made empty at the
                    // machine's first start (a fork makes none).
                    let fork = try RootDirectory(machine.path)
                    if (try? fork.open(VMImage.tpmState, [.regularFile, .noSymlinks])) == nil { try fork.replaceFile(VMImage.tpmState, contents: [], mode: 0o600) }
                    let state = try fork.open(VMImage.tpmState, [.regularFile, .noSymlinks]).reopen(O_RDWR | O_CLOEXEC)
                    let uid = machine.users?.rootUID ?? 0
                    _ = try syscall("fchown", "\(machine.path)/\(VMImage.tpmState)") { fchown(state.rawValue, uid, uid) }
                    let control = try MachineProcess.unixSocket(QEMU.runtimePath(name, "tpm"), stream: true)
                    started.append(try Command.spawn(QEMU.tpmCommand(machine), output: log.rawValue, newSession: true, passing: [control.rawValue, state.rawValue]))
                    // Recorded: a QEMU that never connected to it (it died first) leaves it waiting.
                    try OwnedFD.open(QEMU.runtimePath(name, "tpm.pid"), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
                        .writeAll(Array("\(started[0])\n".utf8))
                }
                unlink(QEMU.runtimePath(name, "qmp"))
                let spawn = { (tap: Int32?) throws(ReplicaError) -> Int32 in
                    let network = try tap.map { (_) throws(ReplicaError) in
                        QEMU.GuestNetwork(descriptor: 3, mac: QEMU.GuestNetwork.mac(for: machine.machineID ?? ""),
                                          addresses: try MachineNetwork.guestAddresses(machine))
                    }
                    return try Command.spawn(QEMU.command(machine, vm, acceleration: acceleration, network: network) + extra, output: log.rawValue,
                                             newSession: true, passing: tap.map { [$0] } ?? [])
                }
                let pid: Int32
                if let networkNamespace {
                    // Its tap, in its namespace on the bridge there; once QEMU runs it holds the only descriptor.
                    let tap = try TapDevice.open(MachineNetwork.guestTap, in: networkNamespace, bridge: MachineNetwork.guestBridge)
                    pid = try spawn(tap.rawValue)
                } else {
                    pid = try spawn(nil)
                }
                started.append(pid)
                if case .scope = placement {
                    try SystemdManager.startScope("machine-\(name).scope", pids: started, slice: "machine.slice",
                                                  description: "Replica virtual machine \(name)", properties: machine.limits.unitProperties)
                }
                if record { try MachineProcess.record(name, pid: pid) }
                return pid
            } catch {
                for pid in started.reversed() { kill(pid, SIGKILL); var status: Int32 = 0; _ = waitpid(pid, &status, 0) }
                removeRuntimeFiles(name)
                throw error
            }
        }
        let pid = if let group { try group.whileEntered(startHere) } else { try startHere() }
        return MachineProcess.Starting(name: name, pid: pid, notify: notify, socketPath: socketPath)
    }

    /// Runs `machine` under its unit (`replica-machine@NAME.service`, `start --foreground`):
    /// QEMU cannot tell systemd READY itself, so this process stays as the unit's main one,
    /// passes READY on (`sd_notify`) once the guest said it within `timeout`, powers the guest
    /// off when systemd stops the unit (SIGTERM: ACPI power-off, killed after `stopTimeout`), and
    /// returns how QEMU ended. A guest that reboots stays in the same QEMU.
    public static func runForeground(_ machine: Machines.Machine, _ vm: VMImage, timeout: Duration,
                                     stopTimeout: Duration = .seconds(45)) throws(ReplicaError) -> ExitStatus {
        let signals = OwnedFD(adopting: try syscall("signalfd(SIGTERM, SIGINT, SIGHUP, SIGCHLD)") { replica_supervisor_signalfd() })
        let placement = MachinePlacement.current(for: machine.name, foreground: true)
        let starting = try begin(machine, vm, placement: placement, in: try placement.prepare(machine.name, limits: machine.limits))
        _ = try starting.waitReady(timeout: timeout)
        _ = Systemd.notify("READY=1\nSTATUS=\(machine.name) is ready")
        var status: Int32 = 0
        while true {
            if waitpid(starting.pid, &status, WNOHANG) == starting.pid {
                removeRuntimeFiles(machine.name)  // a guest that powered itself off
                return ExitStatus(waitStatus: status)
            }
            var poll = pollfd(fd: signals.rawValue, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&poll, 1, 500) > 0 else { continue }
            var info = [UInt8](repeating: 0, count: 128)  // struct signalfd_siginfo; ssi_signo comes first
            guard read(signals.rawValue, &info, info.count) > 0 else { continue }
            if Int32(info.withUnsafeBytes { $0.load(as: UInt32.self) }) != SIGCHLD {
                _ = Systemd.notify("STOPPING=1")
                if let ended = stop(machine.name, pid: starting.pid, timeout: stopTimeout) { return ended }
            }
        }
    }

    /// Removes what a VM that ended leaves: its console (closed), its software TPM if QEMU never
    /// connected to it (it ends by itself when QEMU does), its monitor, TPM, display and READY
    /// sockets in `/run/replica/machines`. Nothing of that name there is not an error.
    static func removeRuntimeFiles(_ name: String) {
        VMConsole.close(name)
        let record = QEMU.runtimePath(name, "tpm.pid")
        if let text = try? OwnedFD.open(record, O_RDONLY | O_NOFOLLOW).readLine(), let pid = Int32(text),
           let words = try? OwnedFD.open("/proc/\(pid)/cmdline", O_RDONLY).readAll(limit: 1 << 16),
           words.starts(with: Array("swtpm".utf8)) {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        for suffix in ["qmp", "tpm", "vnc", "notify", "tpm.pid"] { unlink(QEMU.runtimePath(name, suffix)) }
    }

    /// Powers QEMU `pid` of machine `name` off: ACPI power button over the monitor
    /// (`system_powerdown`, what pressing it does), waiting up to `timeout` for the guest to shut
    /// down, then kills it (SIGKILL). Its TPM ends with it (`--terminate`). Returns how it ended
    /// when it was this process's child (reaped here), else nil.
    @discardableResult
    static func stop(_ name: String, pid: Int32, timeout: Duration) -> ExitStatus? {
        defer { removeRuntimeFiles(name) }
        var reaped: ExitStatus? = nil
        // Running until it ends: reaped here when it is our child, else gone from /proc.
        func ended() -> Bool {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { reaped = ExitStatus(waitStatus: status) }
            return reaped != nil || MachineProcess.running(name) == nil
        }
        let deadline = ContinuousClock.now + timeout
        if var monitor = try? QMP.connect(QEMU.runtimePath(name, "qmp")), (try? monitor.execute("system_powerdown", until: deadline)) != nil {
            while ContinuousClock.now < deadline, !ended() { usleep(20_000) }
        }
        if !ended() {
            kill(pid, SIGKILL)
            for _ in 0..<100 where !ended() { usleep(20_000) }
        }
        return reaped
    }
}
