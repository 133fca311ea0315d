import ReplicaKit

/// What a VM template holds and how it boots, recorded on it and on every machine forked from it
/// (`user.replica.vm`): its disk `disk.raw`, the kernel and initrd unpacked beside it ahead of
/// time (direct kernel boot, `qemu -kernel -initrd`), the machine type, memory and CPUs.
public struct VMImage: Equatable, Sendable {
    /// QEMU's machine type.
    public enum MachineType: String, Sendable, CaseIterable {
        /// A PC of today (PCIe, ACPI): a TPM and a display can be attached (`-M q35`).
        case q35
        /// A minimal machine of virtio-mmio devices, no PCI, no display, no TPM (`-M microvm`).
        case microvm
    }

    /// The firmware it boots with.
    public enum Firmware: String, Sendable, CaseIterable {
        /// SeaBIOS for a q35, qboot for a microvm: nothing kept between boots.
        case bios
        /// UEFI (OVMF, q35 only) with variables kept between boots: the template's store of
        /// them (`efivars.fd`, empty at import) is each fork's own from its fork on.
        case uefi
    }

    /// How its disk is attached.
    public enum DiskBus: String, Sendable, CaseIterable {
        /// virtio-blk (PCI on a q35, virtio-mmio on a microvm): `/dev/vda` in the guest.
        case virtio
        /// An NVMe controller (q35 only): `/dev/nvme0n1` in the guest. A trimmed template's, when
        /// its kernel has NVMe built in but not virtio-blk: it then mounts its root without an initrd.
        case nvme
    }

    /// The extended attribute holding it, on a VM template and on its forks.
    public static let attribute = "user.replica.vm"
    /// The disk's file name in the template's (and fork's) subvolume: a raw image.
    public static let disk = "disk.raw"
    /// The kernel's file name there.
    public static let kernel = "vmlinuz"
    /// The initrd's file name there.
    public static let initrd = "initrd.img"
    /// A fork's software TPM state file there (made empty at fork, never the template's).
    public static let tpmState = "tpm.state"
    /// A UEFI machine's firmware variables there (QEMU's second pflash drive): the template's
    /// empty store at import, then each fork's own through the snapshot that made it.
    public static let variables = "efivars.fd"
    /// The virtio-serial port the guest writes `READY=1` to.
    public static let notifyPort = "org.replica.notify"

    /// Its machine type.
    public var machineType: MachineType = .q35
    /// Its memory, in MiB (`qemu -m`).
    public var memory: UInt64 = 1024
    /// Its virtual CPUs (`qemu -smp`).
    public var cpus = 2
    /// The kernel's `root=`: the disk as the guest sees it.
    public var root = "/dev/vda"
    /// Whether it boots with an initrd.
    public var hasInitrd = true
    /// How its disk is attached.
    public var diskBus = DiskBus.virtio
    /// A software TPM 2.0 per fork (q35 only).
    public var tpm = true
    /// Its firmware.
    public var firmware = Firmware.bios

    /// The defaults: q35, 1 GiB, 2 CPUs, a TPM.
    public init() {}

    /// As recorded (`Machine=q35`, `Memory=1024` …); a usage error for a value it cannot be.
    public init(_ record: Record) throws(ReplicaError) {
        for field in record.fields {
            switch field.key {
            case "Machine":
                guard let type = MachineType(rawValue: field.value) else { throw .usage("Machine=\(field.value): q35 or microvm") }
                machineType = type
            case "Memory":
                guard let size = parseByteSize(field.value), size >= 128 << 20, size % (1 << 20) == 0 else {
                    throw .usage("Memory=\(field.value): a size of at least 128M, in whole MiB (1G, 512M)")
                }
                memory = size >> 20
            case "CPUs":
                guard let count = Int(field.value), (1...64).contains(count) else { throw .usage("CPUs=\(field.value): 1 to 64") }
                cpus = count
            case "Root": root = field.value
            case "Initrd": hasInitrd = field.value == "yes"
            case "TPM": tpm = field.value == "yes"
            case "Disk":
                guard let bus = DiskBus(rawValue: field.value) else { throw .usage("Disk=\(field.value): virtio or nvme") }
                diskBus = bus
            case "Firmware":
                guard let kind = Firmware(rawValue: field.value) else { throw .usage("Firmware=\(field.value): bios or uefi") }
                firmware = kind
            default: throw .usage("\(field.key)=: not a VM setting (Machine=, Memory=, CPUs=, Root=, Initrd=, Disk=, TPM=, Firmware=)")
            }
        }
        if machineType == .microvm && tpm { tpm = false }  // microvm has no TPM interface
        if machineType == .microvm && firmware == .uefi {
            throw .usage("Firmware=uefi: a microvm boots qboot only; UEFI needs Machine=q35")
        }
        if machineType == .microvm && diskBus == .nvme {
            throw .usage("Disk=nvme: a microvm has no PCI bus for an NVMe controller; NVMe needs Machine=q35")
        }
    }

    /// As recorded; refused when `root` cannot be a line of the record.
    public func record() throws(ReplicaError) -> Record {
        var record = Record()
        try record.append("Machine", machineType.rawValue)
        try record.append("Memory", formatByteSize(memory << 20))
        try record.append("CPUs", "\(cpus)")
        try record.append("Root", root)
        try record.append("Initrd", hasInitrd ? "yes" : "no")
        try record.append("Disk", diskBus.rawValue)
        try record.append("TPM", tpm ? "yes" : "no")
        try record.append("Firmware", firmware.rawValue)
        return record
    }
}
