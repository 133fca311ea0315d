import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

extension ServiceSet {
    /// Forks the machines that do not exist yet (each a `MachinePlan`: the set's template and keys,
    /// the set's `[Network]` for each), then boots every one that is not running, all at once, and
    /// returns when all are ready — within `timeout` for all of them together — or at the first
    /// failure, after stopping what this call started. Returns the machines started.
    public func start(in store: borrowing Store, timeout: Duration = .seconds(120)) throws(ReplicaError) -> [String] {
        // Another set's subnet is refused before anything is forked.
        if let rules = try bridgeRules() { try Firewall.checkSubnet(owner: name, bridge: rules.bridge, subnet: rules.subnet) }
        var machines: [Machines.Machine] = []
        for (name, template) in self.machines {
            if (try? Machines.machine(name, in: store)) != nil {
                machines.append(try Machines.prepareStart(name, limits: limits, in: store))
            } else {
                machines.append(try MachinePlan(name, template: template, network: machineNetwork, set: self).fork(in: store).machine)
            }
        }
        var starting: [MachineProcess.Starting] = []
        var started: [String] = []
        let wasRunning = machines.contains { MachineProcess.running($0.name) != nil }
        let deadline = ContinuousClock.now + timeout
        var namespaces: [String: String] = [:], madeNetworks: [String] = []
        do throws(ReplicaError) {
            for machine in machines where MachineProcess.running(machine.name) == nil {
                let made = try MachineNetwork.up(machine)
                namespaces[machine.name] = made?.namespace ?? network
                if made?.made == true { madeNetworks.append(machine.name) }
            }
            // The way out, in and apart, once the machines' networks are up and before they boot.
            if let rules = try firewall() { try Firewall.update(name, rules) }
            if let zone = try names() { try BridgeNames.serve(zone) }
            for machine in machines where MachineProcess.running(machine.name) == nil {
                starting.append(try MachineProcess.begin(machine, networkNamespace: namespaces[machine.name]))
                started.append(machine.name)
            }
            while let next = starting.popLast() { _ = try next.waitReady(until: deadline, timeout: timeout) }
        } catch {
            for name in started { try? MachineProcess.stop(name, timeout: .seconds(10)) }
            try? MachineNetwork.stop(madeNetworks.filter { !started.contains($0) })  // made for a boot that never began
            if !wasRunning {
                try? Firewall.update(name, nil)
                if let zone = try? names() { try? BridgeNames.stop(zone.bridge) }
            }
            throw error
        }
        return started
    }
}
