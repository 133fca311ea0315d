import ReplicaKit
import ReplicaNet
import ReplicaStore

/// A service's whole job without systemd, from its plan: what `ExecStartPre=+replica-shift
/// prepare`, `replica-net@.service` and the unit's sandbox do under systemd, around one command.
public enum ServiceRun {
    /// Prepares the state, snapshot and config (`ServiceShift.prepare`, waiting `wait` for another
    /// run's lock), makes the network when the profile has one and it is not up (`replica-net
    /// up`), runs `command` in the sandbox as a supervised child (SIGTERM, SIGINT and SIGHUP passed
    /// on), then takes down the network it made, its lease given back. Returns how the command
    /// ended; nothing this call made stays, whatever the command did.
    public static func standalone(_ plan: ServicePlan, command: [String], wait: Duration = .seconds(30),
                                  leases: String = AddressPool.defaultRoot) throws(ReplicaError) -> ExitStatus {
        let sandbox = try plan.profile.sandbox()
        _ = try ServiceShift.prepare(plan.profile, wait: wait)
        var made = false
        if let network = plan.network, !(try ServiceNetwork.isUp(plan.profile.unit, namespace: network.namespace)) {
            guard let prepared = try ServiceNetwork.prepare(plan.profile.raw, leases: leases) else { preconditionFailure("a plan with a network") }
            _ = try ServiceNetwork.up(prepared, leases: leases)
            made = true
        }
        defer { if made { _ = try? ServiceNetwork.down([plan.profile.unit], leases: leases) } }
        return try Supervisor.run(name: "replica-run") { () throws(ReplicaError) -> Never in try SandboxMounter.exec(sandbox, command: command) }
    }
}
