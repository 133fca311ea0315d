import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// A warm pool of a container template: machines forked and booted ahead of demand, each made
/// whole at its own fork (a machine id, an SSH host key, a user range of its own: a pool machine
/// is a fork like any other, `pool-` and eight hex digits), waiting READY under its pool name.
/// `claim` hands one out under the name asked for, in milliseconds: the machine, its subvolume,
/// user range, pid file and console log take that name; its hostname (the guest's kernel's,
/// `/etc/hostname`, `/etc/hosts`, the NoCloud seed) and root's SSH keys are applied in the
/// running guest; what every later start passes is recorded. The pool's size is kept by `fill`,
/// which `replica-machine claim` runs in the background after each claim.
///
/// Until it stops, a claimed machine's processes keep what they were started under: its cgroup
/// (`machine-pool-…`; a scope named after the pool machine where systemd runs: cgroup2 renames none) and systemd-nspawn's
/// `--machine=` (the pid file's second line says it); its next start is under its own name.
public enum MachinePool {
    /// The extended attribute marking a pool machine: the template whose pool it is in.
    public static let attribute = "user.replica.pool"
    /// The extended attribute set once a pool machine said READY: it may be claimed.
    public static let readyAttribute = "user.replica.pool-ready"
    /// The folder of pools' settings in the machines folder: one file per template (`Size=3`
    /// and the members' limits, `MemoryMax=512M`).
    static let settingsFolder = ".pools"
    /// Where the background refill after a claim writes what it did: `TEMPLATE.log`.
    public static let logDirectory = "/run/replica/pools"
    /// How long a claim's background refill (`pool --refill`) waits before it forks, in µs: the
    /// machine just claimed runs its first commands without a fork's commit and a boot beside it
    /// (on two CPUs, claim → a command ran in it fell from a median of 6.6–8.9 ms to 5.8–6.5 ms,
    /// its 90th percentile from 10.8–12.8 ms to 6.6–7.5 ms). The pool is full again that much
    /// later.
    public static let refillDelay: useconds_t = 100_000
    /// How long `fill` lets its machines take to be READY, together.
    public static let readyTimeout: Duration = .seconds(120)

    /// A pool's settings.
    public struct Settings: Equatable, Sendable {
        /// How many machines it keeps booted.
        public var size: Int
        /// What each may take from the host.
        public var limits: MachineLimits
        /// The `[Network]` lines a claimed machine gets (`Bridge=`, `Subnet=`: its veth, lease and
        /// address made at claim); empty for loopback only. A pool machine waits in a namespace of
        /// its own with loopback only.
        public var network: [String]
        /// A pool of `size` machines with these `limits`, claimed onto `network`.
        public init(size: Int, limits: MachineLimits = MachineLimits(), network: [String] = []) {
            (self.size, self.limits, self.network) = (size, limits, network)
        }
    }

    /// A pool machine, as `members` finds it.
    public struct Member: Equatable, Sendable {
        /// Its pool name (`pool-1a2b3c4d`).
        public var name: String
        /// It said READY and runs: it may be claimed.
        public var ready: Bool
        /// It runs.
        public var running: Bool
    }

    /// The settings of template `template`'s pool; nil when it has none.
    public static func settings(_ template: String, in store: borrowing Store) throws(ReplicaError) -> Settings? {
        _ = try PlainName(template, kind: "template")
        guard let folder = try? store.directory("\(Machines.directory)/\(settingsFolder)"),
              let file = try? folder.openat(template, O_RDONLY | O_NOFOLLOW) else { return nil }
        let path = "\(store.path)/\(Machines.directory)/\(settingsFolder)/\(template)"
        let record = try Record(decoding: String(decoding: try file.readAll(limit: 64 << 10, name: path), as: UTF8.self), source: path)
        guard let size = record.value("Size").flatMap({ Int($0) }), size >= 0 else {
            throw ReplicaError("machine pool", [path], errno: .EINVAL, hint: "no Size= of 0 or more; set one: replica-machine pool \(template) --size N",
                               reason: .refused)
        }
        return Settings(size: size, limits: try MachineLimits(record.fields.filter { !["Size", "Network"].contains($0.key) }.map { ($0.key, $0.value) }),
                        network: record.values("Network"))
    }

    /// Records `settings` for template `template`'s pool (a container template, checked); `fill`
    /// makes it so.
    public static func configure(_ template: String, _ settings: Settings, in store: borrowing Store) throws(ReplicaError) {
        guard settings.size >= 0 && settings.size <= 1000 else { throw .usage("--size \(settings.size): 0 to 1000 machines") }
        if try Templates.template(template, in: store).vm != nil {
            throw ReplicaError("machine pool", [template], errno: .ENOTSUP,
                               hint: "a pool keeps containers booted; \(template) is a VM template: fork its machines as they are needed", reason: .refused)
        }
        try MachinePlan.check(network: settings.network, of: "pool-00000000")
        // Its machines wait as their network has them wait (a namespace of their own, or a private one).
        if let recorded = try Self.settings(template, in: store), recorded.network != settings.network, try !members(template, in: store).isEmpty {
            throw .usage("the machines of pool \(template) wait for its network as it is (\(recorded.network.isEmpty ? "none" : recorded.network.joined(separator: " "))); "
                         + "empty the pool first (replica-machine pool \(template) --size 0), then give it the new one")
        }
        if MachineNetwork.lanParent(of: settings.network) != nil {
            throw .usage("a pool's machines join a bridge (--bridge, --network), not the LAN through a macvlan")
        }
        try store.makeDirectory(Machines.directory, in: try store.directory("."), mode: 0o700)
        try store.makeDirectory(settingsFolder, in: try store.directory(Machines.directory), mode: 0o700)
        var record = Record()
        try record.append("Size", "\(settings.size)")
        for field in settings.limits.record.fields { try record.append(field.key, field.value) }
        try record.append("Network", each: settings.network)
        try RootDirectory("\(store.path)/\(Machines.directory)/\(settingsFolder)").writeFileAtomically(template, contents: Array(record.encoded.utf8),
                                                                                                       mode: 0o600)
    }

    /// Template `template`'s pool machines, by name.
    public static func members(_ template: String, in store: borrowing Store) throws(ReplicaError) -> [Member] {
        guard let folder = try? store.directory(Machines.directory) else { return [] }
        var found: [Member] = []
        for name in try DirectoryEntries.names(in: folder).sorted() where name.hasPrefix(memberPrefix) {
            guard let fd = try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), Btrfs.attribute(fd, attribute) == template else { continue }
            let running = MachineProcess.running(name) != nil
            found.append(Member(name: name, ready: running && Btrfs.attribute(fd, readyAttribute) != nil, running: running))
        }
        return found
    }

    /// What every pool machine's name starts with.
    public static let memberPrefix = "pool-"

    /// Brings template `template`'s pool to its size: surplus machines stopped and removed (those
    /// not ready first); pool machines that do not run (a reboot, a killed `fill`) booted again,
    /// and new ones forked and booted to make up the size, all at once; each marked ready when its
    /// systemd says READY. One `fill` of a pool at a time: another waits for it, then finds what
    /// is left to do (so a claim's refill is never lost). A machine that fails to boot is removed
    /// and the first failure thrown once the others are done. Returns the machines started and removed.
    @discardableResult
    public static func fill(_ template: String, in store: borrowing Store) throws(ReplicaError) -> (started: [String], removed: [String]) {
        guard try settings(template, in: store) != nil else {
            throw ReplicaError("machine pool", [template], errno: .ENOENT, hint: "no pool of that template; make one: replica-machine pool \(template) --size N",
                               reason: .notFound)
        }
        // A lock file of its own: the settings file is replaced whole, so a lock on it would not hold.
        let folder = try store.directory("\(Machines.directory)/\(settingsFolder)")
        let lock = try folder.openat(".\(template).lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
        _ = try lock.lockExclusively(wait: nil, name: "\(store.path)/\(Machines.directory)/\(settingsFolder)/.\(template).lock")
        let current = try Self.settings(template, in: store) ?? Settings(size: 0)  // what the one before changed, or removed
        var members = try members(template, in: store).sorted { !$0.ready && $1.ready }
        var removed: [String] = []
        // A claim holds a machine's lock while it takes it out of the pool (not ready first): such
        // a machine is left to the claim.
        while members.count > current.size, let surplus = members.first {
            members.removeFirst()
            guard let held = try? Machines.lock(surplus.name, in: store) else { continue }
            guard MachineProcess.running(surplus.name) == nil || (try? MachineProcess.stop(surplus.name, timeout: .seconds(10))) != nil,
                  (try? Machines.machine(surplus.name, in: store)) != nil else { continue }
            _ = consume held  // remove takes it again
            try Machines.remove(surplus.name, from: store)
            try MachineNetwork.clear(surplus.name, keepLease: false)  // its namespace
            removed.append(surplus.name)
        }
        var machines: [Machines.Machine] = []
        var failure: ReplicaError? = nil
        for member in members where !member.ready {
            guard let held = try? Machines.lock(member.name, in: store) else { continue }
            defer { _ = held.subvolume }
            guard (try? Machines.machine(member.name, in: store)) != nil else { continue }  // claimed meanwhile
            if member.running { try? MachineProcess.stop(member.name, timeout: .seconds(10)) }  // a killed fill's: its READY went with it
            machines.append(try Machines.prepareStart(member.name, in: store))
        }
        for _ in members.count..<max(members.count, current.size) {
            let name = memberPrefix + String(UInt32.random(in: .min ... .max), radix: 16).leftPadded(8)
            do throws(ReplicaError) {
                let machine = try Machines.fork(name, template: template, limits: current.limits, in: store)
                try Btrfs.setAttribute(try store.directory("\(Machines.directory)/\(name)"), attribute, template, path: machine.path)
                machines.append(machine)
            } catch { failure = failure ?? error }
        }
        var starting: [MachineProcess.Starting] = []
        for var machine in machines {
            do throws(ReplicaError) {
                // With a network to be made at claim: in a namespace of its own with loopback only,
                // where its claim makes it; started as a machine of that network is (its own
                // resolv.conf). Without: a private one, as any machine without a network.
                machine.network = current.network
                let namespace = current.network.isEmpty ? nil : try MachineNetwork.emptyNamespace(machine.name)
                starting.append(try MachineProcess.begin(machine, networkNamespace: namespace))
            } catch {
                try? Machines.remove(machine.name, from: store)
                _ = try? MachineNetwork.clear(machine.name, keepLease: false)
                failure = failure ?? error
            }
        }
        let deadline = ContinuousClock.now + readyTimeout
        var started: [String] = []
        for machine in starting {
            do throws(ReplicaError) {
                _ = try machine.waitReady(until: deadline, timeout: readyTimeout)
                try Btrfs.setAttribute(try store.directory("\(Machines.directory)/\(machine.name)"), readyAttribute, "1",
                                       path: "\(store.path)/\(Machines.directory)/\(machine.name)")
                started.append(machine.name)
            } catch {
                try? MachineProcess.stop(machine.name, timeout: .seconds(10))
                try? Machines.remove(machine.name, from: store)
                _ = try? MachineNetwork.clear(machine.name, keepLease: false)
                failure = failure ?? error
            }
        }
        if current.size == 0 && machines.isEmpty {
            // An empty pool is none. A fill waiting on the lock meanwhile finds no settings: nothing to do.
            for name in [template, ".\(template).lock"] { unlinkat(folder.rawValue, name, 0) }
            unlink("\(logDirectory)/\(template).log")
        }
        if let failure { throw failure }
        return (started, removed)
    }

    /// What a claimed machine gets: its name, and what is applied in it.
    public struct Claim: Sendable {
        /// Its name from now on (also its hostname unless `hostname` is given).
        public var name: MachineName
        /// Its hostname.
        public var hostname: String?
        /// Public keys root may log in with (`/root/.ssh/authorized_keys`, and the credential every later start passes).
        public var sshKeys: [String] = []
        /// A claim of machine `name`.
        public init(_ name: String, hostname: String? = nil, sshKeys: [String] = []) throws(ReplicaError) {
            self.name = try MachineName(name)
            if let hostname { _ = try MachineName(hostname) }
            (self.hostname, self.sshKeys) = (hostname, sshKeys)
        }
    }

    /// Hands out a ready machine of template `template`'s pool as `claim.name`, its identity
    /// applied in the running guest (see the type's summary), and the pool's network made for it;
    /// returns it, its pool name and its address.
    /// Refused when the name is a machine already, or no machine of the pool is ready (two claims
    /// at once never take the same one: each holds the machine's lock). On a failure after the
    /// rename began, every step is undone and the pool machine stays in the pool.
    public static func claim(_ claim: Claim, template: String, in store: borrowing Store)
        throws(ReplicaError) -> (machine: Machines.Machine, member: String, address: String?) {
        let name = claim.name.rawValue
        let held = try Machines.lock(name, in: store)
        defer { _ = held.subvolume }  // held until here
        let path = "\(store.path)/\(Machines.directory)"
        if (try? Machines.machine(name, in: store)) != nil || MachineProcess.running(name) != nil {
            throw ReplicaError("claim machine", ["\(path)/\(name)"], errno: .EEXIST,
                               hint: "a machine of that name exists; claim under another name, or remove it first (replica-machine remove \(name))",
                               reason: .exists)
        }
        let members = try members(template, in: store)
        let settings = try settings(template, in: store)
        guard settings != nil || !members.isEmpty else {
            _ = try Templates.template(template, in: store)  // no such template: said as that
            throw ReplicaError("claim machine", [template], errno: .ENOENT,
                               hint: "template \(template) has no pool; make one: replica-machine pool \(template) --size N", reason: .notFound)
        }
        for member in members where member.ready {
            guard let memberLock = try? Machines.lock(member.name, in: store) else { continue }  // another claim's
            defer { _ = memberLock.subvolume }
            guard let (pid, _) = MachineProcess.runningProcess(member.name), let leader = MachineProcess.leader(member.name) else { continue }
            let address = try rename(member.name, to: name, pid: pid, leader: leader, claim: claim, network: settings?.network ?? [], in: store)
            return (try Machines.machine(name, in: store), member.name, address)
        }
        throw ReplicaError("claim machine", [template], errno: .EAGAIN,
                           hint: "none of its \(members.count) pool machine(s) is ready (replica-machine pool \(template) boots them); "
                               + "try again in a moment, or fork one (replica-machine fork)",
                           reason: .busy)
    }

    /// `claim`'s work, holding both names' locks: each step registers its undo, run in reverse on a failure.
    static func rename(_ member: String, to name: String, pid: Int32, leader: Int32, claim: Claim, network: [String],
                       in store: borrowing Store) throws(ReplicaError) -> String? {
        let path = "\(store.path)/\(Machines.directory)"
        let folder = try store.directory(Machines.directory)
        let folderFD = folder.rawValue
        var undo: [() -> Void] = []
        var address: String? = nil
        do throws(ReplicaError) {
            let before = try Machines.machine(member, in: store)
            // In an order where whatever prefix of it a crash keeps hands out nothing twice: no
            // longer claimable, renamed, its identity, out of the pool. Not synced: btrfs commits a
            // subvolume's rename with the first fsync after it (a full commit) and commits in order,
            // so nothing the guest makes durable after the claim outlives the claim.
            let memberFD = try store.directory("\(Machines.directory)/\(member)")
            _ = try syscall("fremovexattr", "\(path)/\(member)") { fremovexattr(memberFD.rawValue, readyAttribute) }
            undo.append {
                guard let fd = try? OwnedFD.open("\(path)/\(member)", O_RDONLY | O_DIRECTORY | O_NOFOLLOW) else { return }
                try? Btrfs.setAttribute(fd, readyAttribute, "1", path: "\(path)/\(member)")
            }
            _ = try syscall("renameat2(RENAME_NOREPLACE)", "\(path)/\(member)", "\(path)/\(name)") {
                replica_renameat2(folderFD, member, folderFD, name, replica_RENAME_NOREPLACE)
            }
            undo.append { _ = replica_renameat2(folderFD, name, folderFD, member, replica_RENAME_NOREPLACE) }
            try MachineUsers.rename(member, to: name, in: folder, folderPath: path)
            undo.append { try? MachineUsers.rename(name, to: member, in: folder, folderPath: path) }
            try MachineProcess.record(name, pid: pid, startedAs: member)
            undo.append { unlink("\(MachineProcess.runDirectory)/\(name).pid") }
            if !network.isEmpty {
                address = try MachineNetwork.adopt(member, as: name, network, machineID: before.machineID)
                undo.append { _ = try? MachineNetwork.clear(name, keepLease: false) }
                try Machines.recordNetwork(network, of: name, in: store)
            }

            // Its identity, in the running guest and for every later start.
            let hostname = claim.hostname ?? name
            let fd = try store.directory("\(Machines.directory)/\(name)")
            let root = try RootDirectory("\(path)/\(name)")
            undo.append {
                guard let root = try? RootDirectory("\(path)/\(name)"), let fd = try? OwnedFD.open("\(path)/\(name)", O_RDONLY | O_DIRECTORY) else { return }
                try? applyIdentity(hostname: before.hostname, sshKeys: nil, to: root, fd: fd, name: member, leader: leader)
            }
            try applyIdentity(hostname: hostname, sshKeys: claim.sshKeys, to: root, fd: fd, name: name, leader: leader)
            var credentials = Record()
            try credentials.append("hostname", hostname)
            try credentials.append("machine-id", before.machineID ?? Machines.newMachineID())
            try credentials.append("ssh-key", each: claim.sshKeys)
            try Btrfs.setAttribute(fd, Machines.credentialsAttribute, credentials.encoded, path: "\(path)/\(name)")
            _ = try syscall("fremovexattr", "\(path)/\(name)") { fremovexattr(fd.rawValue, attribute) }
        } catch {
            for step in undo.reversed() { step() }
            throw error
        }
        unlink("\(MachineProcess.runDirectory)/\(member).pid")
        _ = Glibc.rename("\(MachineProcess.runDirectory)/\(member).log", "\(MachineProcess.runDirectory)/\(name).log")
        try? NetworkNamespace.delete(MachineNetwork.namespace(member))  // pinned as the machine's own now
        return address
    }

    /// Applies `hostname` in a running guest whose root is `root` (its subvolume `fd`) and whose
    /// init is `leader`: `/etc/hostname`, `/etc/hosts` and the NoCloud seed (its instance-id kept:
    /// the guest is the instance it booted as), owned as the guest's root's files are on disk;
    /// the guest's kernel's hostname (`sethostname` in its UTS namespace); and `sshKeys`, when
    /// given, as root's `authorized_keys`.
    static func applyIdentity(hostname: String, sshKeys: [String]?, to root: borrowing RootDirectory, fd: borrowing OwnedFD, name: String,
                              leader: Int32) throws(ReplicaError) {
        let status = try fd.status()
        let owner = (uid: status.owner, gid: status.group)
        try Machines.writeHostname(hostname, in: root, owner: owner)
        if let sshKeys, !sshKeys.isEmpty {
            try root.makeDirectories("root/.ssh", mode: 0o700, owner: owner)
            try root.replaceFile("root/.ssh/authorized_keys", contents: Array(sshKeys.map { "\($0)\n" }.joined().utf8), mode: 0o600, owner: owner)
        }
        var seed = Machines.Seed()
        (seed.hostname, seed.sshKeys) = (hostname, sshKeys ?? [])
        let metaData = (try? root.openForReading("\(Machines.seedDirectory)/meta-data", [.regularFile, .noSymlinks]).readAll(limit: 1 << 16)) ?? []
        seed.instanceID = String(decoding: metaData, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("instance-id: ") }.map { String($0.dropFirst("instance-id: ".count)) }
        try Machines.lay(seed, name: name, in: root)
        try DedicatedThread.run { () throws(ReplicaError) in
            let namespace = try OwnedFD.open("/proc/\(leader)/ns/uts", O_RDONLY | O_CLOEXEC)
            _ = try syscall("setns(CLONE_NEWUTS)", "/proc/\(leader)/ns/uts") { replica_setns(namespace.rawValue, replica_CLONE_NEWUTS) }
            _ = try syscall("sethostname", hostname) { sethostname(hostname, hostname.utf8.count) }
        }
    }
}
