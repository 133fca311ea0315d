import ReplicaKit
import ReplicaNet
import ReplicaStore

/// A machine as Replica forks it, checked whole before anything is made: its name, its template,
/// its seed and its network (`[Network]` lines from a profile, `--bridge`/`--subnet`, or its set).
/// `replica-machine fork`, `fork --set` and `set start` all make one.
public struct MachinePlan: Sendable {
    /// The machine's name (also its hostname unless the seed names one).
    public let name: MachineName
    /// The template it is forked from.
    public let template: String
    /// What is laid into it: hostname, SSH keys, a static address, a NoCloud folder.
    public let seed: Machines.Seed
    /// Its `[Network]` lines; empty for a machine without a network of its own.
    public let network: [String]
    /// Its users: nil for a range of its own (the default), `.host` for the opt-out.
    public let users: MachineUsers?
    /// What it may take from the host (the set's, with the command line's over them).
    public let limits: MachineLimits

    /// A fork of `template` (or, with `set`, of the set's template for `name`, with the set's keys
    /// added to the seed). Refused as a usage error, before anything is made: a name that is not a
    /// machine name, a member the set lacks, a template the set does not give it, a static
    /// address beside a network, a network that cannot be had.
    public init(_ name: String, template: String?, seed: Machines.Seed = Machines.Seed(), network: [String] = [],
                users: MachineUsers? = nil, limits: MachineLimits = MachineLimits(), set: ServiceSet? = nil) throws(ReplicaError) {
        self.name = try MachineName(name)
        var seed = seed, template = template
        if let set {
            guard let member = set.machines.first(where: { $0.name == name }) else {
                throw .usage("set \(set.name) has no machine \(name); add Machine=\(name):TEMPLATE to it")
            }
            guard template == nil || template == member.template else {
                throw .usage("set \(set.name) forks \(name) from \(member.template), not \(template!)")
            }
            template = member.template
            seed.sshKeys = set.sshKeys + seed.sshKeys
            if !set.machineNetwork.isEmpty { seed.domain = set.domain }
        }
        guard let template else { throw .usage("fork needs --template NAME (or --set SET)") }
        if !network.isEmpty && seed.address != nil { throw .usage("--address is for a machine without --network or --bridge (those lease one)") }
        try Self.check(network: network, of: name)
        (self.template, self.seed, self.network) = (template, seed, network)
        self.users = users ?? set?.users
        self.limits = (set?.limits ?? MachineLimits()).overridden(by: limits)
    }

    /// Refuses, as a usage error and before anything is made, `[Network]` lines machine `name` cannot
    /// have (`MachineNetwork.plan`); no lines are no network, which is fine.
    public static func check(network: [String], of name: String) throws(ReplicaError) {
        guard !network.isEmpty else { return }
        do throws(ReplicaError) {
            _ = try MachineNetwork.plan(name, network)
            try MachineNetwork.checkParent(network)
        } catch { throw error.because(.usage) }
    }

    /// Forks it (`Machines.fork`), its network made meanwhile; returns the machine and its address.
    public func fork(in store: borrowing Store) throws(ReplicaError) -> (machine: Machines.Machine, address: String?) {
        let vm = try Templates.template(template, in: store).vm != nil
        let machine = try Machines.fork(name.rawValue, template: template, seed: seed,
                                        network: try MachineNetwork.forFork(name.rawValue, network, vm: vm), users: users, limits: limits,
                                        in: store)
        return (machine, try NetworkRecord.read(MachineNetwork.owner(name.rawValue))?.address?.description)
    }

    /// The `[Network]` lines of a profile's section for a machine (its namespace and host link are
    /// the machine's own, so those keys are left out); exit 6 without such a profile.
    public static func network(fromProfile name: String, loader: ProfileLoader = ProfileLoader()) throws(ReplicaError) -> [String] {
        let loaded: Profile?
        do throws(ReplicaError) { loaded = try loader.load(name) } catch { throw error.because(.usage) }
        guard let profile = loaded else { throw loader.notConfigured(name) }
        let lines = profile.settings.filter { $0.section == "Network" && !["Namespace", "HostLink"].contains($0.key) }.map { "\($0.key)=\($0.value)" }
        guard !lines.isEmpty else { throw .usage("profile \(name) has no [Network] section to give the machine") }
        return lines
    }
}
