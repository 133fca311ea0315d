import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// A machine's network, between ReplicaStore (which forks the machine and records its `[Network]`
/// lines) and ReplicaNet (which makes the network): the namespace `m-NAME`, a veth on the bridge, a
/// lease owned by `replica-machine-NAME.service`. The names are derived here and only here.
public enum MachineNetwork {
    /// The owner of the machine's network record and lease: `replica-machine-NAME.service`.
    public static func owner(_ name: String) -> String { "replica-machine-\(name).service" }

    /// The machine's own network namespace, pinned at `/run/netns/m-NAME`.
    public static func namespace(_ name: String) -> String { "m-\(name)" }

    /// The network plan of machine `name` from its `[Network]` lines (`Bridge=…`, `Subnet=…`), every
    /// name and address checked; refused (reason `refused`) when the lines describe no network.
    public static func plan(_ name: String, _ lines: [String]) throws(ReplicaError) -> ServiceNetwork.Prepared {
        _ = try MachineName(name)
        let settings = (["Namespace=\(namespace(name))"] + lines).map { line in
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            return ProfileSetting(section: "Network", key: parts[0], value: parts.count == 2 ? parts[1] : "", file: "machine \(name)", line: 0)
        }
        guard let prepared = try ServiceNetwork.prepare(Profile(unit: owner(name), settings: settings)) else {
            throw ReplicaError("machine network", [name], errno: .EINVAL, hint: "no network in \(lines.joined(separator: " "))",
                               reason: .refused)
        }
        return prepared
    }

    /// Removes the machine's network: `replica-net down` of its owner, then its namespace and veth
    /// by their names — what a fork killed before it recorded them leaves (they are the machine's
    /// names: no one else makes them). Returns whether there was anything.
    @discardableResult
    public static func clear(_ name: String, keepLease: Bool) throws(ReplicaError) -> Bool {
        let plan = NetworkPlan(namespace: namespace(name))
        var found = access("\(NetworkNamespace.directory)/\(plan.namespace)", F_OK) == 0
        let removed = try ServiceNetwork.down([owner(name)], keepLeases: keepLease)
        found = removed.contains(where: \.foundAnything) || found
        try plan.teardown()
        if !keepLease, let subnet = removed.compactMap({ $0.record?.leaseSubnet }).first {
            for zone in BridgeNames.served() where zone.subnet == subnet { try BridgeNames.refresh(bridge: zone.bridge) }  // its name goes with its lease
        }
        return found
    }

    /// Takes the machine's veth and namespace away, keeping its lease (a stopped machine keeps the
    /// address its seed names).
    public static func stop(_ names: [String]) throws(ReplicaError) {
        _ = try ServiceNetwork.down(names.map(owner), keepLeases: true)
    }

    /// The namespace of a machine with a network of its own, made again (same lease) when a stop or a
    /// reboot removed it; nil for a machine without one. `made`: this call made it.
    public static func up(_ machine: Machines.Machine) throws(ReplicaError) -> (namespace: String, made: Bool)? {
        guard !machine.network.isEmpty else { return nil }
        let namespace = namespace(machine.name)
        if try ServiceNetwork.isUp(owner(machine.name), namespace: namespace) { return (namespace, false) }
        _ = try ServiceNetwork.up(plan(machine.name, machine.network))
        return (namespace, true)
    }

    /// What `fork` makes the machine's network with: its lease (known before the seed is laid), then
    /// its namespace, veth and bridge (`replica-net up`); undone by `replica-net down` of its owner.
    /// Nil for a machine without `[Network]` lines.
    public static func forFork(_ name: String, _ lines: [String]) throws(ReplicaError) -> Machines.Network? {
        guard !lines.isEmpty else { return nil }
        let prepared = try plan(name, lines)
        return Machines.Network(settings: lines, up: { () throws(ReplicaError) -> (address: String, gateway: String?)? in
            // The name is free (fork checked, holding its lock): a network its owner has is what a
            // killed fork left. It goes; its address stays, to be taken again.
            try clear(name, keepLease: true)
            let leased = try ServiceNetwork.lease(prepared)
            _ = try ServiceNetwork.up(prepared)
            if let bridge = prepared.plan.bridge { try BridgeNames.refresh(bridge: bridge) }  // a name the moment it has an address
            guard let address = leased?.address ?? prepared.plan.addresses.first else { return nil }
            return (address.description, (leased?.gateway ?? prepared.plan.routes.first { $0.gateway != nil }?.gateway)?.addressText)
        }, down: { _ = try? clear(name, keepLease: false) })
    }
}
