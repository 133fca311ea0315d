// A machine's network, between ReplicaStore (which forks and records it) and ReplicaNet (which
// makes it): the two libraries do not import each other, so the tool joins them here.
import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// The owner of a machine's network records and lease.
func machineOwner(_ name: String) -> String { "replica-machine-\(name).service" }

/// The machine's network plan from its `[Network]` lines, every name and address checked.
func machinePlan(_ name: String, _ lines: [String]) -> ServiceNetwork.Prepared {
    let settings = (["Namespace=m-\(name)"] + lines).map { line in
        let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
        return ProfileSetting(section: "Network", key: parts[0], value: parts.count == 2 ? parts[1] : "", file: "machine \(name)", line: 0)
    }
    let prepared: ServiceNetwork.Prepared?
    do { prepared = try ServiceNetwork.prepare(Profile(unit: machineOwner(name), settings: settings)) } catch { fail("\(error)", ExitCode.usage) }
    guard let prepared else { fail("no network plan for \(name)", ExitCode.usage) }
    return prepared
}

/// Removes the machine's network: `replica-net down` of its owner, then its namespace and veth
/// by their names — what a fork killed before it recorded them leaves (they are the machine's
/// names: no one else makes them). Returns whether there was anything.
@discardableResult
func clearNetwork(_ name: String, keepLease: Bool) throws(ReplicaError) -> Bool {
    let plan = NetworkPlan(namespace: "m-\(name)")
    var found = access("\(NetworkNamespace.directory)/\(plan.namespace)", F_OK) == 0
    found = try ServiceNetwork.down([machineOwner(name)], keepLeases: keepLease).contains { $0.record != nil || $0.lines.count > 1 } || found
    try plan.teardown()
    return found
}

/// The namespace of a machine with a network of its own, made again (same lease) when a stop or a
/// reboot removed it; nil for a machine without one. `made`: this call made it.
func machineNetworkUp(_ machine: Machines.Machine) throws(ReplicaError) -> (namespace: String, made: Bool)? {
    guard !machine.network.isEmpty else { return nil }
    let owner = machineOwner(machine.name)
    if try NetworkRecord.read(owner) != nil && access("\(NetworkNamespace.directory)/m-\(machine.name)", F_OK) == 0 {
        return ("m-\(machine.name)", false)
    }
    _ = try ServiceNetwork.up(machinePlan(machine.name, machine.network))
    return ("m-\(machine.name)", true)
}

/// What `fork` makes the machine's network with: its lease (known before the seed is laid), then
/// its namespace, veth and bridge (`replica-net up`); undone by `replica-net down` of its owner.
func forkNetwork(_ name: String, _ lines: [String]) -> Machines.Network? {
    guard !lines.isEmpty else { return nil }
    let prepared = machinePlan(name, lines)
    return Machines.Network(settings: lines, up: { () throws(ReplicaError) -> (address: String, gateway: String?)? in
        // The name is free (fork checked, holding its lock): a network its owner has is what a
        // killed fork left. It goes; its address stays, to be taken again.
        try clearNetwork(name, keepLease: true)
        let leased = try ServiceNetwork.lease(prepared)
        _ = try ServiceNetwork.up(prepared)
        guard let address = leased?.address ?? prepared.plan.addresses.first else { return nil }
        return (address.description, (leased?.gateway ?? prepared.plan.routes.first { $0.gateway != nil }?.gateway)?.addressText)
    }, down: { _ = try? clearNetwork(name, keepLease: false) })
}
