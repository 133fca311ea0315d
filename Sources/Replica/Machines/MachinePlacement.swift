import Glibc
import ReplicaKit

/// The cgroup a machine runs in, which holds its limits and its device policy, chosen by how it
/// is started — never the cgroup of whoever started it, so no two machines share one and a
/// guest's root owns only its own:
/// - under its unit (`replica-machine@NAME.service` runs `start --foreground`): that unit
///   (`--keep-unit`; `Delegate=yes`, `DevicePolicy=closed`), its limits set on it at runtime;
/// - from a shell, a set or Nomad where systemd runs: a scope systemd makes for it,
///   `machine-NAME.scope` in `machine.slice`, with systemd-nspawn's closed device policy and the
///   limits as `--property=`;
/// - where no systemd runs: Replica's own cgroup, `replica.slice/machine-NAME` in every
///   hierarchy (`ControlGroup`), its device policy closed in the v1 `devices` controller where
///   there is one, and its limits written to the controllers' files.
/// Where systemd-machined runs, the machine is registered with it (`--register=yes`): `machinectl`,
/// `systemctl -M`, `journalctl -M`, `systemd-run -M` and nss-mymachines know it.
public enum MachinePlacement: Equatable, Sendable {
    /// Its own unit.
    case unit(registered: Bool)
    /// A scope of its own, made by systemd.
    case scope(registered: Bool)
    /// Replica's own cgroup.
    case cgroup

    /// The unit that runs machine `name`: `replica-machine@NAME.service`.
    public static func unit(of name: String) -> String { "replica-machine@\(name).service" }

    /// Where machine `name` goes when started now: `foreground` is `start --foreground`, which
    /// is the unit's own start when the calling process is in that unit's cgroup.
    public static func current(for name: String, foreground: Bool) -> MachinePlacement {
        guard Systemd.isBooted else { return .cgroup }
        let registered = SystemdManager.machinedAnswers
        if foreground, ownCgroup().hasSuffix("/" + unit(of: name)) { return .unit(registered: registered) }
        return .scope(registered: registered)
    }

    /// The calling process's cgroup in systemd's hierarchy (`/proc/self/cgroup`: the unified
    /// line, or `name=systemd` on a hybrid host).
    static func ownCgroup() -> String {
        guard let text = try? OwnedFD.open("/proc/self/cgroup", O_RDONLY).readAll(limit: 1 << 16) else { return "" }
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
        let line = lines.first { $0.contains(":name=systemd:") } ?? lines.first { $0.hasPrefix("0::") }
        return line.map { String($0.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).last ?? "") } ?? ""
    }

    /// `systemd-nspawn`'s options for it: `--keep-unit` where the cgroup is made before
    /// systemd-nspawn runs, `--register=`, and the limits as `--property=` of a scope.
    public func nspawnArguments(_ limits: MachineLimits) -> [String] {
        switch self {
        case .unit(let registered): ["--keep-unit", "--register=\(registered ? "yes" : "no")"]
        case .scope(let registered): ["--register=\(registered ? "yes" : "no")"] + limits.settings.map { "--property=\($0.key)=\($0.value)" }
        case .cgroup: ["--keep-unit", "--register=no"]
        }
    }

    /// Devices a machine may use, as `DevicePolicy=closed` and systemd-nspawn's scope allow them:
    /// the pseudo devices, the terminal ones and `/dev/net/tun`, and for a VM's QEMU `/dev/kvm`
    /// (v1 `devices.allow` lines). A container's guest has no node for the last.
    static let allowedDevices = ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm",
                                 "c 136:* rw", "c 10:200 rwm", "c 10:232 rw"]

    /// Readies machine `name`'s cgroup before its systemd-nspawn runs: its unit's limits set
    /// at runtime (`systemctl set-property --runtime`); Replica's own cgroup made afresh, closed to
    /// devices, its limits written. nil for a scope (systemd-nspawn asks for it).
    public func prepare(_ name: String, limits: MachineLimits) throws(ReplicaError) -> ControlGroup? {
        switch self {
        case .unit:
            if !limits.isEmpty { try SystemdManager.setRuntimeProperties(Self.unit(of: name), limits.unitProperties) }
            return nil
        case .scope:
            return nil
        case .cgroup:
            let group = try ControlGroup.existing(Self.cgroupName(name))
            if group.isPopulated {
                throw ReplicaError("start machine", [name], errno: .EBUSY, hint: "its cgroup \(group.path) still holds processes; stop it first",
                                   reason: .busy)
            }
            try group.remove()  // a machine that ended by itself left it, with its old limits
            do throws(ReplicaError) {
                try group.make()
                if group.hasDeviceController {
                    try group.set("devices", "devices.deny", "a")
                    for line in Self.allowedDevices { try group.set("devices", "devices.allow", line) }
                }
                let unified = { (controller: String) in group.hierarchies.contains { $0.unified && $0.controllers.contains(controller) } }
                for (controller, file, value) in limits.cgroupFiles(unified: unified) {
                    guard try group.set(controller, file, value) else {
                        throw ReplicaError("start machine", [name], errno: .ENOTSUP,
                                           hint: "no cgroup hierarchy has the \(controller) controller for its limit; mount it, or start it without that limit",
                                           reason: .refused)
                    }
                }
            } catch {
                try? group.remove()  // nothing of it left
                throw error
            }
            return group
        }
    }

    /// The name of Replica's own cgroup for machine `name`: `machine-NAME`.
    public static func cgroupName(_ name: String) -> String { "machine-\(name)" }

    /// Removes Replica's own cgroup of machine `name` once it has stopped (nothing where systemd
    /// placed it: its scope goes by itself, its unit stays its unit's).
    public static func release(_ name: String) throws(ReplicaError) {
        try ControlGroup.existing(cgroupName(name)).remove()
    }
}
