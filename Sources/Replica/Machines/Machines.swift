import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaStore

/// Machines forked from templates: a writable snapshot `machines/NAME` of a template, its identity
/// reset so no two forks clash (what `machinectl clone` and `systemd-nspawn --template=` leave as it
/// was), a seed laid over it (NoCloud for cloud-init, and the same facts as systemd credentials for
/// images without it), then booted with `systemd-nspawn --boot --notify-ready=yes`.
public enum Machines {
    /// The folder of the store machines are in.
    public static let directory = Store.machinesDirectory
    /// The extended attribute recording the template a machine was forked from: `NAME UUID`.
    public static let attribute = "user.replica.machine"
    /// The unit a machine runs as under systemd, less its name: `replica-machine@NAME.service`. Its
    /// state is the machine's root, so `replica-snap run replica-machine@NAME` snapshots the machine.
    public static let unitPrefix = Store.machineSubvolumePrefix
    /// The extended attribute recording the machine's network: `[Network]` lines (`Bridge=lab`).
    public static let networkAttribute = "user.replica.network"
    /// The extended attribute recording what every start passes as credentials: `hostname=NAME`
    /// and one `ssh-key=KEY` line per key.
    public static let credentialsAttribute = "user.replica.credentials"

    /// Where the NoCloud seed is, inside a machine's root.
    public static let seedDirectory = "var/lib/cloud/seed/nocloud"

    /// One machine.
    public struct Machine: Equatable, Sendable {
        /// Its name: also its hostname, and the container's name.
        public var name: String
        /// The template it was forked from.
        public var template: String
        /// That template's uuid when it was forked.
        public var templateUUID: String
        /// Its root, `STORE/machines/NAME`.
        public var path: String
        /// Its network, as `[Network]` lines of a profile (`Bridge=lab`, `Subnet=10.88.0.0/24`);
        /// empty for a namespace of its own with loopback only.
        public var network: [String] = []
        /// Its hostname, passed as `firstboot.hostname` at every start.
        public var hostname: String = ""
        /// Its machine id (32 hex digits), chosen at fork and passed as `--uuid=` at every start:
        /// the guest's systemd writes it to an empty `/etc/machine-id` at its first boot. Nil for a
        /// machine forked before ids were chosen (its systemd made one of its own).
        public var machineID: String? = nil
        /// Root's SSH keys, passed as `ssh.authorized_keys.root` at every start.
        public var sshKeys: [String] = []
        /// Its users: the host range its user namespace maps root to, or the host's own (`no`);
        /// nil for a machine forked before ranges were recorded (`Machines.prepareStart` gives it one).
        public var users: MachineUsers? = nil
        /// What it may take from the host.
        public var limits = MachineLimits()
        /// What it boots when it is a virtual machine (forked from a VM template); nil for a container.
        public var vm: VMImage? = nil
        /// The template whose warm pool it waits in, unclaimed (`MachinePool`); nil for any other machine.
        public var pool: String? = nil
        /// The domain its set's names are in (`lab.replica`), answered on its gateway: a container's
        /// resolver is written at fork, a VM's given at every boot (`QEMU.command`). Nil outside a set.
        public var domain: String? = nil

        /// A machine as recorded (`Machines.machine` reads one from the store).
        public init(name: String, template: String, templateUUID: String, path: String, network: [String] = [], hostname: String = "",
                    machineID: String? = nil, sshKeys: [String] = [], users: MachineUsers? = nil, limits: MachineLimits = MachineLimits(),
                    vm: VMImage? = nil, pool: String? = nil, domain: String? = nil) {
            (self.name, self.template, self.templateUUID, self.path, self.network, self.hostname) = (name, template, templateUUID, path, network, hostname)
            (self.machineID, self.sshKeys, self.users, self.limits, self.vm, self.pool, self.domain) = (machineID, sshKeys, users, limits, vm, pool, domain)
        }

        /// Its machine id written as a UUID (`8-4-4-4-12` hex digits), as systemd-nspawn's `--uuid=`
        /// and QEMU's `-uuid` take it; nil without a machine id.
        public var uuid: String? {
            guard let id = machineID, id.utf8.count == 32 else { return nil }
            let digits = Array(id)
            return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(digits[$0]) }.joined(separator: "-")
        }
    }

    /// What a fork gets on top of its template.
    public struct Seed: Equatable, Sendable {
        /// The machine's hostname (default: its name).
        public var hostname: String?
        /// Its machine id (default: a new random one, `newMachineID()`).
        public var machineID: String?
        /// Public keys root may log in with (`ssh.authorized_keys.root`, cloud-init's `ssh_authorized_keys`).
        public var sshKeys: [String] = []
        /// Its address on its network (`10.88.0.5/24`), for a static network-config.
        public var address: String?
        /// Its default gateway (`10.88.0.1`), with `address`.
        public var gateway: String?
        /// Its IPv6 address (`fd…::…/64`), for the same network-config.
        public var address6: String?
        /// It is on the LAN through a macvlan (`mv-PARENT`) and takes its address by DHCP: a
        /// network-config saying so, and systemd-networkd told to (`lanClient`).
        public var lan = false
        /// Its IPv6 gateway, with `address6`.
        public var gateway6: String?
        /// The domain its set's names are in (`lab.replica`), answered on the gateway: the
        /// network-config's nameserver and search domain.
        public var domain: String?
        /// A NoCloud folder of the operator's (meta-data, user-data …), copied instead of the one made here.
        public var nocloud: String?
        /// The seed's instance-id (default: a new one, so cloud-init sees a new instance); a claimed
        /// pool machine keeps the one it booted with.
        public var instanceID: String?
        /// An empty seed.
        public init() {}
    }

    /// A machine's network as `fork` sees it: what to record, and how to make and unmake it. The
    /// store knows no network; replica-machine gives ReplicaNet's (a veth on a bridge, a lease).
    public struct Network: Sendable {
        /// `[Network]` lines of a profile (`Bridge=lab`, `Subnet=10.88.0.0/24`), recorded with the machine.
        public var settings: [String]
        /// Makes it for the machine id given and returns the machine's addresses and gateways for
        /// the seed (nil: none to seed).
        public var up: @Sendable (String) throws(ReplicaError) -> Addresses?
        /// Removes what `up` made and gives its address back.
        public var down: @Sendable () -> Void

        /// A network: its recorded lines, how to make it, how to unmake it.
        public init(settings: [String], up: @escaping @Sendable (String) throws(ReplicaError) -> Addresses?,
                    down: @escaping @Sendable () -> Void) {
            (self.settings, self.up, self.down) = (settings, up, down)
        }
    }

    /// A machine's addresses on its network, as its seed gives them.
    public struct Addresses: Sendable {
        /// IPv4, with its prefix length (`10.88.0.5/24`).
        public var address: String
        /// The IPv4 default gateway.
        public var gateway: String?
        /// IPv6 (`fd…::…/64`), when the network gives one.
        public var address6: String? = nil
        /// The IPv6 default gateway.
        public var gateway6: String? = nil
        /// Addresses as the seed writes them.
        public init(address: String, gateway: String?, address6: String? = nil, gateway6: String? = nil) {
            (self.address, self.gateway, self.address6, self.gateway6) = (address, gateway, address6, gateway6)
        }
    }

    /// Forks machine `name` from template `template`: a writable snapshot (`btrfs subvolume snapshot`)
    /// made as `.forking-NAME`, its identity reset and its seed laid, then renamed into place.
    /// With a `network`, that network is made on a thread of its own meanwhile and its address is
    /// seeded; it is recorded with the machine. Refused when the name is taken or another fork of
    /// it runs (the machine's lock). On any failure nothing is left: no fork, no network, no lease.
    @discardableResult
    /// Its user namespace gets the first free range (`users` nil) or `users`; both are recorded
    /// with it, with its `limits`.
    public static func fork(_ name: String, template templateName: String, seed: Seed = Seed(), network: Network? = nil,
                            users wantedUsers: MachineUsers? = nil, limits: MachineLimits = MachineLimits(),
                            in store: borrowing Store) throws(ReplicaError) -> Machine {
        let held = try lock(name, in: store)
        defer { _ = held.subvolume }  // held until here
        let template = try Templates.template(templateName, in: store)
        try store.makeDirectory(directory, in: try store.directory("."), mode: 0o700)
        let folder = try store.directory(directory)
        let path = "\(store.path)/\(directory)"
        guard (try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) == nil else {
            throw ReplicaError("fork machine", ["\(path)/\(name)"], errno: .EEXIST,
                               hint: "a machine of that name exists; remove it first (replica-machine remove \(name))", reason: .exists)
        }
        let staging = ".forking-\(name)"
        if (try? folder.openat(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) != nil {
            try Btrfs.deleteSubvolume(in: folder, named: staging, parentPath: path)  // a killed fork's
        }
        let source = try store.directory("\(Templates.directory)/\(templateName)")
        var seeded = seed
        seeded.lan = network.map { MachineNetwork.lanParent(of: $0.settings) != nil } ?? false
        let machineID = seed.machineID ?? newMachineID()
        seeded.machineID = machineID
        let making = try network.map { (network) throws(ReplicaError) in try DedicatedThread.start { () throws(ReplicaError) in try network.up(machineID) } }
        var users = MachineUsers.host
        do throws(ReplicaError) {
            try Btrfs.publish(name, staging: staging, in: folder, path: path, make: { (folder) throws(ReplicaError) in
                try Btrfs.snapshot(source, into: folder, named: staging, readOnly: false,
                                   sourcePath: "\(store.path)/\(Templates.directory)/\(templateName)", parentPath: path)
            }, fill: { (fd) throws(ReplicaError) in
                if let vm = template.vm {
                    // Its disk is the guest's: its identity goes in at every boot (the kernel's
                    // command line, SMBIOS). Its TPM's state file is made empty at its first start
                    // (`VirtualMachine.begin`), never the template's: a template holds none, and
                    // one found here is removed. Nothing new is made in the snapshot, whose first new
                    // inode would double the commit the fork waits for on a fragmented disk.
                    if vm.tpm && faccessat(fd.rawValue, VMImage.tpmState, F_OK, AT_SYMLINK_NOFOLLOW) == 0 {
                        _ = try syscall("unlinkat", "\(path)/\(staging)/\(VMImage.tpmState)") { unlinkat(fd.rawValue, VMImage.tpmState, 0) }
                    }
                    if let made = try making?.join() { (seeded.address, seeded.gateway) = (made.address, made.gateway) }
                } else {
                    let root = try RootDirectory("\(path)/\(staging)")
                    try resetIdentity(root, hostname: seed.hostname ?? name)
                    if let made = try making?.join() { (seeded.address, seeded.gateway, seeded.address6, seeded.gateway6) = (made.address, made.gateway, made.address6, made.gateway6) }
                    try lay(seeded, name: name, in: root)
                    if seeded.lan { try layLANClient(in: root) }
                    if let domain = seeded.domain, let gateway = seeded.gateway {
                        // Its set's names, from the dnsmasq on its bridge (which forwards the rest to the host's resolvers).
                        try root.replaceFile("etc/resolv.conf", contents: Array(resolvConf(gateway: gateway, domain: domain).utf8))
                    }
                }
                try Btrfs.removeAttributes(fd, prefix: "user.replica.", path: "\(path)/\(staging)")  // the template's own
                try Btrfs.setAttribute(fd, attribute, "\(templateName) \(template.uuid)", path: "\(path)/\(staging)")
                if let vm = template.vm { try Btrfs.setAttribute(fd, VMImage.attribute, try vm.record().encoded, path: "\(path)/\(staging)") }
                var credentials = Record()
                try credentials.append("hostname", seed.hostname ?? name)
                try credentials.append("machine-id", machineID)
                try credentials.append("ssh-key", each: seed.sshKeys)
                if seeded.gateway == nil { seeded.domain = nil }  // its set's names are answered on its gateway
                try credentials.append("domain", each: seeded.domain.map { [$0] } ?? [])
                try Btrfs.setAttribute(fd, credentialsAttribute, credentials.encoded, path: "\(path)/\(staging)")
                if let network {
                    try Btrfs.setAttribute(fd, networkAttribute, try networkRecord(network.settings).encoded, path: "\(path)/\(staging)")
                }
                if !limits.isEmpty { try Btrfs.setAttribute(fd, MachineLimits.attribute, limits.record.encoded, path: "\(path)/\(staging)") }
                users = try MachineUsers.assign(wantedUsers, to: fd, name: name, path: "\(path)/\(staging)", in: folder, folderPath: path)
            })
        } catch {
            _ = try? making?.join()
            network?.down()
            try? MachineUsers.release(name, in: folder, folderPath: path)
            throw error
        }
        return Machine(name: name, template: templateName, templateUUID: template.uuid, path: "\(path)/\(name)",
                       network: network?.settings ?? [], hostname: seed.hostname ?? name, machineID: machineID, sshKeys: seed.sshKeys,
                       users: users, limits: limits, vm: template.vm, domain: seeded.domain)
    }

    /// A machine's `/etc/resolv.conf` in a set: its gateway's nameserver (the set's dnsmasq), the
    /// set's domain searched. A container's is written at fork, a VM's at every boot (`QEMU.resolverLines`).
    static func resolvConf(gateway: String, domain: String) -> String {
        "nameserver \(gateway)\nsearch \(domain)\n"
    }

    /// A new machine id: 128 random bits as a version 4 UUID's (what `systemd-id128 new` prints), 32 hex digits.
    public static func newMachineID() -> String {
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max) }
        bytes[6] = bytes[6] & 0x0f | 0x40
        bytes[8] = bytes[8] & 0x3f | 0x80
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// One fork, remove or snapshot run of machine `name` at a time: the lock of its subvolume
    /// (`replica-machine@NAME`, `SubvolumeLock`). A held lock throws reason `lockHeld`.
    public static func lock(_ name: String, in store: borrowing Store) throws(ReplicaError) -> SubvolumeLock {
        _ = try MachineName(name)
        do { return try SubvolumeLock.acquire(unitPrefix + name, in: store) } catch where error.reason == .lockHeld {
            throw ReplicaError("machine", [name], errno: .EWOULDBLOCK,
                               hint: "another fork, remove or snapshot of it is running (\(error.hint ?? "")); try again when it is done",
                               reason: .lockHeld)
        }
    }

    /// Resets what makes a root one particular machine, inside `root` (never following its links):
    /// an empty `/etc/machine-id` (systemd makes a new one at the first boot) and no
    /// `/var/lib/dbus/machine-id`; the hostname in `/etc/hostname` and `/etc/hosts`; no SSH host keys
    /// (a new Ed25519 one where sshd is installed), no DHCP leases, no random seed.
    static func resetIdentity(_ root: borrowing RootDirectory, hostname: String) throws(ReplicaError) {
        try root.replaceFile("etc/machine-id", contents: [], mode: 0o444)
        try? root.remove("var/lib/dbus/machine-id")
        try writeHostname(hostname, in: root)
        for folder in ["etc/ssh", "var/lib/dhcp", "var/lib/NetworkManager", "var/lib/systemd"] {
            guard let names = try? root.names(in: folder) else { continue }
            for name in names where (folder == "etc/ssh" && name.hasPrefix("ssh_host_")) || (folder != "etc/ssh" && name.contains("lease"))
                || (folder == "var/lib/systemd" && name == "random-seed") {
                try? root.remove("\(folder)/\(name)")
            }
        }
        // Where sshd is installed, a new host key of its own (Ed25519, made in milliseconds; sshd
        // starts with it, and Debian's does not make missing keys at boot).
        if (try? root.open("etc/ssh/sshd_config", [.regularFile, .noSymlinks])) != nil {
            // etc/ssh checked to be a real folder of the fork (no link on the way): the fork is not
            // in use yet, so its path stays what was checked.
            _ = try root.openForReading("etc/ssh", [.directory, .noSymlinks])
            try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@\(hostname)",
                               "-f", "\(root.path)/etc/ssh/ssh_host_ed25519_key"])
        }
    }

    /// The hostname in `/etc/hostname` and `/etc/hosts` inside `root`, the files `owner`'s when given.
    static func writeHostname(_ hostname: String, in root: borrowing RootDirectory, owner: (uid: uid_t, gid: gid_t)? = nil) throws(ReplicaError) {
        try root.replaceFile("etc/hostname", contents: Array("\(hostname)\n".utf8), owner: owner)
        try root.replaceFile("etc/hosts", contents: Array("""
            127.0.0.1\tlocalhost
            127.0.1.1\t\(hostname)
            ::1\tlocalhost ip6-localhost ip6-loopback
            ff02::1\tip6-allnodes
            ff02::2\tip6-allrouters

            """.utf8), owner: owner)
    }

    /// The NoCloud seed (`/var/lib/cloud/seed/nocloud`, made read-only for the guest): a new
    /// instance-id per fork, the hostname, root's SSH keys, a static network-config when an address
    /// is given — or the operator's own folder.
    static func lay(_ seed: Seed, name: String, in root: borrowing RootDirectory) throws(ReplicaError) {
        try root.makeDirectories(seedDirectory, mode: 0o755)
        let hostname = seed.hostname ?? name
        var files: [(String, String)]
        if let nocloud = seed.nocloud {
            files = []
            // Read inside the folder, never through a link: a seed file that is a symlink (which could
            // lead anywhere on the host) is refused, not followed.
            let folder = try RootDirectory(nocloud)
            for file in ["meta-data", "user-data", "network-config", "vendor-data"] {
                let fd: OwnedFD
                do { fd = try folder.openForReading(file, [.regularFile, .noSymlinks]) } catch where error.errno == .ENOENT { continue }
                files.append((file, String(decoding: try fd.readAll(limit: 1 << 20, name: "\(nocloud)/\(file)"), as: UTF8.self)))
            }
            guard files.contains(where: { $0.0 == "meta-data" }) else {
                throw ReplicaError("seed", [nocloud], errno: .ENOENT, hint: "a NoCloud folder needs a meta-data file", reason: .refused)
            }
        } else {
            let instance = seed.instanceID ?? "replica-" + [UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max)]
                .map { String($0, radix: 16) }.joined(separator: "-")
            files = [("meta-data", "instance-id: \(instance)\nlocal-hostname: \(hostname)\n")]
            var user = "#cloud-config\nhostname: \(hostname)\n"
            if !seed.sshKeys.isEmpty {
                user += "ssh_authorized_keys:\n" + seed.sshKeys.map { "  - \($0)\n" }.joined()
            }
            files.append(("user-data", user))
            if seed.lan {
                files.append(("network-config", """
                    version: 2
                    ethernets:
                      lan:
                        match:
                          name: "mv-*"
                        dhcp4: true
                        dhcp6: true

                    """))
            }
            if let address = seed.address {
                files.append(("network-config", """
                    version: 2
                    ethernets:
                      eth0:
                        addresses: [\(([address] + (seed.address6.map { [$0] } ?? [])).joined(separator: ", "))]
                    \(seed.gateway.map { "    gateway4: \($0)\n" } ?? "")\
                    \(seed.gateway6.map { "    gateway6: \($0)\n" } ?? "")\
                    \(seed.gateway.flatMap { gateway in seed.domain.map { "    nameservers:\n      addresses: [\(gateway)]\n      search: [\($0)]\n" } } ?? "")
                    """))
            }
        }
        for (file, text) in files {
            try root.replaceFile("\(seedDirectory)/\(file)", contents: Array(text.utf8), mode: 0o444)
        }
    }

    /// The guest's own DHCP client for its macvlan, where the template has systemd-networkd (a
    /// systemd guest without cloud-init): a `.network` file for `mv-*` with `DHCP=yes`, and
    /// systemd-networkd enabled (`systemctl enable`'s link). Nothing else of the guest's changes.
    static func layLANClient(in root: borrowing RootDirectory) throws(ReplicaError) {
        let unit = "usr/lib/systemd/system/systemd-networkd.service"
        guard (try? root.open(unit, [.regularFile, .noSymlinks])) != nil else { return }
        try root.makeDirectories("etc/systemd/network", mode: 0o755)
        try root.replaceFile("etc/systemd/network/80-replica-lan.network", contents: Array("""
            # The LAN through a macvlan (replica-machine, Macvlan=): its address from the LAN's DHCP server.
            [Match]
            Name=mv-*

            [Network]
            DHCP=yes

            """.utf8), mode: 0o644)
        try root.makeDirectories("etc/systemd/system/multi-user.target.wants", mode: 0o755)
        try root.replaceSymlink("etc/systemd/system/multi-user.target.wants/systemd-networkd.service", target: "/\(unit)")
    }

    /// The machine `name`.
    public static func machine(_ name: String, in store: borrowing Store) throws(ReplicaError) -> Machine {
        _ = try MachineName(name)
        let fd: OwnedFD
        do { fd = try store.directory("\(directory)/\(name)") } catch {
            throw ReplicaError("machine", [name], errno: .ENOENT, hint: "no such machine in \(store.path)/\(directory)", reason: .notFound)
        }
        let recorded = (Btrfs.attribute(fd, attribute) ?? "").split(separator: " ").map(String.init)
        let path = "\(store.path)/\(directory)/\(name)"
        let network = try Record(decoding: Btrfs.attribute(fd, networkAttribute) ?? "", source: "\(path) \(networkAttribute)")
        let credentials = try Record(decoding: Btrfs.attribute(fd, credentialsAttribute, limit: 64 << 10) ?? "",
                                     source: "\(path) \(credentialsAttribute)")
        let limits = try Record(decoding: Btrfs.attribute(fd, MachineLimits.attribute) ?? "", source: "\(path) \(MachineLimits.attribute)")
        return Machine(name: name, template: recorded.first ?? "", templateUUID: recorded.dropFirst().first ?? "", path: path,
                       network: network.fields.map { "\($0.key)=\($0.value)" }, hostname: credentials.value("hostname") ?? name,
                       machineID: credentials.value("machine-id"),
                       sshKeys: credentials.values("ssh-key"), users: try Btrfs.attribute(fd, MachineUsers.attribute).map(MachineUsers.init),
                       limits: try MachineLimits(limits.fields.map { ($0.key, $0.value) }),
                       vm: try Btrfs.attribute(fd, VMImage.attribute).map { (text) throws(ReplicaError) in
                           try VMImage(try Record(decoding: text, source: "\(path) \(VMImage.attribute)"))
                       }, pool: Btrfs.attribute(fd, MachinePool.attribute), domain: credentials.value("domain"))
    }

    /// The machine `name` as the next start boots it: a range for its user namespace recorded
    /// now if it was forked before ranges were (the first free one, kept from then on), and
    /// `limits` laid over its recorded ones and recorded (a `start --memory-max` lasts).
    public static func prepareStart(_ name: String, limits: MachineLimits = MachineLimits(), in store: borrowing Store) throws(ReplicaError) -> Machine {
        var machine = try machine(name, in: store)
        let fd = try store.directory("\(directory)/\(name)")
        if machine.users == nil {
            machine.users = try MachineUsers.assign(nil, to: fd, name: name, path: machine.path, in: try store.directory(directory),
                                                    folderPath: "\(store.path)/\(directory)")
        }
        if !limits.isEmpty {
            machine.limits = machine.limits.overridden(by: limits)
            try Btrfs.setAttribute(fd, MachineLimits.attribute, machine.limits.record.encoded, path: machine.path)
        }
        return machine
    }

    /// Records `network` as the machine's (a first `start` given one).
    public static func recordNetwork(_ network: [String], of name: String, in store: borrowing Store) throws(ReplicaError) {
        let fd = try store.directory("\(directory)/\(try machine(name, in: store).name)")
        try Btrfs.setAttribute(fd, networkAttribute, try networkRecord(network).encoded, path: "\(store.path)/\(directory)/\(name)")
    }

    /// The machine's `[Network]` lines (`Bridge=br0`) as a record.
    static func networkRecord(_ lines: [String]) throws(ReplicaError) -> Record {
        var record = Record()
        for line in lines {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            try record.append(parts[0], parts.count == 2 ? parts[1] : "")
        }
        return record
    }

    /// Every machine on the store, by name.
    public static func list(in store: borrowing Store) throws(ReplicaError) -> [Machine] {
        guard let folder = try? store.directory(directory) else { return [] }
        var all: [Machine] = []
        for name in try DirectoryEntries.names(in: folder).sorted() where !name.hasPrefix(".") {
            if let machine = try? machine(name, in: store) { all.append(machine) }
        }
        return all
    }

    /// Removes machine `name` and its data; refused while it runs, or while another fork, remove
    /// or snapshot run holds it. What a fork killed before its end left (`.forking-NAME`) goes too;
    /// when that is all there was, this is not an error.
    public static func remove(_ name: String, from store: borrowing Store) throws(ReplicaError) {
        _ = try MachineName(name)
        let held = try lock(name, in: store)
        defer { _ = held.subvolume }  // held until here
        let path = "\(store.path)/\(directory)"
        let folder = try? store.directory(directory)
        var removed = false
        if let folder, (try? folder.openat(".forking-\(name)", O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) != nil {
            try Btrfs.deleteSubvolume(in: folder, named: ".forking-\(name)", parentPath: path)
            removed = true
        }
        do throws(ReplicaError) {
            let machine = try machine(name, in: store)
            if let pid = MachineProcess.running(name) {
                throw ReplicaError("remove machine", [name], errno: .EBUSY, hint: "it is running (pid \(pid)); stop it first", reason: .busy)
            }
            let fd = try store.directory("\(directory)/\(name)")
            let info = try Btrfs.info(fd, path: machine.path)
            try Btrfs.deleteSubvolume(id: info.id, on: try store.directory(directory), path: machine.path)
        } catch where error.reason == .notFound && removed {
        }
        if let folder = try? store.directory(directory) {
            try MachineUsers.release(name, in: folder, folderPath: path)  // its user range, free again
            // As `btrfs subvolume delete --commit-after`: the commit sets btrfs's cleaner on the root
            // now, so its space comes back within a second rather than after the next periodic commit
            // (up to 30 s), and the cleaner's work does not land on whatever runs then (a claim).
            // Only once no descriptor into the root is open: until then btrfs keeps it from the cleaner.
            try Btrfs.sync(folder, path: path)
        }
        unlink("\(MachineProcess.runDirectory)/\(name).log")
    }

    /// `systemd-nspawn --boot` of the machine: its root, its name, READY passed on when its systemd
    /// is up, its own user namespace (`MachineUsers`, unless it records `no`), the cgroup
    /// `placement` gives it, its own network namespace when one is given (`/run/netns/NAME`, which
    /// the caller joins; else a private one with loopback only), and the seed's facts recorded at fork as systemd
    /// credentials. The machine comes from `prepareStart`, which gives it its users.
    public static func spawnCommand(_ machine: Machine, networkNamespace: String? = nil, placement: MachinePlacement) -> [String] {
        precondition(machine.users != nil, "Machines.prepareStart gives every machine its users")
        var command = ["systemd-nspawn", "--quiet", "--boot", "--notify-ready=yes", "--directory=\(machine.path)",
                       "--machine=\(machine.name)", "--console=passive"]
        command += machine.users!.nspawnArguments
        command += placement.nspawnArguments(machine.limits)
        // Its own network namespace, or one of its own with loopback only: never the host's. A
        // given one is joined by the caller before systemd-nspawn runs (`MachineProcess.begin`,
        // `start --foreground`), as `ip netns exec` does: systemd-nspawn 252 joins a
        // --network-namespace-path from inside the guest's user namespace, which the kernel
        // refuses (EPERM). The guest's root holds no capability over that namespace either way.
        // A namespace of its own: the host's resolvers (127.0.0.53, say) are not reachable from
        // there, so the guest's own /etc/resolv.conf stays (its set's names server, where it has one).
        if MachineNetwork.bridge(of: machine.network) != nil || MachineNetwork.lanParent(of: machine.network) != nil {
            command.append("--resolv-conf=off")
        }
        if let parent = MachineNetwork.lanParent(of: machine.network) {
            command.append("--network-macvlan=\(parent)")  // a private network too, owned by the guest's user namespace
        } else if networkNamespace == nil {
            command.append("--private-network")
        }
        // The seed, read-only for the guest (cloud-init reads it; nothing inside may rewrite it).
        command.append("--bind-ro=\(machine.path.replacingAll(":", with: "\\:"))/\(seedDirectory):/\(seedDirectory)")
        command.append("--set-credential=firstboot.hostname:\(machine.hostname)")
        // As a UUID: the guest's systemd takes it as its machine id when /etc/machine-id is empty.
        if let uuid = machine.uuid { command.append("--uuid=\(uuid)") }
        if !machine.sshKeys.isEmpty { command.append("--set-credential=ssh.authorized_keys.root:\(machine.sshKeys.joined(separator: "\n"))") }
        return command
    }
}
