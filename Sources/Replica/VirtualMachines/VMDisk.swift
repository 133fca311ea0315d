import Glibc
import ReplicaKit

/// A VM template's content, made from a root file system at import: the disk (`mkfs.ext4 -d ROOT`,
/// a raw image every fork shares through the subvolume snapshot), the kernel and initrd copied
/// out of the root's `/boot`, and what the guest needs to say READY, edited into the image with
/// `debugfs` — never mounted on the host, whose kernel so never parses a guest's file system.
enum VMDisk {
    /// The guest's unit that writes `READY=1` to the virtio-serial port once `multi-user.target`
    /// is reached (systemd 252, Debian 12's, cannot notify a VM's host by itself; 254 can over vsock).
    static let notifyUnit = """
        # Added by replica-machine template import --vm: tells the host this machine is ready.
        [Unit]
        Description=Tell the host this machine is ready
        After=multi-user.target
        ConditionVirtualization=vm

        [Service]
        Type=oneshot
        # The port appears once udev has loaded virtio_console (late, when no initrd loaded it), and
        # a write to it waits while no one listens on the host (started without waiting): given up
        # after 10 s, and not a failure of the guest's.
        ExecStart=-/usr/bin/timeout 10 /bin/sh -c 'while :; do for port in /sys/class/virtio-ports/*; do [ "$$(cat $$port/name 2>/dev/null)" = \(VMImage.notifyPort) ] && printf "READY=1\\\\n" >/dev/$${port##*/} && exit 0; done; sleep 0.1; done'

        [Install]
        WantedBy=multi-user.target

        """

    /// The guest's unit that makes SSH host keys where none are (a fork's first boot), before sshd.
    static let hostKeysUnit = """
        # Added by replica-machine template import --vm: every fork makes SSH host keys of its own.
        [Unit]
        Description=Make this machine's SSH host keys
        Before=ssh.service
        ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

        [Service]
        Type=oneshot
        ExecStart=/usr/bin/ssh-keygen -A

        [Install]
        WantedBy=multi-user.target

        """

    /// Fills the staging subvolume `staging` (at `stagingPath`) from `source`: a root file system
    /// (a folder, or a tarball unpacked into the staging subvolume first and removed after) made
    /// into a disk of `size` bytes (`mkfs.ext4 -d`), or a disk image (raw or qcow2) converted once
    /// (`qemu-img convert -O raw`), grown to `size` when smaller. Then, from the disk's root file
    /// system: the kernel and initrd copied out, the guest's READY unit added; for UEFI, an empty
    /// variable store. `minimal` trims its boot (`TemplateTrim`). Returns `vm` as the disk made it
    /// (its `root=`, whether it has an initrd, how its disk is attached).
    static func make(from source: String, isFolder: Bool, into staging: borrowing OwnedFD, stagingPath: String,
                     vm: VMImage, size: UInt64, minimal: Bool) throws(ReplicaError) -> VMImage {
        let disk = "\(stagingPath)/\(VMImage.disk)"
        let kind: DiskImage.Kind = isFolder ? .tarball : try DiskImage.kind(of: source)
        switch kind {
        case .qcow2, .raw:
            try convert(source, format: kind == .qcow2 ? "qcow2" : "raw", to: disk, stagingPath: stagingPath)
            var status = stat()
            if stat(disk, &status) == 0, UInt64(status.st_size) < size { _ = truncate(disk, off_t(size)) }
        case .tarball:
            try makeDisk(disk, from: source, isFolder: isFolder, stagingPath: stagingPath, size: size)
        case .other(let format):
            throw ReplicaError("import template", [source], errno: .EINVAL,
                               hint: "is a \(format) file, not a root folder, a tarball, a raw or a qcow2 disk image; "
                                   + "convert it first (qemu-img convert -O qcow2 \(source) IMAGE.qcow2)", reason: .refused)
        }
        _ = chmod(disk, 0o600)
        if vm.firmware == .uefi {
            // An empty store of UEFI variables: each fork's own once forked with the rest.
            let empty = try OwnedFD.open(QEMU.uefiPath(QEMU.uefiVariables), O_RDONLY | O_CLOEXEC).readAll(limit: 64 << 20)
            try RootDirectory(stagingPath).replaceFile(VMImage.variables, contents: empty, mode: 0o600)
        }
        return try finish(vm, disk: disk, source: source, stagingPath: stagingPath, minimal: minimal)
    }

    /// `qemu-img convert -O raw` in a `ParserSandbox`: it parses the image, whoever made it. The
    /// image is copied into the staging folder first (`.source`, a reflink where the file systems
    /// allow), so only that copy and the disk are lent to it; the copy is removed after.
    static func convert(_ source: String, format: String, to disk: String, stagingPath: String) throws(ReplicaError) {
        let copy = "\(stagingPath)/.source"
        defer { unlink(copy) }
        try Command.check(["cp", "--reflink=auto", "--", source, copy])
        _ = try OwnedFD.open(disk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600)
        let sandbox = ParserSandbox(lent: [copy, disk])
        try sandbox.lending { () throws(ReplicaError) in
            _ = try sandbox.run(["qemu-img", "convert", "-f", format, "-O", "raw", sandbox.inside(copy), sandbox.inside(disk)])
        }
    }

    /// The disk made from a root folder or tarball (`mkfs.ext4 -d`), after checking it looks like
    /// a root (an `/etc` and a `/usr`).
    static func makeDisk(_ disk: String, from source: String, isFolder: Bool, stagingPath: String, size: UInt64) throws(ReplicaError) {
        var rootPath = source
        if !isFolder {
            rootPath = "\(stagingPath)/.root"
            _ = try syscall("mkdir", rootPath) { mkdir(rootPath, 0o700) }
            try ParserSandbox.unpack(source, into: rootPath)
        }
        defer { if !isFolder { _ = try? Command.check(["rm", "-rf", "--one-file-system", "--", rootPath]) } }
        let root = try RootDirectory(rootPath)
        for needed in ["etc", "usr"] where (try? root.openForReading(needed, [.directory])) == nil {
            throw ReplicaError("import template", [source], errno: .EINVAL, hint: "has no /\(needed): not a root file system", reason: .refused)
        }
        let made = try Command.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d", rootPath, disk, "\(size >> 10)k"])
        guard made.status == .exited(0) else {
            let full = made.output.contains("Could not allocate") || made.output.contains("No space")
            throw ReplicaError("import template", [source], errno: full ? .ENOSPC : .EIO, detail: made.output.trimmed,
                               hint: full ? "the root does not fit a \(formatByteSize(size)) disk; give a larger --disk-size" : "mkfs.ext4 -d failed on it")
        }
    }

    /// Finds the disk's root file system — the ext one (the disk's own, or a partition's) with an
    /// `/etc` and a kernel in `/boot` — copies its newest kernel and initrd out, adds the guest's
    /// units, and returns `vm` with `root=` naming it (by UUID) and whether there is an initrd.
    /// `minimal`: its boot trimmed (`TemplateTrim.guestEdits`), and no initrd when its kernel
    /// mounts the root by itself (`kernelOnlyDisk`): the disk then attached as that kernel reads it.
    static func finish(_ vm: VMImage, disk: String, source: String, stagingPath: String, minimal: Bool) throws(ReplicaError) -> VMImage {
        try GuestFileSystem(image: disk, offset: 0).lending { () throws(ReplicaError) -> VMImage in
            try finishLent(vm, disk: disk, source: source, stagingPath: stagingPath, minimal: minimal)
        }
    }

    /// `finish`, with the disk and the work folder lent to debugfs's user.
    private static func finishLent(_ vm: VMImage, disk: String, source: String, stagingPath: String, minimal: Bool) throws(ReplicaError) -> VMImage {
        let head = try DiskImage.head(of: disk)
        let starts = [0] + DiskImage.partitions(head).map(\.start)
        guard let fs = starts.lazy.map({ GuestFileSystem(image: disk, offset: $0) })
                .first(where: { $0.isExtFileSystem && $0.exists("/etc") && ((try? $0.names(in: "/boot")) ?? []).contains { $0.hasPrefix("vmlinuz-") } })
        else {
            throw ReplicaError("import template", [source], errno: .ENOENT,
                               hint: "has no kernel (/boot/vmlinuz-*) on an ext4 root for a VM to boot directly; install one in it "
                                   + "(linux-image-cloud-amd64 on Debian)", reason: .refused)
        }
        guard fs.exists("/usr/lib/systemd/systemd") || fs.exists("/lib/systemd/systemd") else {
            throw ReplicaError("import template", [source], errno: .EINVAL,
                               hint: "has no systemd (/usr/lib/systemd/systemd): a VM's guest says READY from a systemd unit; install systemd in it",
                               reason: .refused)
        }
        var vm = vm
        let version = try kernelVersion(in: fs, source: source)
        try fs.copy("/boot/vmlinuz-\(version)", to: "\(stagingPath)/\(VMImage.kernel)")
        vm.hasInitrd = fs.exists("/boot/initrd.img-\(version)")  // else a kernel with its disk and file system drivers built in
        if minimal, vm.hasInitrd, let bus = kernelOnlyDisk(config: (try? fs.request("cat /boot/config-\(version)")) ?? "", vm.machineType) {
            (vm.hasInitrd, vm.diskBus) = (false, bus)  // trimmed: the initrd would only find the root the kernel finds itself
        }
        if vm.hasInitrd { try fs.copy("/boot/initrd.img-\(version)", to: "\(stagingPath)/\(VMImage.initrd)") }
        // By its UUID where an initrd finds it; without one, the kernel itself: the disk or its partition.
        let number = DiskImage.partitions(head).first { $0.start == fs.offset }?.number
        let device = vm.diskBus == .nvme ? "/dev/nvme0n1" + (number.map { "p\($0)" } ?? "") : "/dev/vda" + (number.map(String.init) ?? "")
        vm.root = try vm.hasInitrd ? fs.uuid().map { "UUID=\($0)" } ?? device : device
        try addGuestUnits(to: fs, minimal: minimal, withSSH: fs.exists("/usr/sbin/sshd"),
                          withNetworkd: fs.exists("/usr/lib/systemd/system/systemd-networkd.service") || fs.exists("/lib/systemd/system/systemd-networkd.service"),
                          stagingPath: stagingPath)
        return vm
    }

    /// Boots the staged template once, its disk left untouched (QEMU `-snapshot`), no TPM, and
    /// refuses it when it does not say READY within `timeout`, with its console's last lines.
    static func checkBoot(_ name: String, _ vm: VMImage, stagingPath: String, timeout: Duration) throws(ReplicaError) {
        var checked = vm
        checked.tpm = false  // the template keeps no TPM state
        let machine = Machines.Machine(name: ".check-\(name)", template: name, templateUUID: "", path: stagingPath, hostname: "check",
                                       machineID: Machines.newMachineID(), vm: checked)
        defer { for suffix in ["log", "qmp", "vnc", "notify"] { unlink(QEMU.runtimePath(machine.name, suffix)) } }
        let starting = try VirtualMachine.begin(machine, checked, placement: nil, in: nil, extra: ["-snapshot"], record: false)
        defer {
            kill(starting.pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(starting.pid, &status, 0)
        }
        do throws(ReplicaError) { _ = try starting.waitReady(timeout: timeout) } catch {
            throw ReplicaError("import template", [name], errno: error.errno,
                               hint: "its check boot failed: \(error.hint ?? error.description) — a guest that does not boot to READY is refused; "
                                   + "fix the root, or import with --no-check", reason: .refused)
        }
    }

    /// How a disk is attached for `kernelConfig`'s kernel (its `/boot/config-VERSION`) to mount
    /// an ext root on it with no initrd: virtio-blk when it has virtio-blk and the machine type's
    /// virtio transport built in, else on a q35 NVMe when it has that built in; nil when it needs
    /// its initrd (Debian's stock and cloud kernels have virtio as modules; the cloud one has NVMe built in).
    static func kernelOnlyDisk(config kernelConfig: String, _ machineType: VMImage.MachineType) -> VMImage.DiskBus? {
        let builtIn = Set(kernelConfig.split(separator: "\n").filter { $0.hasSuffix("=y") }.map { String($0.dropLast(2)) })
        guard builtIn.contains("CONFIG_EXT4_FS") else { return nil }
        let transport = machineType == .q35 ? "CONFIG_VIRTIO_PCI" : "CONFIG_VIRTIO_MMIO"
        if builtIn.isSuperset(of: ["CONFIG_VIRTIO_BLK", transport]) { return .virtio }
        return machineType == .q35 && builtIn.contains("CONFIG_BLK_DEV_NVME") ? .nvme : nil
    }

    /// The newest kernel in the file system's `/boot` (`vmlinuz-VERSION`, versions compared number by number).
    static func kernelVersion(in fs: GuestFileSystem, source: String) throws(ReplicaError) -> String {
        let versions = try fs.names(in: "/boot").filter { $0.hasPrefix("vmlinuz-") }.map { String($0.dropFirst("vmlinuz-".count)) }
        guard let newest = versions.max(by: { versionNumbers($0).lexicographicallyPrecedes(versionNumbers($1)) }) else {
            throw ReplicaError("import template", [source], errno: .ENOENT, hint: "has no kernel (/boot/vmlinuz-*)", reason: .refused)
        }
        return newest
    }

    /// `6.1.0-50-cloud-amd64` as `[6, 1, 0, 50]`: its numbers, in order.
    static func versionNumbers(_ version: String) -> [Int] {
        version.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }

    /// Edits the guest's file system in `disk` with `debugfs -w`: the READY unit enabled, an empty
    /// `/etc/machine-id` (systemd takes the one on the kernel's command line), no SSH host keys,
    /// D-Bus machine id or random seed of the template's (with sshd, a unit that makes new keys);
    /// with systemd-networkd, it and systemd-network-generator enabled, so the guest sets the
    /// address its kernel's `ip=` gives it (a fork on a network). `minimal`: its boot trimmed
    /// (`TemplateTrim.guestEdits`).
    static func addGuestUnits(to fs: GuestFileSystem, minimal: Bool, withSSH: Bool, withNetworkd: Bool, stagingPath: String) throws(ReplicaError) {
        let files = fs.inside(fs.workFolder)
        let folder = try RootDirectory(fs.workFolder)
        try folder.replaceFile("notify.service", contents: Array(notifyUnit.utf8))
        try folder.replaceFile("host-keys.service", contents: Array(hostKeysUnit.utf8))
        try folder.replaceFile("empty", contents: [], mode: 0o444)
        var script = ["mkdir /etc/systemd/system/multi-user.target.wants",
                      "write \(files)/notify.service /etc/systemd/system/replica-notify.service",
                      "symlink /etc/systemd/system/multi-user.target.wants/replica-notify.service /etc/systemd/system/replica-notify.service",
                      "rm /etc/machine-id", "write \(files)/empty /etc/machine-id",
                      "rm /var/lib/dbus/machine-id", "rm /var/lib/systemd/random-seed"]
        if withSSH {
            script += ["rm /etc/ssh/ssh_host_ed25519_key", "rm /etc/ssh/ssh_host_ed25519_key.pub", "rm /etc/ssh/ssh_host_rsa_key",
                       "rm /etc/ssh/ssh_host_rsa_key.pub", "rm /etc/ssh/ssh_host_ecdsa_key", "rm /etc/ssh/ssh_host_ecdsa_key.pub",
                       "write \(files)/host-keys.service /etc/systemd/system/replica-host-keys.service",
                       "symlink /etc/systemd/system/multi-user.target.wants/replica-host-keys.service /etc/systemd/system/replica-host-keys.service"]
        }
        if withNetworkd {
            script += ["mkdir /etc/systemd/system/sysinit.target.wants", "mkdir /etc/systemd/system/sockets.target.wants"]
            for (target, unit) in [("multi-user", "systemd-networkd.service"), ("sockets", "systemd-networkd.socket"),
                                   ("sysinit", "systemd-network-generator.service")] {
                script += ["rm /etc/systemd/system/\(target).target.wants/\(unit)",
                           "symlink /etc/systemd/system/\(target).target.wants/\(unit) /lib/systemd/system/\(unit)"]
            }
        }
        if minimal {
            try folder.replaceFile("journald.conf", contents: Array(TemplateTrim.journaldDropIn.text.utf8))
            script += TemplateTrim.guestEdits(journaldFile: "\(files)/journald.conf")
        }
        try folder.replaceFile("edits", contents: Array((script.joined(separator: "\n") + "\n").utf8))
        try fs.edit(script: "\(fs.workFolder)/edits")
        guard fs.exists("/etc/systemd/system/multi-user.target.wants/replica-notify.service") else {
            throw ReplicaError("import template", [fs.device], errno: .EIO,
                               hint: "debugfs could not add the guest's READY unit (has the root /etc/systemd/system?)")
        }
        guard !minimal || fs.exists("/\(TemplateTrim.journaldDropIn.path)") else {
            throw ReplicaError("import template", [fs.device], errno: .EIO, hint: "debugfs could not trim the guest's boot (has the root /etc/systemd?)")
        }
    }
}
