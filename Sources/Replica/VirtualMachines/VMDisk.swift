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
        ConditionPathExists=/sys/class/virtio-ports

        [Service]
        Type=oneshot
        # A write to the port waits while no one listens on the host (started without waiting):
        # given up after 10 s, and not a failure of the guest's.
        ExecStart=-/usr/bin/timeout 10 /bin/sh -c 'for port in /sys/class/virtio-ports/*; do [ "$$(cat $$port/name)" = \(VMImage.notifyPort) ] && printf "READY=1\\\\n" >/dev/$${port##*/} && exit 0; done; exit 1'

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

    /// Fills the staging subvolume `staging` (at `stagingPath`) from root file system `source`
    /// (a folder, or a tarball unpacked into the staging subvolume first and removed after): the
    /// kernel and initrd, the disk of `size` bytes, the guest's READY unit; returns `vm` as the
    /// root's content made it (no initrd, no initrd recorded).
    static func make(from source: String, isFolder: Bool, into staging: borrowing OwnedFD, stagingPath: String,
                     vm: VMImage, size: UInt64) throws(ReplicaError) -> VMImage {
        var vm = vm
        var rootPath = source
        if !isFolder {
            rootPath = "\(stagingPath)/.root"
            _ = try syscall("mkdir", rootPath) { mkdir(rootPath, 0o700) }
            try Command.check(["tar", "-xpf", source, "--numeric-owner", "--xattrs", "-C", rootPath])
        }
        defer { if !isFolder { _ = try? Command.check(["rm", "-rf", "--one-file-system", "--", rootPath]) } }
        let root = try RootDirectory(rootPath)
        for needed in ["etc", "usr"] where (try? root.openForReading(needed, [.directory])) == nil {
            throw ReplicaError("import template", [source], errno: .EINVAL, hint: "has no /\(needed): not a root file system", reason: .refused)
        }
        guard ["usr/lib/systemd/systemd", "lib/systemd/systemd"].contains(where: { (try? root.openForReading($0, [.regularFile])) != nil }) else {
            throw ReplicaError("import template", [source], errno: .EINVAL,
                               hint: "has no systemd (/usr/lib/systemd/systemd): a VM's guest says READY from a systemd unit; install systemd in it",
                               reason: .refused)
        }
        let version = try kernelVersion(in: root, source: source)
        try copy("boot/vmlinuz-\(version)", of: root, to: VMImage.kernel, in: staging, stagingPath: stagingPath)
        if (try? root.openForReading("boot/initrd.img-\(version)", [.regularFile])) != nil {
            try copy("boot/initrd.img-\(version)", of: root, to: VMImage.initrd, in: staging, stagingPath: stagingPath)
        } else {
            vm.hasInitrd = false  // a kernel with its disk and file system drivers built in
        }
        let disk = "\(stagingPath)/\(VMImage.disk)"
        let made = try Command.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d", rootPath, disk, "\(size >> 10)k"])
        guard made.status == .exited(0) else {
            let full = made.output.contains("Could not allocate") || made.output.contains("No space")
            throw ReplicaError("import template", [source], errno: full ? .ENOSPC : .EIO, detail: made.output.trimmed,
                               hint: full ? "the root does not fit a \(formatByteSize(size)) disk; give a larger --disk-size" : "mkfs.ext4 -d failed on it")
        }
        _ = chmod(disk, 0o600)
        let has = { (path: String) in (try? root.openForReading(path, [.regularFile])) != nil }
        try addGuestUnits(to: disk, withSSH: has("usr/sbin/sshd"),
                          withNetworkd: has("usr/lib/systemd/system/systemd-networkd.service") || has("lib/systemd/system/systemd-networkd.service"),
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

    /// The newest kernel in the root's `/boot` (`vmlinuz-VERSION`, versions compared number by number).
    static func kernelVersion(in root: borrowing RootDirectory, source: String) throws(ReplicaError) -> String {
        let versions = ((try? root.names(in: "boot")) ?? []).filter { $0.hasPrefix("vmlinuz-") }.map { String($0.dropFirst("vmlinuz-".count)) }
        guard let newest = versions.max(by: { versionNumbers($0).lexicographicallyPrecedes(versionNumbers($1)) }) else {
            throw ReplicaError("import template", [source], errno: .ENOENT,
                               hint: "has no kernel (/boot/vmlinuz-*) for a VM to boot; install one in it (linux-image-cloud-amd64 on Debian)",
                               reason: .refused)
        }
        return newest
    }

    /// `6.1.0-50-cloud-amd64` as `[6, 1, 0, 50]`: its numbers, in order.
    static func versionNumbers(_ version: String) -> [Int] {
        version.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }

    /// Copies the root's regular file `relative` (never through a link out of the root) to `name`
    /// in the staging subvolume.
    static func copy(_ relative: String, of root: borrowing RootDirectory, to name: String, in staging: borrowing OwnedFD,
                     stagingPath: String) throws(ReplicaError) {
        let bytes = try root.openForReading(relative, [.regularFile]).readAll(limit: 512 << 20, name: "\(root.path)/\(relative)")
        try staging.openat(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: 0o644).writeAll(bytes, name: "\(stagingPath)/\(name)")
    }

    /// Edits the guest's file system in `disk` with `debugfs -w`: the READY unit enabled, an empty
    /// `/etc/machine-id` (systemd takes the one on the kernel's command line), no SSH host keys,
    /// D-Bus machine id or random seed of the template's (with sshd, a unit that makes new keys);
    /// with systemd-networkd, it and systemd-network-generator enabled, so the guest sets the
    /// address its kernel's `ip=` gives it (a fork on a network).
    static func addGuestUnits(to disk: String, withSSH: Bool, withNetworkd: Bool, stagingPath: String) throws(ReplicaError) {
        let files = "\(stagingPath)/.guest"
        _ = try syscall("mkdir", files) { mkdir(files, 0o700) }
        defer { _ = try? Command.check(["rm", "-rf", "--one-file-system", "--", files]) }
        let folder = try RootDirectory(files)
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
        try folder.replaceFile("edits", contents: Array((script.joined(separator: "\n") + "\n").utf8))
        // debugfs goes on past a command that fails (a file that is not there to remove); what must
        // be there is checked after.
        try Command.check(["debugfs", "-w", "-f", "\(files)/edits", disk])
        let check = try Command.run(["debugfs", "-R", "stat /etc/systemd/system/multi-user.target.wants/replica-notify.service", disk])
        guard check.status == .exited(0), !check.output.contains("not found") else {
            throw ReplicaError("import template", [disk], errno: .EIO, detail: check.output.trimmed,
                               hint: "debugfs could not add the guest's READY unit (has the root /etc/systemd/system?)")
        }
    }
}
