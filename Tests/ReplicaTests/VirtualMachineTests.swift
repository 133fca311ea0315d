import Glibc
@testable import Replica
import ReplicaKit
import ReplicaNet
import ReplicaStore
import ReplicaTestSupport
import Testing

/// Virtual machines: the command line QEMU gets (unprivileged), and real boots under QEMU's
/// emulation of the tests' guest root (`Tests/EndToEnd/rootfs vm`), checked from the guest's side
/// by a probe its own systemd runs before READY and prints to its console.
struct VirtualMachineCommandTests {
    static let machine = Machines.Machine(name: "vm1", template: "t", templateUUID: "", path: "/store/machines/vm1", hostname: "vm1",
                                          machineID: "0123456789abcdef0123456789abcdef", sshKeys: ["ssh-ed25519 AAAA a,b@c"],
                                          users: .range(base: 524288))

    @Test func vmSettingsRoundTripAndWhatCannotBeIsRefused() throws {
        var record = Record()
        for (key, value) in [("Machine", "microvm"), ("Memory", "512M"), ("CPUs", "1")] { try record.append(key, value) }
        let vm = try VMImage(record)
        #expect(vm.machineType == .microvm && vm.memory == 512 && vm.cpus == 1 && !vm.tpm, "a microvm has no TPM")
        #expect(try VMImage(try vm.record()) == vm)
        var uefi = Record()
        try uefi.append("Firmware", "uefi")
        #expect(try VMImage(uefi).firmware == .uefi && VMImage().firmware == .bios)
        #expect(try VMImage(try VMImage(uefi).record()) == (try VMImage(uefi)))
        for (key, value, says) in [("Machine", "pc", "q35 or microvm"), ("Memory", "64M", "at least 128M"), ("CPUs", "0", "1 to 64"),
                                   ("Size", "1G", "not a VM setting"), ("Firmware", "efi", "bios or uefi"), ("Disk", "ide", "virtio or nvme")] {
            var bad = Record()
            try bad.append(key, value)
            #expect { _ = try VMImage(bad) } throws: { ($0 as? ReplicaError)?.description.contains(says) == true }
        }
        var microUEFI = Record()
        for (key, value) in [("Machine", "microvm"), ("Firmware", "uefi")] { try microUEFI.append(key, value) }
        #expect { _ = try VMImage(microUEFI) } throws: { ($0 as? ReplicaError)?.description.contains("UEFI needs Machine=q35") == true }
        var nvme = Record()
        for (key, value) in [("Disk", "nvme"), ("Initrd", "no"), ("Root", "/dev/nvme0n1p1")] { try nvme.append(key, value) }
        #expect(try VMImage(nvme).diskBus == .nvme && VMImage().diskBus == .virtio)
        #expect(try VMImage(try VMImage(nvme).record()) == (try VMImage(nvme)))
        try nvme.append("Machine", "microvm")
        #expect { _ = try VMImage(nvme) } throws: { ($0 as? ReplicaError)?.description.contains("NVMe needs Machine=q35") == true }
    }

    @Test func q35CarriesItsIdentityConfinementTPMAndDisplay() {
        let command = QEMU.command(Self.machine, VMImage(), acceleration: .tcg)
        let line = command.joined(separator: " ")
        #expect(command.first == QEMU.program)
        #expect(line.contains("-machine q35,accel=tcg") && line.contains("-cpu max") && line.contains("-m 1024 -smp 2"))
        #expect(line.contains("systemd.machine_id=0123456789abcdef0123456789abcdef") && line.contains("systemd.hostname=vm1"))
        #expect(command.contains("type=1,serial=ds=nocloud;i=replica-0123456789abcdef0123456789abcdef;h=vm1"))
        #expect(line.contains("-uuid 01234567-89ab-cdef-0123-456789abcdef") && line.contains("vmgenid,guid=01234567-89ab-cdef-0123-456789abcdef"))
        // The key's comma doubled: QEMU reads the option's value whole.
        #expect(command.contains("type=11,value=io.systemd.credential:ssh.authorized_keys.root=ssh-ed25519 AAAA a,,b@c"))
        #expect(line.contains("-runas 524288:524288") && line.contains("elevateprivileges=allow") && line.contains("spawn=deny"))
        #expect(line.contains("tpm-tis,tpmdev=tpm0") && line.contains("-vnc unix:/run/replica/machines/vm1.vnc"))
        #expect(line.contains("virtserialport,chardev=notify,name=org.replica.notify") && line.contains("virtio-blk-pci,drive=root"))
        #expect(line.contains("tsc_early_khz=") && !line.contains("-netdev"))
        var root = Self.machine
        root.users = .host  // no range: never -runas, and no set*id calls at all
        let hosted = QEMU.command(root, VMImage(), acceleration: .kvm).joined(separator: " ")
        #expect(!hosted.contains("-runas") && hosted.contains("elevateprivileges=deny") && hosted.contains("-cpu host"))
        #expect(!hosted.contains("tsc_early_khz"), "KVM's guest calibrates against the real clock")
        #expect(!line.contains("pflash"), "BIOS keeps nothing between boots")
        var uefi = VMImage()
        uefi.firmware = .uefi
        let firmware = QEMU.command(Self.machine, uefi, acceleration: .tcg).joined(separator: " ")
        #expect(firmware.contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"))
        #expect(firmware.contains("if=pflash,format=raw,unit=1,file=\(Self.machine.path)/efivars.fd"), "its variables are the fork's own file")
        #expect(!line.contains("rootwait") && line.contains("-initrd /store/machines/vm1/initrd.img"))
        var trimmed = VMImage()
        (trimmed.diskBus, trimmed.hasInitrd, trimmed.root) = (.nvme, false, "/dev/nvme0n1")
        let kernelOnly = QEMU.command(Self.machine, trimmed, acceleration: .tcg).joined(separator: " ")
        #expect(kernelOnly.contains("-device nvme,drive=root,serial=replica-root") && !kernelOnly.contains("virtio-blk"))
        #expect(kernelOnly.contains("root=/dev/nvme0n1 rw") && kernelOnly.contains("rootwait") && !kernelOnly.contains("-initrd"))
        trimmed.diskBus = .virtio
        #expect(!QEMU.command(Self.machine, trimmed, acceleration: .tcg).joined(separator: " ").contains("rootwait"),
                "a virtio disk is there once the kernel looks, or never: without it, the kernel panics rather than waits")
    }

    @Test func microvmHasNoDisplayNorTPM() throws {
        var record = Record()
        try record.append("Machine", "microvm")
        let line = QEMU.command(Self.machine, try VMImage(record), acceleration: .tcg).joined(separator: " ")
        #expect(line.contains("-machine microvm") && line.contains("virtio-blk-device") && line.contains("virtio-serial-device"))
        #expect(!line.contains("-vnc") && !line.contains("tpm") && line.contains("tsc_early_khz="))
        #expect(QEMU.tpmCommand(Self.machine).contains("--runas") && QEMU.tpmCommand(Self.machine).contains("backend-uri=file:///proc/self/fd/4"))
    }

    @Test func aTrimmedTemplateDropsItsInitrdOnlyWhereItsKernelMountsTheRootItself() {
        let config = { (options: [String]) in (["# CONFIG_VIRTIO_BLK is not set"] + options.map { "\($0)=y" } + ["CONFIG_ATA=m"]).joined(separator: "\n") }
        let debian = config(["CONFIG_EXT4_FS", "CONFIG_BLK_DEV_NVME"])  // virtio modules, NVMe built in: Debian's cloud kernel
        #expect(VMDisk.kernelOnlyDisk(config: debian, .q35) == .nvme && VMDisk.kernelOnlyDisk(config: debian, .microvm) == nil)
        let virtio = config(["CONFIG_EXT4_FS", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_PCI", "CONFIG_BLK_DEV_NVME"])
        #expect(VMDisk.kernelOnlyDisk(config: virtio, .q35) == .virtio, "virtio-blk first where it is built in")
        #expect(VMDisk.kernelOnlyDisk(config: virtio, .microvm) == nil, "a microvm's virtio is over MMIO, not built in here")
        #expect(VMDisk.kernelOnlyDisk(config: config(["CONFIG_EXT4_FS", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_MMIO"]), .microvm) == .virtio)
        #expect(VMDisk.kernelOnlyDisk(config: config(["CONFIG_BLK_DEV_NVME"]), .q35) == nil, "no ext4 built in")
        #expect(VMDisk.kernelOnlyDisk(config: "", .q35) == nil, "no config: its initrd stays")
        // The disk's trim masks what a container's does, less what a VM's own kernel needs.
        let edits = TemplateTrim.guestEdits(journaldFile: "/tmp/guest/.guest/journald.conf")
        #expect(edits.contains("symlink /etc/systemd/system/systemd-update-utmp.service /dev/null"))
        #expect(edits.contains("symlink /etc/systemd/system-generators/systemd-fstab-generator /dev/null"))
        #expect(edits.contains("symlink /etc/systemd/system/multi-user.target.wants/dbus.service /dev/null"), "D-Bus on first use")
        #expect(edits.firstIndex(of: "mkdir /etc/tmpfiles.d")! < edits.firstIndex(of: "symlink /etc/tmpfiles.d/systemd-nologin.conf /dev/null")!)
        #expect(!edits.contains { $0.contains("systemd-sysctl.service") || $0.contains("systemd-modules-load.service") })
        #expect(!edits.contains { $0.contains("initrd") || $0.contains("pcrphase") || $0.contains("repart") },
                "a VM may boot through an initrd, have a TPM and grow its disk")
        #expect(edits.last == "write /tmp/guest/.guest/journald.conf /etc/systemd/journald.conf.d/50-replica-minimal.conf")
    }

    @Test func theGuestSetsItsAddressesFromItsKernelLine() {
        let network = QEMU.GuestNetwork(descriptor: 3, mac: QEMU.GuestNetwork.mac(for: Self.machine.machineID!),
                                        addresses: Machines.Addresses(address: "10.88.0.5/22", gateway: "10.88.0.1",
                                                                      address6: "fd12:3456:789a:1::5/64", gateway6: "fd12:3456:789a:1::1"))
        #expect(network.mac == "52:54:00:01:23:45")
        #expect(network.kernelArguments == ["net.ifnames=0", "ip=10.88.0.5::10.88.0.1:255.255.252.0::eth0:off",
                                            "ip=[fd12:3456:789a:1::5]::[fd12:3456:789a:1::1]:64::eth0:none"])
        let line = QEMU.command(Self.machine, VMImage(), acceleration: .tcg, network: network).joined(separator: " ")
        #expect(line.contains("-netdev tap,id=net0,fd=3") && line.contains("virtio-net-pci,netdev=net0,mac=52:54:00:01:23:45"))
        #expect(line.contains("ip=10.88.0.5::10.88.0.1:255.255.252.0::eth0:off"))
        #expect(!line.contains("tmpfiles.extra"), "outside a set, the guest's own resolver stays")
        var inSet = Self.machine
        inSet.domain = "lab.replica"
        let resolver = QEMU.command(inSet, VMImage(), acceleration: .tcg, network: network).first { $0.contains("tmpfiles.extra") }
        #expect(resolver == "type=11,value=io.systemd.credential:tmpfiles.extra=d /run/replica 0755 root root -\n"
                    + "f+ /run/replica/resolv.conf 0644 root root - nameserver 10.88.0.1\\nsearch lab.replica\\n\n"
                    + "L+ /etc/resolv.conf - - - - /run/replica/resolv.conf", "\(String(describing: resolver))")
        #expect(!QEMU.command(inSet, VMImage(), acceleration: .tcg).joined().contains("tmpfiles.extra"), "no network, no gateway to ask")
    }

    @Test func aFileIsKnownByItsFirstBytesAndAPartitionTableIsRead() {
        var head = [UInt8](repeating: 0, count: 64 << 10)
        #expect(DiskImage.kind(of: [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3], qemuFormat: { "qcow2" }) == .qcow2)
        #expect(DiskImage.kind(of: [0x1f, 0x8b, 8, 0], qemuFormat: { "raw" }) == .tarball)
        #expect(DiskImage.kind(of: head, qemuFormat: { "vmdk" }) == .other("vmdk"), "no table, no file system, no tar header")
        #expect(DiskImage.partitions(head).isEmpty)
        // An MBR: partition 2 of type 0x83 at sector 2048, 4096 sectors long.
        head[446 + 16 + 4] = 0x83
        head.replaceSubrange(446 + 16 + 8..<446 + 16 + 16, with: [0x00, 0x08, 0, 0, 0x00, 0x10, 0, 0])
        (head[510], head[511]) = (0x55, 0xaa)
        #expect(DiskImage.kind(of: head, qemuFormat: { "raw" }) == .raw)
        #expect(DiskImage.partitions(head) == [DiskImage.Partition(number: 2, start: 2048 * 512, size: 4096 * 512)])
        // A GPT behind its protective MBR: entry 3 used, sectors 34 to 99.
        var gpt = [UInt8](repeating: 0, count: 64 << 10)
        gpt[446 + 4] = 0xee
        (gpt[510], gpt[511]) = (0x55, 0xaa)
        gpt.replaceSubrange(512..<520, with: Array("EFI PART".utf8))
        gpt.replaceSubrange(512 + 72..<512 + 96, with: [2, 0, 0, 0, 0, 0, 0, 0, 128, 0, 0, 0, 128, 0, 0, 0] + [UInt8](repeating: 0, count: 8))
        let entry = 1024 + 2 * 128
        gpt[entry] = 0xaf  // a type GUID: used
        gpt.replaceSubrange(entry + 32..<entry + 48, with: [34, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0])
        #expect(DiskImage.partitions(gpt) == [DiskImage.Partition(number: 3, start: 34 * 512, size: 66 * 512)])
    }

    @Test func aMissingFirmwareIsNamedWithItsPackage() throws {
        let folder = "/tmp/replica-firmware-\(getpid())"
        _ = mkdir(folder, 0o700)
        defer { _ = try? Command.check(["rm", "-rf", folder]) }
        #expect { try QEMU.checkFirmware(.q35, in: [folder]) } throws: { error in
            let text = (error as? ReplicaError)?.description ?? ""
            return text.contains("bios-256k.bin") && text.contains("seabios")
        }
        try OwnedFD.open("\(folder)/bios-256k.bin", O_WRONLY | O_CREAT, mode: 0o644).writeAll([0])
        try QEMU.checkFirmware(.q35, in: [folder])  // control: there, it passes
        // UEFI: OVMF's code and its empty variable store, from Debian's ovmf.
        #expect { try QEMU.checkFirmware(.q35, .uefi, in: [folder]) } throws: { error in
            let text = (error as? ReplicaError)?.description ?? ""
            return text.contains("OVMF_CODE_4M.fd") && text.contains("ovmf")
        }
        try OwnedFD.open("\(folder)/OVMF_CODE_4M.fd", O_WRONLY | O_CREAT, mode: 0o644).writeAll([0])
        #expect { try QEMU.checkFirmware(.q35, .uefi, in: [folder]) } throws: { ($0 as? ReplicaError)?.description.contains("OVMF_VARS_4M.fd") == true }
        try OwnedFD.open("\(folder)/OVMF_VARS_4M.fd", O_WRONLY | O_CREAT, mode: 0o644).writeAll([0])
        try QEMU.checkFirmware(.q35, .uefi, in: [folder])
    }
}

/// debugfs reads and edits a guest's file system, and qemu-img converts a downloaded image, which
/// their makers may have crafted to take the parser over: each runs as `nobody` in a
/// `ParserSandbox` where what it was lent is all it may change. Tried from its side, with a probe
/// in debugfs's very sandbox; each refusal has its control (the same probe, unconfined, does it).
@Suite(.requiresRoot) struct GuestFileSystemSandboxTests {
    @Test func debugfsHoldsTheImageAndNothingElse() throws {
        try withTemporaryDirectory { folder in
            let content = "\(folder)/content"
            mkdir(content, 0o755)
            try OwnedFD.open("\(content)/hello", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("hello from the guest\n".utf8))
            let image = "\(folder)/disk.raw"
            try Command.check(["mkfs.ext4", "-q", "-F", "-d", content, image, "16M"])
            let fs = GuestFileSystem(image: image, offset: 0)
            // A host folder anyone may write in, outside what the sandbox makes private.
            let open = "/var/lib/replica-debugfs-probe-\(getpid())"
            mkdir(open, 0o777)
            chmod(open, 0o777)
            defer { _ = try? Command.check(["rm", "-rf", open]) }
            let marker = "\(open)/written"
            try fs.lending { () throws(ReplicaError) in
                // What it is for: reading, copying out, editing the image.
                #expect(fs.isExtFileSystem && (try? fs.names(in: "/"))?.contains("hello") == true)
                try fs.copy("/hello", to: "\(folder)/copied")
                try RootDirectory(fs.workFolder).replaceFile("edits", contents: Array("mkdir /added\n".utf8))
                try fs.edit(script: "\(fs.workFolder)/edits")
                #expect(fs.exists("/added"))

                // Its side: who it is, and what it cannot reach.
                func probe(_ guest: String) -> [String] { ["/bin/bash", "-c", """
                    grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '
                    cat /etc/shadow >/dev/null 2>&1 && echo shadow=read || echo shadow=denied
                    touch \(marker) 2>/dev/null && echo host=written || echo host=denied
                    python3 -c 'import socket; socket.socket(socket.AF_INET)' 2>/dev/null && echo inet=socket || echo inet=refused
                    echo written >\(guest)/.guest/probe && echo work=written || echo work=denied
                    """] }
                let inside = try SandboxMounter.run(try fs.sandbox.plan(), command: probe(ParserSandbox.mountPoint)).output
                #expect(inside.contains("Uid: 65534 65534") && inside.contains("CapEff: 0000000000000000"), "\(inside)")
                #expect(inside.contains("NoNewPrivs: 1") && inside.contains("Seccomp: 2"), "\(inside)")
                #expect(inside.contains("shadow=denied") && inside.contains("host=denied") && inside.contains("inet=refused"), "\(inside)")
                #expect(inside.contains("work=written"), "the work folder is its to write: \(inside)")
                #expect(access(marker, F_OK) != 0)
                // The control: the same probe as the caller runs it reads, writes and opens a socket.
                let outside = try Command.run(probe(folder)).output
                #expect(outside.contains("shadow=read") && outside.contains("host=written") && outside.contains("inet=socket"), "\(outside)")
            }
            #expect(try OwnedFD.open("\(folder)/copied", O_RDONLY).readAll() == Array("hello from the guest\n".utf8))
            var status = stat()
            #expect(stat(image, &status) == 0 && status.st_uid == 0 && stat("\(folder)/copied", &status) == 0 && status.st_uid == 0,
                    "the image and what was copied out are root's again")
            #expect(access(fs.workFolder, F_OK) != 0, "the work folder is gone")
        }
    }
}

/// A template's tarball is unpacked by tar as root (its files keep their owners, device nodes and
/// file capabilities), in the unpacker's `ParserSandbox`: what its maker could do by taking tar over
/// is tried from tar's side, each refusal with its control (the same probe, unconfined, does it).
@Suite(.requiresRoot) struct UnpackerSandboxTests {
    @Test func aTarballUnpacksWholeAndTheUnpackerReachesNothingElse() throws {
        try withTemporaryDirectory { folder in
            // What it is for: a root's odd files come out as the caller's own tar makes them.
            let made = "\(folder)/made"
            _ = try Command.check(["sh", "-ec", """
                mkdir -p \(made)/etc \(made)/usr/bin \(made)/dev \(made)/home/user/.ssh
                install -m 4755 /bin/true \(made)/usr/bin/su
                cp /bin/true \(made)/usr/bin/ping && setcap cap_net_raw+ep \(made)/usr/bin/ping
                mknod \(made)/dev/null c 1 3 && mkfifo \(made)/run.fifo
                echo key > \(made)/home/user/.ssh/id && chmod 600 \(made)/home/user/.ssh/id && chmod 700 \(made)/home/user/.ssh
                chown -R 1000:1000 \(made)/home/user && setfattr -n user.origin -v tests \(made)/etc
                ln -s ../usr/bin/su \(made)/etc/su-link && ln \(made)/usr/bin/su \(made)/usr/bin/su-again
                setfacl -m u:1001:r \(made)/etc
                tar -cpf \(folder)/root.tar.gz -z --acls --xattrs --numeric-owner -C \(made) .
                """])
            let tarball = "\(folder)/root.tar.gz"
            let unpacked = "\(folder)/unpacked", control = "\(folder)/control"
            mkdir(unpacked, 0o755)
            mkdir(control, 0o755)
            try ParserSandbox.unpack(tarball, into: unpacked)
            _ = try Command.check(["tar", "-xpf", tarball, "-C", control] + ParserSandbox.tarKeeps)
            func listing(_ root: String) throws -> String {
                try Command.check(["sh", "-c", "cd \(root) && find . -printf '%p %M %U:%G %n %l\\n' | sort && getcap -r . | sort "
                                   + "&& getfattr -R -d -m user. . 2>/dev/null && getfacl -R -s . 2>/dev/null"])
            }
            let ours = try listing(unpacked)
            #expect(ours == (try listing(control)), "\(ours)")
            #expect(ours.contains("./usr/bin/su -rwsr-xr-x 0:0 2") && ours.contains("./usr/bin/ping cap_net_raw=ep")
                    && ours.contains("./dev/null crw-r--r-- 0:0") && ours.contains("./home/user/.ssh/id -rw------- 1000:1000")
                    && ours.contains("user.origin=\"tests\"") && ours.contains("user:1001:r--"), "\(ours)")

            // Its side: who it is, and what it cannot reach, probed with the very plan tar runs under
            // (its /dev is empty: what the probe's commands say goes to a file in its private /tmp).
            let open = "/var/lib/replica-unpack-probe-\(getpid())"  // a host folder anyone may write in
            mkdir(open, 0o777)
            chmod(open, 0o777)
            defer { _ = try? Command.check(["rm", "-rf", open, "\(unpacked)/probe-null"]) }
            func probe(_ root: String, _ source: String, sink: String) -> [String] { ["/bin/bash", "-c", """
                grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '
                cat /etc/shadow >\(sink) 2>&1 && echo shadow=read || echo shadow=denied
                cat \(root)/home/user/.ssh/id >\(sink) 2>&1 && echo others=read || echo others=denied
                touch \(open)/written 2>>\(sink) && echo host=written || echo host=denied
                echo >> \(source) 2>>\(sink) && echo tarball=written || echo tarball=denied
                mknod \(root)/probe-null c 1 3 && { echo x > \(root)/probe-null 2>>\(sink) && echo device=opened || echo device=refused; }
                rm -f \(root)/probe-null
                kill -0 1 2>>\(sink) && echo signal=sent || echo signal=refused
                python3 -c 'import socket; socket.socket(socket.AF_UNIX)' 2>>\(sink) && echo unix=socket || echo unix=refused
                echo "dev=$(ls -A /dev | wc -l) run=$(ls -A /run | wc -l) etc=$(ls -A /etc | wc -l)"
                """] }
            let inside = ParserSandbox.unpacking
            let seen = try SandboxMounter.run(try ParserSandbox.unpackPlan(tarball, into: unpacked),
                                              command: probe("\(inside)/root", "\(inside)/source", sink: "/tmp/probe")).output
            // CAP_CHOWN, CAP_FOWNER, CAP_FSETID, CAP_MKNOD and CAP_SETFCAP (bits 0, 3, 4, 27, 31), and no more.
            #expect(seen.contains("Uid: 0 0 0 0") && seen.contains("CapEff: 0000000088000019"), "\(seen)")
            #expect(seen.contains("NoNewPrivs: 1") && seen.contains("Seccomp: 2"), "\(seen)")
            #expect(seen.contains("shadow=denied") && seen.contains("others=denied") && seen.contains("host=denied")
                    && seen.contains("tarball=denied") && seen.contains("device=refused") && seen.contains("signal=refused")
                    && seen.contains("unix=refused") && seen.contains("dev=0 run=0 etc=0"), "\(seen)")
            #expect(access("\(open)/written", F_OK) != 0 && access("\(unpacked)/probe-null", F_OK) != 0)
            // The control: the same probe, run by the caller on the same paths, does each of them.
            let copy = "\(folder)/copy.tar.gz"
            _ = try Command.check(["cp", tarball, copy])
            let outside = try Command.run(probe(unpacked, copy, sink: "\(folder)/probe")).output
            #expect(outside.contains("shadow=read") && outside.contains("others=read") && outside.contains("host=written")
                    && outside.contains("tarball=written") && outside.contains("device=opened") && outside.contains("signal=sent")
                    && outside.contains("unix=socket"), "\(outside)")

            // The operator's path may lead through symlinks (a `current` link to the newest image).
            let again = "\(folder)/again"
            mkdir(again, 0o755)
            symlink(tarball, "\(folder)/current.tar.gz")
            try ParserSandbox.unpack("\(folder)/current.tar.gz", into: again)
            #expect(access("\(again)/usr/bin/su", X_OK) == 0)

            // A tarball tar cannot read fails with tar's own words, naming it.
            _ = try Command.check(["sh", "-c", "head -c 4096 /dev/urandom > \(folder)/junk.tar"])
            #expect(throws: ReplicaError.self) { try ParserSandbox.unpack("\(folder)/junk.tar", into: control) }
            do { try ParserSandbox.unpack("\(folder)/junk.tar", into: control) } catch {
                #expect("\(error)".contains("junk.tar") && "\(error)".contains("tar:"), "\(error)")
            }
        }
    }
}

@Suite(.requiresBtrfs, .serialized) struct VirtualMachineTests {
    static func machine(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-machine")] + arguments)
    }

    /// The tests' guest root (built by the recipe the first time: about a minute).
    static func guestRoot() throws -> String {
        let output = try Command.check(["sh", "-c", "'\(repositoryRoot)Tests/EndToEnd/rootfs' vm 2>/dev/null"])
        return String(output.split(separator: "\n").last ?? "")
    }

    /// The probe's line on machine `name`'s console (`hostname=… machine-id=… keys=… tpm=…`), as
    /// fields, once the guest printed it (within `timeout`).
    static func probe(_ name: String, timeout: Duration = .seconds(120)) -> [String: String]? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let log = String(decoding: (try? OwnedFD.open("\(MachineProcess.runDirectory)/\(name).log", O_RDONLY).readAll()) ?? [], as: UTF8.self)
            // The guest's systemd writes its status to the same console: its escapes may precede the
            // line or follow a value at once, so a value ends at the first character it cannot hold.
            if let line = log.split(separator: "\n").last(where: { $0.contains("e2e-probe: hostname=") }),
               let start = line.firstIndex(of: ":") {
                return Dictionary(line[line.index(after: start)...].split(separator: " ").compactMap { field in
                    let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                    return parts.count == 2 ? (parts[0], String(parts[1].prefix { $0.isLetter || $0.isNumber || "-/.".contains($0) })) : nil
                }, uniquingKeysWith: { $1 })
            }
            usleep(200_000)
        }
        return nil
    }

    /// Processes whose command line contains `text` (`pgrep -f`).
    static func processes(containing text: String) -> [Int32] {
        ((try? DirectoryEntries.names(in: try OwnedFD.open("/proc", O_RDONLY | O_DIRECTORY))) ?? []).compactMap { entry in
            guard let pid = Int32(entry), pid != getpid(),
                  let words = try? OwnedFD.open("/proc/\(pid)/cmdline", O_RDONLY).readAll(limit: 1 << 16) else { return nil }
            return String(decoding: words.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text) ? pid : nil
        }
    }

    /// The uid a process runs as (`/proc/PID/status`, the real uid).
    static func uid(of pid: Int32) -> UInt32? {
        let text = String(decoding: (try? OwnedFD.open("/proc/\(pid)/status", O_RDONLY).readAll()) ?? [], as: UTF8.self)
        return text.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { UInt32($0) }
    }

    /// What a TCP server at `host`:`port` says first, or the error; with `websocket`, what a
    /// browser's websocket gets first (`Tests/EndToEnd/fixtures/websocket-banner`). A connection
    /// refused or unanswered is tried again for `patience` seconds: READY means the guest reached
    /// `multi-user.target`, and its greeter, a simple service started on the way, may not listen yet.
    static func tcpGreeting(_ host: String, _ port: Int, websocket: Bool = false, patience: Int = 30) throws -> String {
        if websocket { return try Command.run(["\(repositoryRoot)Tests/EndToEnd/fixtures/websocket-banner", host, "\(port)"]).output }
        return try Command.run(["python3", "-c", """
            import socket, sys, time
            deadline = time.monotonic() + int(sys.argv[3])
            while True:
                try:
                    sys.stdout.write(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).recv(100).decode())
                    break
                except OSError:
                    if time.monotonic() > deadline: raise
                    time.sleep(0.5)
            """, host, "\(port)", "\(patience)"]).output
    }

    @Test func vmsForkBootAndStopWithIdentitiesTPMsAndNetworksOfTheirOwn() throws {
        let root = try Self.guestRoot()
        let key = "/tmp/replica-vm-key-\(getpid()).pub"
        try OwnedFD.open(key, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq2LCe9Uq0H6yQ2Zc4w1cNQx9S4wW0x3S7yE3bYy3oI vm@replica\n".utf8))
        defer { unlink(key) }
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer {
                for name in ["vm1", "vm2"] { _ = try? Self.machine(["stop", name] + store); _ = try? Self.machine(["remove", name] + store) }
                _ = try? NetworkPlan.removeBridgeIfUnused("br-vmt")
            }
            // Not booted at import (--no-check): the guests below boot it, and the other tests check import's boot.
            let imported = try Self.machine(["template", "import", "--vm", "--no-check", "guest", root] + store)
            #expect(imported.status == .exited(0), "\(imported.output)")
            let listed = try JSON.parse(try Self.machine(["template", "list", "--json"] + store).output)["templates"]?.array?.first
            #expect(listed?["kind"] == .string("vm") && listed?["vm"]?["machine"] == .string("q35"), "\(String(describing: listed))")
            for file in [VMImage.disk, VMImage.kernel, VMImage.initrd] {
                #expect(access("\(image.mountPoint)/templates/guest/\(file)", F_OK) == 0, "\(file)")
            }
            #expect(access("\(image.mountPoint)/templates/guest/\(VMImage.tpmState)", F_OK) != 0, "a template holds no TPM")

            var forkTimes: [Duration] = []
            for (name, extra) in [("vm1", ["--ssh-key", key]), ("vm2", [])] {
                let began = ContinuousClock.now
                let forked = try Self.machine(["fork", name, "--template", "guest", "--bridge", "br-vmt", "--subnet", "10.79.0.0/24"] + extra + store)
                forkTimes.append(ContinuousClock.now - began)
                #expect(forked.status == .exited(0), "\(forked.output)")
            }
            #expect(forkTimes.allSatisfy { $0 < .seconds(1) }, "\(forkTimes)")
            #expect(access("\(image.mountPoint)/machines/vm1/\(VMImage.tpmState)", F_OK) != 0, "a fork makes nothing in its snapshot: its TPM state comes at its first start")
            // Never the template's: a state file found in one (not import's doing) is not forked.
            let templateFolder = try OwnedFD.open("\(image.mountPoint)/templates/guest", O_RDONLY | O_DIRECTORY)
            try Btrfs.setReadOnly(templateFolder, false, path: "\(image.mountPoint)/templates/guest")
            try OwnedFD.open("\(image.mountPoint)/templates/guest/\(VMImage.tpmState)", O_WRONLY | O_CREAT, mode: 0o600).writeAll(Array("the template's TPM".utf8))
            try Btrfs.setReadOnly(templateFolder, true, path: "\(image.mountPoint)/templates/guest")
            #expect(try Self.machine(["fork", "vm3", "--template", "guest"] + store).status == .exited(0))
            #expect(access("\(image.mountPoint)/machines/vm3/\(VMImage.tpmState)", F_OK) != 0, "the template's state file did not reach the fork")
            #expect(try Self.machine(["remove", "vm3"] + store).status == .exited(0))
            try Btrfs.setReadOnly(templateFolder, false, path: "\(image.mountPoint)/templates/guest")
            unlink("\(image.mountPoint)/templates/guest/\(VMImage.tpmState)")
            try Btrfs.setReadOnly(templateFolder, true, path: "\(image.mountPoint)/templates/guest")
            let machines = try JSON.parse(try Self.machine(["list", "--json"] + store).output)["machines"]?.array ?? []
            let ids = machines.compactMap { $0["machine_id"]?.string }
            #expect(machines.allSatisfy { $0["kind"] == .string("vm") } && ids.count == 2 && ids[0] != ids[1])
            let base = machines.first?["users"]?.string.flatMap { UInt32($0) }

            // Both boot at once; each guest's own systemd tells what it sees before it says READY.
            let first = try Self.machine(["start", "vm1", "--wait", "0"] + store)
            #expect(first.status == .exited(0), "\(first.output)")
            let second = try Self.machine(["start", "vm2", "--wait", "180"] + store)
            #expect(second.status == .exited(0) && second.output.contains("ready in"), "\(second.output)")
            let seen = try ["vm1", "vm2"].map { name in
                try #require(Self.probe(name), "no probe line on \(name)'s console: \(MachineProcess.consoleTail(name))")
            }
            #expect(seen[0]["hostname"] == "vm1" && seen[1]["hostname"] == "vm2")
            #expect(seen.map { $0["machine-id"] ?? "" } == ids, "the guests' machine ids are the ones chosen at fork")
            #expect(seen[0]["keys"] == "1" && seen[1]["keys"] == "0", "root's key reached vm1 only: \(seen)")
            #expect(seen.allSatisfy { $0["efi"] == "none" }, "BIOS: no UEFI for the guest to see (the UEFI test's control): \(seen)")
            #expect(seen.allSatisfy { $0["root"] == "/dev/vda" && $0["initrd"] == "yes" && $0["utmp"] == "static" },
                    "untrimmed: its initrd mounts the virtio disk, no unit is masked (the trimmed test's control): \(seen)")
            #expect(seen.allSatisfy { $0["name"] == "none" }, "in no set, no set's domain is searched (the set scenario's control): \(seen)")
            let tpms = seen.compactMap { $0["tpm"] }
            #expect(tpms.count == 2 && !tpms.contains("none") && tpms[0] != tpms[1], "each TPM has an endorsement key of its own: \(tpms)")

            // QEMU and swtpm run as the machine's own uid, never root.
            let qemu = try #require(MachineProcess.running("vm1"))
            #expect(base != nil && Self.uid(of: qemu) == base, "QEMU runs as \(String(describing: Self.uid(of: qemu)))")
            #expect(Self.processes(containing: "swtpm socket").map(Self.uid).allSatisfy { $0 != 0 && $0 != nil })

            // Reached over the bridge: each answers with its own name.
            #expect(try Self.tcpGreeting("10.79.0.2", 7000) == "vm vm1\n")
            #expect(try Self.tcpGreeting("10.79.0.3", 7000) == "vm vm2\n")

            // The console: a websocket to its VNC display.
            let console = try Self.machine(["console", "vm1", "--listen", "127.0.0.1:16090"] + store)
            #expect(console.status == .exited(0), "\(console.output)")
            #expect(try Self.tcpGreeting("127.0.0.1", 16090, websocket: true).contains("RFB 003.008"))
            let missing = try Self.machine(["console", "vm9"] + store)
            #expect(missing.status == .exited(6), "\(missing.output)")

            // A snapshot holds its disk and its TPM state.
            let snap = try Command.run([try builtTool("replica-snap"), "create", "replica-machine@vm1", "--metrics-file", ""] + store)
            #expect(snap.status == .exited(0), "\(snap.output)")
            let taken = try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/snapshots/replica-machine@vm1", O_RDONLY | O_DIRECTORY))
            #expect(taken.count == 1 && [VMImage.disk, VMImage.tpmState].allSatisfy {
                access("\(image.mountPoint)/snapshots/replica-machine@vm1/\(taken[0])/\($0)", F_OK) == 0 })

            // Stopped: nothing of it left — process, TPM, console, tap (its namespace), sockets.
            #expect(try Self.machine(["stop", "vm1"] + store).status == .exited(0))
            #expect(MachineProcess.running("vm1") == nil && Self.processes(containing: "guest=vm1").isEmpty)
            #expect(Self.processes(containing: "/run/replica/machines/vm1.vnc").isEmpty, "the console's proxy is left")
            #expect(!NetworkNamespaceNames.current().contains("m-vm1"))
            for suffix in ["qmp", "tpm", "vnc", "notify", "tpm.pid", "console"] {
                #expect(access(QEMU.runtimePath("vm1", suffix), F_OK) != 0, "\(suffix) is left")
            }
            #expect(try Self.tcpGreeting("127.0.0.1", 16090, patience: 0).contains("refused"))

            // Started again: the same TPM (its state is the fork's), the same address.
            #expect(try Self.machine(["start", "vm1", "--wait", "180"] + store).status == .exited(0))
            #expect(Self.probe("vm1")?["tpm"] == tpms[0])
            #expect(try Self.tcpGreeting("10.79.0.2", 7000) == "vm vm1\n")

            // A guest not ready within --wait is stopped, and so reported.
            #expect(try Self.machine(["stop", "vm2"] + store).status == .exited(0))
            let late = try Self.machine(["start", "vm2", "--wait", "2"] + store)
            #expect(late.status == .exited(1) && late.output.contains("not ready after"), "\(late.output)")
            #expect(MachineProcess.running("vm2") == nil && Self.processes(containing: "guest=vm2").isEmpty)

            // A QEMU that dies while the guest boots: reported, and nothing of it left.
            let pid = try Command.spawn([try builtTool("replica-machine"), "start", "vm2", "--wait", "120"] + store)
            var victim: Int32?
            for _ in 0..<100 where victim == nil {
                usleep(50_000)
                victim = MachineProcess.running("vm2")
            }
            usleep(500_000)
            kill(try #require(victim), SIGKILL)
            #expect(try ExitStatus.wait(for: pid) == .exited(1))
            // vm1's TPM runs on (as vm1's uid); none other does.
            #expect(MachineProcess.running("vm2") == nil && Self.processes(containing: "swtpm").filter { Self.uid(of: $0) != base }.isEmpty)
            for suffix in ["qmp", "tpm", "vnc", "notify", "tpm.pid"] { #expect(access(QEMU.runtimePath("vm2", suffix), F_OK) != 0, "\(suffix) is left") }
            #expect(!NetworkNamespaceNames.current().contains("m-vm2"))

            for name in ["vm1", "vm2"] {
                #expect(try Self.machine(["stop", name] + store).status == .exited(0))
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
            }
            #expect(try Self.machine(["template", "remove", "guest"] + store).status == .exited(0))
            #expect(Self.processes(containing: "qemu-system").isEmpty && Self.processes(containing: "swtpm").isEmpty)
        }
    }

    /// UEFI: each fork boots OVMF with a store of variables of its own. What a guest's firmware
    /// keeps (a variable its root writes) stays with that fork across boots, and neither the
    /// template nor another fork sees it. Told by the guests themselves: the probe makes a random
    /// variable at a first boot and reads it back later (the BIOS test's guests see no UEFI).
    @Test func aUEFIForkKeepsFirmwareVariablesOfItsOwn() throws {
        let root = try Self.guestRoot()
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer {
                for name in ["u1", "u2"] { _ = try? Self.machine(["stop", name] + store); _ = try? Self.machine(["remove", name] + store) }
            }
            let microvm = try Self.machine(["template", "import", "--vm", "--machine", "microvm", "--firmware", "uefi", "tiny", root] + store)
            #expect(microvm.status == .exited(2) && microvm.output.contains("UEFI needs Machine=q35"), "\(microvm.output)")
            #expect(access("\(image.mountPoint)/templates/tiny", F_OK) != 0 && access("\(image.mountPoint)/templates/.importing-tiny", F_OK) != 0,
                    "nothing was made")
            let imported = try Self.machine(["template", "import", "--vm", "--firmware", "uefi", "efi", root] + store)
            #expect(imported.status == .exited(0), "its check boot runs OVMF: \(imported.output)")
            let listed = try JSON.parse(try Self.machine(["template", "list", "--json"] + store).output)["templates"]?.array?.first
            #expect(listed?["vm"]?["firmware"] == .string("uefi"), "\(String(describing: listed))")
            let templateStore = "\(image.mountPoint)/templates/efi/\(VMImage.variables)"
            let empty = try OwnedFD.open(templateStore, O_RDONLY).readAll(limit: 64 << 20)
            #expect(empty == (try OwnedFD.open(QEMU.uefiPath(QEMU.uefiVariables), O_RDONLY).readAll(limit: 64 << 20)),
                    "the template's store is OVMF's empty one, its check boot left no trace in it")

            for name in ["u1", "u2"] {
                let forked = try Self.machine(["fork", name, "--template", "efi"] + store)
                #expect(forked.status == .exited(0), "\(forked.output)")
            }
            #expect(try Self.machine(["start", "u1", "--wait", "0"] + store).status == .exited(0))
            let second = try Self.machine(["start", "u2", "--wait", "240"] + store)
            #expect(second.status == .exited(0), "\(second.output)")
            let values = try ["u1", "u2"].map { name in
                try #require(Self.probe(name, timeout: .seconds(240))?["efi"], "no probe line on \(name)'s console: \(MachineProcess.consoleTail(name))")
            }
            #expect(values.allSatisfy { $0.count == 16 && $0.allSatisfy(\.isHexDigit) }, "each guest made its variable: \(values)")
            #expect(values[0] != values[1], "one fork's variable is not the other's")

            // Booted again, u1's firmware still holds the value its guest wrote; the template's store is untouched.
            #expect(try Self.machine(["stop", "u1"] + store).status == .exited(0))
            let again = try Self.machine(["start", "u1", "--wait", "240"] + store)
            #expect(again.status == .exited(0), "\(again.output)")
            #expect(Self.probe("u1", timeout: .seconds(240))?["efi"] == values[0], "u1's variables are kept between its boots")
            #expect(try OwnedFD.open(templateStore, O_RDONLY).readAll(limit: 64 << 20) == empty)

            for name in ["u1", "u2"] {
                #expect(try Self.machine(["stop", name] + store).status == .exited(0))
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
            }
            #expect(try Self.machine(["template", "remove", "efi"] + store).status == .exited(0))
            #expect(Self.processes(containing: "qemu-system").isEmpty)
        }
    }

    /// `--minimal` on a VM template: its units trimmed as a container's (less what its own kernel
    /// needs) and, its kernel having ext4 and NVMe built in (virtio is a module in Debian's), no
    /// initrd: the disk attached as NVMe, the kernel mounting it itself. Told by the guest: its root
    /// on /dev/nvme0n1, no initrd ran, a trimmed unit masked — the BIOS test's guests, from the same
    /// root untrimmed, see /dev/vda, an initrd and that unit static.
    @Test func aTrimmedVMTemplateBootsWithoutItsInitrd() throws {
        let root = try Self.guestRoot()
        let config = try DirectoryEntries.names(in: try OwnedFD.open("\(root)/boot", O_RDONLY | O_DIRECTORY)).first { $0.hasPrefix("config-") }
        let text = String(decoding: try OwnedFD.open("\(root)/boot/\(try #require(config))", O_RDONLY).readAll(limit: 1 << 20), as: UTF8.self)
        #expect(VMDisk.kernelOnlyDisk(config: text, .q35) == .nvme && VMDisk.kernelOnlyDisk(config: text, .microvm) == nil,
                "Debian's cloud kernel: NVMe built in, virtio a module")
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer { _ = try? Self.machine(["stop", "t1"] + store); _ = try? Self.machine(["remove", "t1"] + store) }
            let imported = try Self.machine(["template", "import", "--vm", "--minimal", "trim", root] + store)
            #expect(imported.status == .exited(0) && imported.output.contains("boots without its initrd"), "its check boot had no initrd: \(imported.output)")
            let listed = try JSON.parse(try Self.machine(["template", "list", "--json"] + store).output)["templates"]?.array?.first
            #expect(listed?["vm"]?["disk"] == .string("nvme") && listed?["vm"]?["initrd"] == .bool(false), "\(String(describing: listed))")
            #expect(access("\(image.mountPoint)/templates/trim/\(VMImage.initrd)", F_OK) != 0, "no initrd is kept")
            #expect(try Self.machine(["fork", "t1", "--template", "trim"] + store).status == .exited(0))
            let started = try Self.machine(["start", "t1", "--wait", "180"] + store)
            #expect(started.status == .exited(0), "\(started.output)")
            let seen = try #require(Self.probe("t1"), "no probe line on t1's console: \(MachineProcess.consoleTail("t1"))")
            #expect(seen["root"] == "/dev/nvme0n1" && seen["initrd"] == "no" && seen["utmp"] == "masked", "\(seen)")
            #expect(try Self.machine(["stop", "t1"] + store).status == .exited(0))
            #expect(try Self.machine(["remove", "t1"] + store).status == .exited(0))
            #expect(try Self.machine(["template", "remove", "trim"] + store).status == .exited(0))
        }
    }

    /// A cloud-style image: a partitioned disk (an MBR, the root at 1 MiB) in qcow2, converted once,
    /// its root found by its kernel and named by UUID, booted at import; an image of another format
    /// is refused, leaving nothing.
    @Test func aPartitionedQcow2ImageIsImportedOnceAndBoots() throws {
        let root = try Self.guestRoot()
        let folder = "/var/tmp/replica-vm-image-\(getpid())"
        _ = mkdir(folder, 0o700)
        defer { _ = try? Command.check(["rm", "-rf", "--one-file-system", folder]) }
        let raw = "\(folder)/disk.raw"
        try Command.check(["truncate", "-s", "2G", raw])
        var mbr = [UInt8](repeating: 0, count: 512)
        mbr[446 + 4] = 0x83
        mbr.replaceSubrange(446 + 8..<446 + 16, with: [0x00, 0x08, 0, 0, 0x00, 0xf8, 0x3f, 0])  // 2048, 4192256 sectors
        (mbr[510], mbr[511]) = (0x55, 0xaa)
        let disk = try OwnedFD.open(raw, O_WRONLY)
        _ = mbr.withUnsafeBytes { pwrite(disk.rawValue, $0.baseAddress, 512, 0) }
        try Command.check(["mkfs.ext4", "-q", "-F", "-E", "offset=1048576,root_owner=0:0", "-d", root, raw, "2046M"])
        try Command.check(["qemu-img", "convert", "-O", "qcow2", raw, "\(folder)/cloud.qcow2"])
        try Command.check(["qemu-img", "convert", "-O", "vmdk", raw, "\(folder)/other.vmdk"])
        unlink(raw)
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            let imported = try Self.machine(["template", "import", "--vm", "cloud", "\(folder)/cloud.qcow2"] + store)
            #expect(imported.status == .exited(0), "\(imported.output)")
            let recorded = Btrfs.attribute(try OwnedFD.open("\(image.mountPoint)/templates/cloud", O_RDONLY | O_DIRECTORY), VMImage.attribute) ?? ""
            #expect(recorded.contains("Root=UUID="), "\(recorded)")
            // Trimmed, the same image boots without its initrd (its check boot says READY), its root the partition on NVMe.
            let trimmed = try Self.machine(["template", "import", "--vm", "--minimal", "trimmed", "\(folder)/cloud.qcow2"] + store)
            #expect(trimmed.status == .exited(0), "\(trimmed.output)")
            let trimmedRecord = Btrfs.attribute(try OwnedFD.open("\(image.mountPoint)/templates/trimmed", O_RDONLY | O_DIRECTORY), VMImage.attribute) ?? ""
            #expect(trimmedRecord.contains("Root=/dev/nvme0n1p1") && trimmedRecord.contains("Initrd=no") && trimmedRecord.contains("Disk=nvme"), "\(trimmedRecord)")
            let other = try Self.machine(["template", "import", "--vm", "other", "\(folder)/other.vmdk"] + store)
            #expect(other.status == .exited(1) && other.output.contains("is a vmdk file") && other.output.contains("qemu-img convert"), "\(other.output)")
            #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/templates", O_RDONLY | O_DIRECTORY)).sorted() == ["cloud", "trimmed"])
        }
    }

    @Test func aRootThatCannotBootIsRefusedAtImportAndLeavesNothing() throws {
        let root = try Self.guestRoot()
        let broken = "/var/tmp/replica-vm-broken-\(getpid())"
        defer { _ = try? Command.check(["rm", "-rf", "--one-file-system", broken]) }
        try Command.check(["cp", "-a", root, broken])
        // Its initrd gone, the kernel finds no disk (virtio_blk is a module): it panics.
        for name in try DirectoryEntries.names(in: try OwnedFD.open("\(broken)/boot", O_RDONLY | O_DIRECTORY)) where name.hasPrefix("initrd.img") {
            unlink("\(broken)/boot/\(name)")
        }
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            let began = ContinuousClock.now
            let refused = try Self.machine(["template", "import", "--vm", "broken", broken] + store)
            #expect(refused.status == .exited(1) && refused.output.contains("kernel panicked") && refused.output.contains("--no-check"), "\(refused.output)")
            #expect(ContinuousClock.now - began < .seconds(60), "a panic is reported when it happens, not at the check's deadline")
            #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/templates", O_RDONLY | O_DIRECTORY)).isEmpty)
            #expect(Self.processes(containing: "guest=.check-broken").isEmpty)

            // A root without a kernel, or without systemd, is refused before anything is made.
            let container = try Self.machine(["template", "import", "--vm", "nokernel", try MachineTests.rootfs()] + store)
            #expect(container.status == .exited(1) && container.output.contains("has no kernel"), "\(container.output)")
            // Control: the same root with --no-check imports (it is the check that refused it).
            let unchecked = try Self.machine(["template", "import", "--vm", "--no-check", "broken", broken] + store)
            #expect(unchecked.status == .exited(0), "\(unchecked.output)")
            // A warm pool keeps containers: a VM template's is refused, and no pool is recorded.
            let pooled = try Self.machine(["pool", "broken", "--size", "1"] + store)
            #expect(pooled.status == .exited(1) && pooled.output.contains("a pool keeps containers booted"), "\(pooled.output)")
            #expect(access("\(image.mountPoint)/machines/.pools/broken", F_OK) != 0)
        }
    }
}
