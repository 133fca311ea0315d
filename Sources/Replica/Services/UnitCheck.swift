import Glibc
import ReplicaKit

/// What systemd applies, checked against the plan: `replica-shift prepare` runs in the unit's own
/// `ExecStartPre=+`, asks PID 1 for the unit's properties over D-Bus and refuses the start where
/// one differs from what the profile says — a drop-in edited by hand, another drop-in overriding
/// ours, a value systemd read otherwise than meant. Fail closed: a unit it cannot ask about is
/// not started either.
extension ServicePlan {
    /// One property systemd has otherwise than the plan.
    public struct Difference: Equatable, Sendable, CustomStringConvertible {
        /// The property (`BindPaths`).
        public var name: String
        /// What the plan gives.
        public var planned: BusValue
        /// What systemd has; nil when it reports no such property.
        public var applied: BusValue?

        public var description: String { "\(name) is \(applied.map(\.description) ?? "missing") where the profile gives \(planned)" }
    }

    /// What systemd has for the unit now, against the plan: the unit's invocation id and every
    /// property of `systemdProperties` it has otherwise (`replica-shift verify UNIT`). `query`:
    /// the question asked ahead (`askStartingUnit`), else asked now.
    public func appliedDifferences(asked query: SystemdManager.ServicePropertiesQuery? = nil) throws(ReplicaError)
        -> (invocation: String, differences: [Difference]) {
        let planned = try profile.sandbox(forSystemd: true).systemdProperties
        let question: SystemdManager.ServicePropertiesQuery
        if let query { question = query } else { question = try SystemdManager.ServicePropertiesQuery(try UnitName(profile.unit)) }
        let applied = try question.answer()
        return (applied.invocation, Self.differences(planned, applied.properties))
    }

    /// Every property of `systemdProperties` that `properties` (a unit's, from
    /// `SystemdManager.serviceProperties`) has otherwise, by name.
    public func differences(from properties: [String: BusValue]) throws(ReplicaError) -> [Difference] {
        Self.differences(try profile.sandbox(forSystemd: true).systemdProperties, properties)
    }

    private static func differences(_ planned: [String: BusValue], _ properties: [String: BusValue]) -> [Difference] {
        planned.keys.sorted().compactMap { name in
            let applied = properties[name].map { SandboxPlan.comparable(name, $0) }
            return applied == planned[name] ? nil : Difference(name: name, planned: planned[name]!, applied: applied)
        }
    }

    /// The check `prepare` makes when systemd started it (`$INVOCATION_ID`): the unit being started
    /// is the one with that invocation id, and its properties are the plan's. Returns false when
    /// not started by systemd as PID 1 (a shell, Nomad, a test, a container without systemd),
    /// where there is nothing to compare. `query`: the question asked ahead (`askStartingUnit`).
    @discardableResult
    public func checkStartingUnit(asked query: SystemdManager.ServicePropertiesQuery? = nil) throws(ReplicaError) -> Bool {
        guard let invocation = getenv("INVOCATION_ID").map({ String(cString: $0) }), Systemd.isBooted else { return false }
        let unit = profile.unit
        let (current, differences): (String, [Difference])
        do throws(ReplicaError) { (current, differences) = try appliedDifferences(asked: query) } catch {
            throw ReplicaError("check unit", [unit], errno: error.errno,
                               hint: "systemd could not be asked what it applies to \(unit) (\(error)); refusing to start it unchecked", reason: .refused)
        }
        // Another unit's process (Nomad's raw_exec under nomad.service) runs prepare for a service
        // systemd is not starting: nothing of systemd's applies to it.
        guard current == invocation else { return false }
        guard differences.isEmpty else {
            throw ReplicaError("check unit", [unit], errno: .EPERM,
                               hint: "systemd applies what the profile does not say: " + differences.map(\.description).joined(separator: "; ")
                                   + ". Its drop-in was edited or overridden (systemctl cat \(unit); replica-shift drop-in \(unit) prints "
                                   + "what it should be); refusing to start it", reason: .refused)
        }
        return true
    }

    /// `checkStartingUnit`'s question to PID 1 about the unit `name`, asked before the profile is
    /// read so that PID 1 answers meanwhile; nil where no check will be made (not started by
    /// systemd) or it cannot be asked now (the check then asks again and fails closed).
    public static func askStartingUnit(_ name: String) -> SystemdManager.ServicePropertiesQuery? {
        guard getenv("INVOCATION_ID") != nil, Systemd.isBooted, let unit = try? UnitName(name) else { return nil }
        return try? SystemdManager.ServicePropertiesQuery(unit)
    }
}
