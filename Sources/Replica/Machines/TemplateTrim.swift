import ReplicaKit

/// What `replica-machine template import --minimal` takes out of a template's boot: the
/// units and generators a container never needs (systemd-nspawn has made its `/dev`, mounted its
/// root and given it no console, kernel or disks of its own), masked as `systemctl mask` does — a
/// link to `/dev/null` in `/etc/systemd/system` (or `system-generators`, `tmpfiles.d`), which the
/// fork's operator removes to bring one back — D-Bus started on first use rather than at boot, and
/// a journal kept in memory. The rest of the root is untouched: every package and service of the
/// operator's stays. A VM template's disk is trimmed the same way through `debugfs`
/// (`guestEdits`), less what its own kernel needs, and boots without its initrd when its kernel
/// mounts the root by itself (`VMDisk.kernelOnlyDisk`).
public enum TemplateTrim {
    /// Units masked: kernel settings, remounts and device nodes that are the host's or systemd-nspawn's;
    /// utmp records; users already made in the template; the journal's flush to disk (it stays in
    /// memory); a random seed (the kernel's is the host's); kernel modules and binfmt; the window
    /// at boot and shutdown in which only root may log in (`systemd-user-sessions`, with the
    /// `/run/nologin` it removes: `maskedTmpfiles`); timers that would start the same work in
    /// every fork at once (apt, scrubs and trims of the host's disks); and what only an initrd runs,
    /// the boot's phases measured into a TPM and a disk's repartitioning, none of which a container
    /// has (each skipped by its conditions, but loaded with all it names at every boot: 4 ms of a
    /// trimmed fork's 78 here).
    public static let maskedUnits = [
        "systemd-sysctl.service", "systemd-remount-fs.service", "systemd-tmpfiles-setup-dev.service",
        "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service", "systemd-sysusers.service",
        "systemd-journal-flush.service", "systemd-journal-catalog-update.service", "systemd-random-seed.service",
        "systemd-modules-load.service", "kmod-static-nodes.service", "systemd-binfmt.service", "systemd-pstore.service",
        "systemd-user-sessions.service", "systemd-journald-audit.socket", "proc-sys-fs-binfmt_misc.automount", "sys-kernel-config.mount",
        "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount",
        "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    ] + ownKernelUnits

    /// What only a system with a kernel of its own runs at boot: an initrd's units, the boot's
    /// phases measured into a TPM, the first boot's repartitioning of a disk. Masked in a
    /// container; kept in a VM, which may boot through an initrd, have a TPM and grow its disk.
    static let ownKernelUnits = [
        "initrd.target", "initrd-fs.target", "initrd-root-device.target", "initrd-root-fs.target", "initrd-usr-fs.target",
        "initrd-switch-root.target", "initrd-cleanup.service", "initrd-parse-etc.service", "initrd-switch-root.service",
        "initrd-udevadm-cleanup-db.service", "systemd-pcrphase.service", "systemd-pcrphase-initrd.service",
        "systemd-pcrphase-sysinit.service", "systemd-repart.service",
    ]

    /// Generators masked: what they look for (an fstab, disks, encrypted or verity volumes, a
    /// resume device, a kernel command line, consoles, SysV init scripts, rc.local) a container
    /// does not have, or — init scripts and rc.local — a trimmed template does without: a daemon
    /// shipped only as an init script needs `systemd-sysv-generator` back.
    public static let maskedGenerators = [
        "systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-fstab-generator", "systemd-getty-generator",
        "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator", "systemd-integritysetup-generator",
        "systemd-rc-local-generator", "systemd-run-generator", "systemd-system-update-generator", "systemd-sysv-generator",
        "systemd-veritysetup-generator",
    ]

    /// Dependencies masked: the bus daemon (`dbus.service`, or `dbus-broker.service` where it is
    /// the bus) no longer pulled in by `multi-user.target` at boot. Its socket stays in
    /// `sockets.target` and starts it on the first connection (`systemctl -M`, `busctl`, a service
    /// that asks), so a boot nobody asks of D-Bus is not held up by it. (systemd ignores a
    /// `.wants/` link that a `/dev/null` link of the same name in `/etc` masks.)
    public static let deferredUnits = ["dbus.service", "dbus-broker.service"]

    /// tmpfiles.d entries masked: `/run/nologin`, made at boot for `systemd-user-sessions` to
    /// remove once the system is up; with that unit masked, it would keep every user but root out.
    public static let maskedTmpfiles = ["systemd-nologin.conf"]

    /// Each folder of `/etc` with what is masked in it, `units` the units.
    static func masked(units: [String]) -> [(folder: String, names: [String])] {
        [("etc/systemd/system", units), ("etc/systemd/system/multi-user.target.wants", deferredUnits),
         ("etc/systemd/system-generators", maskedGenerators), ("etc/tmpfiles.d", maskedTmpfiles)]
    }

    /// The journal in memory (`Storage=volatile`), bounded: nothing written to `/var/log/journal`.
    public static let journaldDropIn = (path: "etc/systemd/journald.conf.d/50-replica-minimal.conf",
                                        text: "# replica-machine template import --minimal: the journal in memory.\n[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n")

    /// Of `maskedUnits`, what a VM's trim keeps: a VM has a kernel of its own, whose settings,
    /// modules and device nodes are its own to make, and boots as `ownKernelUnits` says.
    public static let keptInVMs = Set(["systemd-sysctl.service", "systemd-modules-load.service", "kmod-static-nodes.service",
                                       "systemd-tmpfiles-setup-dev.service"] + ownKernelUnits)

    /// Units masked in a VM template: `maskedUnits` but `keptInVMs`. Its generators are masked
    /// as a container's: its kernel mounts its root (so its `/etc/fstab` is not read) and its
    /// console has no login.
    public static var maskedVMUnits: [String] { maskedUnits.filter { !keptInVMs.contains($0) } }

    /// The trim of a VM template's disk as `debugfs -w` requests (`GuestFileSystem.edit`), which
    /// write the journal's drop-in from `journaldFile` (the path debugfs reads it at).
    static func guestEdits(journaldFile: String) -> [String] {
        let folders = masked(units: maskedVMUnits)
        var edits = folders.map { "mkdir /\($0.folder)" } + ["mkdir /etc/systemd/journald.conf.d"]
        for (folder, names) in folders {
            for name in names { edits += ["rm /\(folder)/\(name)", "symlink /\(folder)/\(name) /dev/null"] }
        }
        return edits + ["rm /\(journaldDropIn.path)", "write \(journaldFile) /\(journaldDropIn.path)"]
    }

    /// Trims the root file system `root` (a template being imported): every path resolved inside
    /// it, no symlink of its own followed.
    public static func apply(to root: borrowing RootDirectory) throws(ReplicaError) {
        for (folder, names) in masked(units: maskedUnits) {
            try root.makeDirectories(folder)
            for name in names { try root.replaceSymlink("\(folder)/\(name)", target: "/dev/null") }
        }
        try root.makeDirectories("etc/systemd/journald.conf.d")
        try root.replaceFile(journaldDropIn.path, contents: Array(journaldDropIn.text.utf8))
    }
}
