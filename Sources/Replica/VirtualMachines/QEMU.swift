import Glibc
import ReplicaKit
import ReplicaNet

/// QEMU as Replica runs a virtual machine: the command line for a fork (its disk, kernel and
/// identity, READY on a virtio-serial port, the monitor, the TPM, the display), and the
/// acceleration a probe boot found on this host.
public enum QEMU {
    /// The emulator.
    public static let program = "qemu-system-x86_64"

    /// How guest code runs.
    public enum Acceleration: String, Sendable {
        /// The host's CPU, through `/dev/kvm`.
        case kvm
        /// QEMU's own translator: every guest instruction emulated (many times slower).
        case tcg
    }

    /// A running machine's file in `/run/replica/machines`: `NAME.notify` (READY), `NAME.qmp` (the
    /// monitor), `NAME.tpm` (its software TPM), `NAME.vnc` (its display).
    public static func runtimePath(_ name: String, _ suffix: String) -> String { "\(MachineProcess.runDirectory)/\(name).\(suffix)" }

    /// A VM's network as QEMU and the guest's kernel take it: the tap's descriptor as QEMU gets it
    /// (`-netdev tap,fd=N`), the MAC address, and the addresses the guest sets itself.
    public struct GuestNetwork: Sendable {
        /// The tap's descriptor number in QEMU.
        public var descriptor: Int32
        /// The guest's MAC address (`52:54:00:…`, QEMU's prefix, the rest from its machine id).
        public var mac: String
        /// Its addresses and gateways.
        public var addresses: Machines.Addresses?

        /// The kernel's `ip=` for each address, as systemd-network-generator reads them into
        /// systemd-networkd's configuration (`ip=ADDR::GATEWAY:NETMASK::eth0:off`, IPv6 in
        /// brackets with its prefix length), the interface named `eth0` (`net.ifnames=0`).
        public var kernelArguments: [String] {
            guard let addresses, let v4 = try? IPPrefix(addresses.address) else { return [] }
            let mask = (0..<4).map { byte in String(UInt8(truncatingIfNeeded: (UInt64(0xffff_ffff) << (32 - UInt64(v4.length))) >> (8 * (3 - byte)))) }
            var arguments = ["net.ifnames=0", "ip=\(v4.addressText)::\(addresses.gateway ?? ""):\(mask.joined(separator: ".")):"
                                + ":eth0:off"]
            if let address6 = addresses.address6, let v6 = try? IPPrefix(address6) {
                arguments.append("ip=[\(v6.addressText)]::" + (addresses.gateway6.map { "[\($0)]" } ?? "") + ":\(v6.length)::eth0:none")
            }
            return arguments
        }

        /// `52:54:00` and three bytes of `machineID` (32 hex digits).
        public static func mac(for machineID: String) -> String {
            let digits = Array(machineID.utf8.count == 32 ? machineID : String(repeating: "0", count: 32))
            return "52:54:00:" + [0, 2, 4].map { String(digits[$0..<$0 + 2]) }.joined(separator: ":")
        }

        /// A guest network.
        public init(descriptor: Int32, mac: String, addresses: Machines.Addresses?) {
            (self.descriptor, self.mac, self.addresses) = (descriptor, mac, addresses)
        }
    }

    /// QEMU's command line for `machine` (a fork of a VM template), booting its own disk, kernel
    /// and initrd with `acceleration`. Its identity: the machine id as `systemd.machine_id=`, the
    /// SMBIOS UUID and the VM generation id; the hostname as `systemd.hostname=`; root's SSH keys as
    /// a systemd credential in SMBIOS type 11; in a set, its resolver (`resolverLines`), another;
    /// for cloud-init, a NoCloud seed in the SMBIOS serial number. QEMU confines itself
    /// (`-sandbox`) and, for a machine with a user range, runs as the range's first uid once its
    /// files are open (`-runas`): a guest that escapes into QEMU is no one on the host. `network`:
    /// its tap and addresses.
    public static func command(_ machine: Machines.Machine, _ vm: VMImage, acceleration: Acceleration,
                               network: GuestNetwork? = nil) -> [String] {
        let name = machine.name
        let dropsToOwnUID = if case .range = machine.users { true } else { false }
        let bus = vm.machineType == .q35 ? "pci" : "device"  // PCI devices, or virtio-mmio ones
        var command = [program, "-name", "guest=\(name)", "-machine", "\(vm.machineType.rawValue),accel=\(acceleration.rawValue)",
                       "-cpu", acceleration == .kvm ? "host" : "max", "-m", "\(vm.memory)", "-smp", "\(vm.cpus)",
                       "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                       "-qmp", "unix:\(option(runtimePath(name, "qmp"))),server=on,wait=off",
                       // QEMU's own seccomp filter: no obsolete calls, no programs, no host tuning, and no
                       // set*id calls — unless it drops to its uid after the filter is in (-runas); that
                       // uid then holds no capability to take any other with.
                       "-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny,elevateprivileges=\(dropsToOwnUID ? "allow" : "deny")",
                       "-kernel", "\(machine.path)/\(VMImage.kernel)"]
        if case .range(let base) = machine.users {
            command += ["-runas", "\(base):\(base)"]  // the machine's own host uid once its files are open: never root
        }
        if vm.hasInitrd { command += ["-initrd", "\(machine.path)/\(VMImage.initrd)"] }
        var kernel = ["root=\(vm.root)", "rw", "console=ttyS0", "systemd.hostname=\(machine.hostname)"]
        if !vm.hasInitrd && vm.diskBus == .nvme {
            // The kernel mounts the root itself, and NVMe finds its namespaces asynchronously: it
            // waits for the disk (virtio-blk's probe is done by then; without the disk it panics).
            kernel.append("rootwait")
        }
        if let id = machine.machineID { kernel.append("systemd.machine_id=\(id)") }
        kernel += network?.kernelArguments ?? []
        if acceleration == .tcg, let khz = tscKilohertz {
            // Under emulation the kernel's clock calibration may never end (a microvm's always, a
            // q35's while the host's CPUs are busy): its TSC frequency given, it calibrates nothing.
            kernel.append("tsc_early_khz=\(khz)")
        }
        command += ["-append", kernel.joined(separator: " ")]
        // cloud-init's NoCloud seed without a seed disk: its instance id (new per fork) and hostname
        // in the SMBIOS serial number, which it reads first.
        command += ["-smbios", "type=1,serial=" + option("ds=nocloud;i=replica-\(machine.machineID ?? machine.name);h=\(machine.hostname)")]
        if let uuid = machine.uuid {
            command += ["-uuid", uuid]
            if vm.machineType == .q35 { command += ["-device", "vmgenid,guid=\(uuid)"] }
        }
        if !machine.sshKeys.isEmpty {
            command += ["-smbios", "type=11,value=" + option("io.systemd.credential:ssh.authorized_keys.root=" + machine.sshKeys.joined(separator: "\n"))]
        }
        if let domain = machine.domain, let gateway = network?.addresses?.gateway {
            command += ["-smbios", "type=11,value=" + option("io.systemd.credential:tmpfiles.extra=" + resolverLines(gateway: gateway, domain: domain))]
        }
        command += ["-drive", "file=\(option("\(machine.path)/\(VMImage.disk)")),format=raw,if=none,id=root,discard=unmap",
                    "-device", vm.diskBus == .nvme ? "nvme,drive=root,serial=replica-root" : "virtio-blk-\(bus),drive=root",
                    "-device", "virtio-rng-\(bus)",
                    "-device", "virtio-serial-\(bus)",
                    "-chardev", "socket,id=notify,path=\(option(runtimePath(name, "notify"))),reconnect=1",  // no listener (start --wait 0): not an error
                    "-device", "virtserialport,chardev=notify,name=\(VMImage.notifyPort)"]
        if let network {
            command += ["-netdev", "tap,id=net0,fd=\(network.descriptor)", "-device", "virtio-net-\(bus),netdev=net0,mac=\(network.mac)"]
        }
        if vm.firmware == .uefi {
            // OVMF's code, shared and read-only; its variables, the machine's own file.
            command += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(option(uefiPath(uefiCode)))",
                        "-drive", "if=pflash,format=raw,unit=1,file=\(option("\(machine.path)/\(VMImage.variables)"))"]
        }
        if vm.machineType == .q35 {
            command += ["-device", "VGA", "-vnc", "unix:\(option(runtimePath(name, "vnc")))"]
            if vm.tpm {
                command += ["-chardev", "socket,id=tpm,path=\(option(runtimePath(name, "tpm")))",
                            "-tpmdev", "emulator,id=tpm0,chardev=tpm", "-device", "tpm-tis,tpmdev=tpm0"]
            }
        }
        return command
    }

    /// A VM's resolver in its set, a container's `/etc/resolv.conf` (`Machines.resolvConf`):
    /// `tmpfiles.d` lines its systemd-tmpfiles applies at every boot from the credential
    /// `tmpfiles.extra` (systemd 252 reads it; 254's network credentials are not needed), the file
    /// in the guest's `/run` (its newlines written as tmpfiles' `\n`) and `/etc/resolv.conf` a link to it.
    static func resolverLines(gateway: String, domain: String) -> String {
        let escaped = Machines.resolvConf(gateway: gateway, domain: domain).split(separator: "\n").map { $0 + "\\n" }.joined()
        return ["d /run/replica 0755 root root -", "f+ /run/replica/resolv.conf 0644 root root - \(escaped)",
                "L+ /etc/resolv.conf - - - - /run/replica/resolv.conf"].joined(separator: "\n")
    }

    /// The software TPM of machine `name` (`swtpm socket --tpm2`), as the machine's own uid like
    /// QEMU, handed what it uses open by Replica: its control socket `NAME.tpm` as descriptor 3
    /// and the fork's own state file `tpm.state` as descriptor 4 (its uid cannot reach the store's
    /// folders by path). It ends when QEMU disconnects (`--terminate`).
    public static func tpmCommand(_ machine: Machines.Machine) -> [String] {
        ["swtpm", "socket", "--tpm2", "--tpmstate", "backend-uri=file:///proc/self/fd/4",
         "--ctrl", "type=unixio,fd=3", "--terminate", "--log", "level=1"]
            + (machine.users.flatMap { if case .range(let base) = $0 { ["--runas", "\(base)"] } else { nil } } ?? [])
    }

    /// Where QEMU looks for its firmware, in order (`qemu-system-x86_64 -L help` on Debian).
    public static let firmwareDirectories = ["/usr/share/qemu", "/usr/share/seabios"]
    /// Where Debian's ovmf package puts UEFI for x86 machines.
    public static let uefiDirectories = ["/usr/share/OVMF"]
    /// UEFI's code (4 MiB flash, no Secure Boot keys enrolled): QEMU's first pflash drive.
    public static let uefiCode = "OVMF_CODE_4M.fd"
    /// UEFI's empty variable store, which a UEFI template's `efivars.fd` is copied from at import.
    public static let uefiVariables = "OVMF_VARS_4M.fd"

    /// Where UEFI's `file` is: the first of `uefiDirectories` holding it (else where it would be).
    public static func uefiPath(_ file: String, in directories: [String] = uefiDirectories) -> String {
        directories.map { "\($0)/\(file)" }.first { access($0, R_OK) == 0 } ?? "\(directories[0])/\(file)"
    }

    /// Refuses a machine whose firmware QEMU would not find — SeaBIOS's `bios-256k.bin` for q35,
    /// `bios-microvm.bin` (qboot) for microvm, OVMF's code and variable store for UEFI — naming the
    /// file and the package. `directories`: where to look, QEMU's (or, for UEFI, OVMF's) by default.
    public static func checkFirmware(_ type: VMImage.MachineType, _ firmware: VMImage.Firmware = .bios,
                                     in directories: [String]? = nil) throws(ReplicaError) {
        let folders = directories ?? (firmware == .uefi ? uefiDirectories : firmwareDirectories)
        let files = firmware == .uefi ? [uefiCode, uefiVariables] : [type == .q35 ? "bios-256k.bin" : "bios-microvm.bin"]
        let package = firmware == .uefi ? "ovmf" : type == .q35 ? "seabios" : "qemu-system-data"
        for file in files where !folders.contains(where: { access("\($0)/\(file)", R_OK) == 0 }) {
            throw ReplicaError("start machine", [file], errno: .ENOENT,
                               hint: "QEMU's \(firmware == .uefi ? "UEFI" : "firmware") for a \(type.rawValue) machine is in none of "
                                   + "\(folders.joined(separator: ", ")); install it (Debian's \(package) package)", reason: .refused)
        }
    }

    /// A value inside a QEMU option: its commas doubled, as QEMU reads `a,,b` as `a,b`.
    static func option(_ value: String) -> String { value.replacingAll(",", with: ",,") }

    /// The host CPU's frequency in kHz (`/proc/cpuinfo`'s first `cpu MHz`), for a guest's
    /// `tsc_early_khz=` under emulation.
    static var tscKilohertz: Int? {
        guard let text = try? OwnedFD.open("/proc/cpuinfo", O_RDONLY).readAll(limit: 1 << 20) else { return nil }
        let line = String(decoding: text, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("cpu MHz") }
        return line.flatMap { Double($0.split(separator: ":").last?.trimmed ?? "") }.map { Int($0 * 1000) }
    }

    /// Where the probe's finding is kept until the host reboots.
    static let accelerationCache = "\(MachineProcess.runDirectory)/.acceleration"

    /// The acceleration this host gives a guest, with a notice when it is emulation: `kvm` only
    /// when `/dev/kvm` opens *and* a probe boot under it works — `kernel` (a guest's, given no root)
    /// reaches its panic within 5 s, as it does in well under one; a nested or broken KVM can
    /// open and still never run a guest. Probed once per boot of the host (kept in
    /// `/run/replica/machines/.acceleration`).
    public static func acceleration(probing kernel: String) -> (Acceleration, notice: String?) {
        let emulated = "VMs run under QEMU's emulation (TCG), many times slower"
        guard let kvm = try? OwnedFD.open("/dev/kvm", O_RDWR | O_CLOEXEC) else {
            return (.tcg, "\(emulated): /dev/kvm does not open (no KVM on this host, or no access to it)")
        }
        _ = kvm
        if let cached = try? OwnedFD.open(accelerationCache, O_RDONLY | O_NOFOLLOW).readLine(), let found = Acceleration(rawValue: cached) {
            return (found, found == .tcg ? "\(emulated): KVM cannot run a guest on this host (found by a probe boot)" : nil)
        }
        let found = probe(kernel)
        try? createDirectories(MachineProcess.runDirectory, mode: 0o700)
        try? RootDirectory(MachineProcess.runDirectory).writeFileAtomically(".acceleration", contents: Array("\(found.rawValue)\n".utf8), mode: 0o600)
        return (found, found == .tcg ? "\(emulated): /dev/kvm opens, but a probe boot under KVM did not run (a nested or broken KVM)" : nil)
    }

    /// Boots `kernel` under KVM with no root and `panic=-1 -no-reboot`: `.kvm` when QEMU ends
    /// having printed the kernel's panic within 5 s, else `.tcg`.
    static func probe(_ kernel: String) -> Acceleration {
        let log = "\(MachineProcess.runDirectory)/.probe.log"
        try? createDirectories(MachineProcess.runDirectory, mode: 0o700)
        guard let output = try? OwnedFD.open(log, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode: 0o600),
              let pid = try? Command.spawn([program, "-machine", "microvm,accel=kvm", "-cpu", "host", "-m", "256", "-nodefaults",
                                            "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                                            "-kernel", kernel, "-append", "console=ttyS0 panic=-1"], output: output.rawValue)
        else { return .tcg }
        defer { unlink(log) }
        let deadline = ContinuousClock.now + .seconds(5)
        var status: Int32 = 0
        while ContinuousClock.now < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                let text = (try? OwnedFD.open(log, O_RDONLY).readAll(limit: 1 << 20)) ?? []
                return String(decoding: text, as: UTF8.self).contains("Kernel panic") ? .kvm : .tcg
            }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        _ = waitpid(pid, &status, 0)
        return .tcg
    }
}
