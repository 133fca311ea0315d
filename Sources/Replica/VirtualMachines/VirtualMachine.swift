import Glibc
import ReplicaKit

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
                      extra: [String] = [], record: Bool = true) throws(ReplicaError) -> MachineProcess.Starting {
        let name = machine.name
        let (acceleration, notice) = QEMU.acceleration(probing: "\(machine.path)/\(VMImage.kernel)")
        if let notice { printError("replica-machine: \(name): \(notice)") }
        let socketPath = QEMU.runtimePath(name, "notify")
        let notify = try MachineProcess.unixSocket(socketPath, stream: true)
        let log = try MachineProcess.openLog(name)
        let back = group?.current() ?? []
        try group?.enter()
        defer { if group != nil { ControlGroup.enter(back) } }
        var started: [Int32] = []
        do throws(ReplicaError) {
            if vm.tpm {
                // Its state file, the machine's uid's, opened here: never a link, made anew if missing
                // (a fork from before TPMs were made).
                let fork = try RootDirectory(machine.path)
                if (try? fork.open(VMImage.tpmState, [.regularFile, .noSymlinks])) == nil { try fork.replaceFile(VMImage.tpmState, contents: [], mode: 0o600) }
                let state = try fork.open(VMImage.tpmState, [.regularFile, .noSymlinks]).reopen(O_RDWR | O_CLOEXEC)
                let uid = machine.users?.rootUID ?? 0
                _ = try syscall("fchown", "\(machine.path)/\(VMImage.tpmState)") { fchown(state.rawValue, uid, uid) }
                let control = try MachineProcess.unixSocket(QEMU.runtimePath(name, "tpm"), stream: true)
                started.append(try Command.spawn(QEMU.tpmCommand(machine), output: log.rawValue, newSession: true, passing: [control.rawValue, state.rawValue]))
            }
            unlink(QEMU.runtimePath(name, "qmp"))
            let pid = try Command.spawn(QEMU.command(machine, vm, acceleration: acceleration) + extra, output: log.rawValue, newSession: true)
            started.append(pid)
            if case .scope = placement {
                try SystemdManager.startScope("machine-\(name).scope", pids: started, slice: "machine.slice",
                                              description: "Replica virtual machine \(name)", properties: machine.limits.unitProperties)
            }
            if record { try MachineProcess.record(name, pid: pid) }
            return MachineProcess.Starting(name: name, pid: pid, notify: notify, socketPath: socketPath)
        } catch {
            for pid in started.reversed() { kill(pid, SIGKILL); var status: Int32 = 0; _ = waitpid(pid, &status, 0) }
            unlink(socketPath)
            throw error
        }
    }

    /// Powers QEMU `pid` of machine `name` off: ACPI power button over the monitor
    /// (`system_powerdown`, what pressing it does), waiting up to `timeout` for the guest to shut
    /// down, then kills it (SIGKILL). Its TPM ends with it (`--terminate`).
    static func stop(_ name: String, pid: Int32, timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        if var monitor = try? QMP.connect(QEMU.runtimePath(name, "qmp")), (try? monitor.execute("system_powerdown", until: deadline)) != nil {
            while ContinuousClock.now < deadline, MachineProcess.running(name) != nil {
                var status: Int32 = 0
                _ = waitpid(pid, &status, WNOHANG)  // reaps it when it is our child
                usleep(20_000)
            }
        }
        if MachineProcess.running(name) != nil {
            kill(pid, SIGKILL)
            for _ in 0..<100 where MachineProcess.running(name) != nil {
                var status: Int32 = 0
                _ = waitpid(pid, &status, WNOHANG)
                usleep(20_000)
            }
        }
        for suffix in ["qmp", "tpm", "vnc", "notify"] { unlink(QEMU.runtimePath(name, suffix)) }
    }
}
