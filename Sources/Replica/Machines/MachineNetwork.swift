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
    /// With `IPv6=yes` its IPv6 address ends in what its machine id gives (`UniqueLocal.interfaceID`).
    /// For a virtual machine (`vm`) the namespace is its guest's wire: a bridge `br0` there takes
    /// the VM's tap, and the addresses are the guest's (`NetworkPlan.guestBridge`).
    public static func plan(_ name: String, _ lines: [String], machineID: String? = nil, vm: Bool = false) throws(ReplicaError) -> ServiceNetwork.Prepared {
        _ = try MachineName(name)
        var lines = lines
        if let machineID, lines.contains("IPv6=yes"), !lines.contains(where: { $0.hasPrefix("IPv6Token=") }) {
            let token = UniqueLocal.address(IPPrefix(address: [UInt8](repeating: 0, count: 16), length: 64), interface: UniqueLocal.interfaceID(machineID))
            lines.append("IPv6Token=\(token.addressText)")
        }
        let settings = (["Namespace=\(namespace(name))"] + lines).map { line in
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            return ProfileSetting(section: "Network", key: parts[0], value: parts.count == 2 ? parts[1] : "", file: "machine \(name)", line: 0)
        }
        guard var prepared = try ServiceNetwork.prepare(Profile(unit: owner(name), settings: settings)) else {
            throw ReplicaError("machine network", [name], errno: .EINVAL, hint: "no network in \(lines.joined(separator: " "))",
                               reason: .refused)
        }
        if vm {
            guard prepared.plan.macvlanParent == nil else {
                throw ReplicaError("machine network", [name], errno: .EINVAL, hint: "a VM joins a bridge (Bridge=), not a macvlan", reason: .refused)
            }
            prepared.plan.guestBridge = guestBridge
        }
        return prepared
    }

    /// The bridge inside a VM's namespace its tap joins.
    public static let guestBridge = "br0"
    /// The VM's tap there.
    public static let guestTap = "tap0"

    /// The addresses a machine's plan gives its guest, and their gateways, for its seed (a
    /// container's network-config) or its kernel's `ip=` (a VM's): the lease when there is one.
    static func addresses(_ prepared: ServiceNetwork.Prepared, leased: IPPrefix? = nil, gateway leasedGateway: IPPrefix? = nil) -> Machines.Addresses? {
        guard let address = leased ?? prepared.plan.addresses.first(where: { $0.family == AF_INET }) else { return nil }
        let gateway = { (family: Int32) in prepared.plan.routes.first { $0.gateway?.family == family }?.gateway?.addressText }
        return Machines.Addresses(address: address.description, gateway: leasedGateway?.addressText ?? gateway(AF_INET),
                                  address6: prepared.plan.addresses.first { $0.family == AF_INET6 }?.description, gateway6: gateway(AF_INET6))
    }

    /// A running VM's addresses, as its plan gives them now (its own lease).
    public static func guestAddresses(_ machine: Machines.Machine) throws(ReplicaError) -> Machines.Addresses? {
        guard !machine.network.isEmpty else { return nil }
        return addresses(try plan(machine.name, machine.network, machineID: machine.machineID, vm: true))
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
        return found
    }

    /// Takes the machine's veth and namespace away, keeping its lease (a stopped machine keeps the
    /// address its seed names; its IPv6 name goes with its network: `ServiceNetwork.down`).
    public static func stop(_ names: [String]) throws(ReplicaError) {
        _ = try ServiceNetwork.down(names.map(owner), keepLeases: true)
    }

    /// Lets every process in the machine's namespace bind any port
    /// (`net.ipv4.ip_unprivileged_port_start=0` there, as Docker sets it in containers): the
    /// namespace is Replica's, made in the host's user namespace, so the guest's root — root only
    /// in the machine's own user namespace — holds no capability over it, not even to bind port 80.
    /// The namespace is the machine's alone; nothing of the host's is opened.
    static func openLowPorts(_ namespace: String) throws(ReplicaError) {
        try DedicatedThread.run { () throws(ReplicaError) in
            try SandboxMounter.joinNetworkNamespace("\(NetworkNamespace.directory)/\(namespace)")
            let path = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
            try OwnedFD.open(path, O_WRONLY).writeAll(Array("0".utf8), name: "\(namespace): \(path)")
        }
    }

    /// The host interface a machine on the LAN is a macvlan of when its guest takes its address
    /// by DHCP (`Macvlan=PARENT` without `Address=`): systemd-nspawn makes the macvlan
    /// (`--network-macvlan=`, `mv-PARENT` inside) in a network namespace owned by the guest's user
    /// namespace, so the guest's own DHCP client may configure it. Nil otherwise (a static
    /// address on a macvlan is Replica's to make, in `m-NAME`, like a veth).
    public static func lanParent(of lines: [String]) -> String? {
        value("Address", in: lines) == nil ? value("Macvlan", in: lines) : nil
    }

    /// Refuses a macvlan's parent that is not an interface of the host, before anything is made.
    static func checkParent(_ lines: [String]) throws(ReplicaError) {
        guard let parent = value("Macvlan", in: lines) else { return }
        _ = try LinkName(parent)
        var host = try NetlinkSocket()
        guard try host.link(named: parent) != nil else {
            throw ReplicaError("machine network", [parent], errno: .ENODEV,
                               hint: "no interface of that name on this host to put a macvlan on; ip -o link lists them", reason: .refused)
        }
    }

    /// The bridge `[Network]` lines name (`Bridge=`), or nil.
    public static func bridge(of lines: [String]) -> String? { value("Bridge", in: lines) }

    /// The value of the first `KEY=` line, or nil.
    static func value(_ key: String, in lines: [String]) -> String? {
        lines.first { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    /// The namespace of a machine with a network of its own, made again (same lease) when a stop or a
    /// reboot removed it; nil for a machine without one. `made`: this call made it.
    public static func up(_ machine: Machines.Machine) throws(ReplicaError) -> (namespace: String, made: Bool)? {
        guard !machine.network.isEmpty else { return nil }
        try checkParent(machine.network)
        guard lanParent(of: machine.network) == nil else { return nil }  // systemd-nspawn makes it
        let namespace = namespace(machine.name)
        if try ServiceNetwork.isUp(owner(machine.name), namespace: namespace) { return (namespace, false) }
        _ = try ServiceNetwork.up(plan(machine.name, machine.network, machineID: machine.machineID, vm: machine.vm != nil))
        try openLowPorts(namespace)
        return (namespace, true)
    }

    /// A namespace of machine `name`'s own with loopback only (`m-NAME`, ports below 1024 open
    /// there): where a pool machine waits, its network made in it when it is claimed (`adopt`).
    static func emptyNamespace(_ name: String) throws(ReplicaError) -> String {
        let namespace = namespace(name)
        if !NetworkNamespace.list().contains(namespace) {
            try NetworkNamespace.create(namespace)
            do throws(ReplicaError) { try openLowPorts(namespace) } catch {
                try? NetworkNamespace.delete(namespace)
                throw error
            }
        }
        return namespace
    }

    /// Gives the running pool machine `member`'s namespace (`emptyNamespace`) to machine `name`,
    /// and makes `lines`' network in it as a fork's is made: pinned as `m-NAME` too, then its
    /// lease, veth, bridge port and addresses, recorded as `name`'s (so `stop` and `start` treat
    /// it as any machine's). The old pin is the caller's to delete once all else succeeded; on a
    /// failure here nothing of `name`'s is left. Returns its IPv4 address.
    static func adopt(_ member: String, as name: String, _ lines: [String], machineID: String?) throws(ReplicaError) -> String? {
        try NetworkNamespace.pin(namespace(member), as: namespace(name))
        do throws(ReplicaError) {
            _ = try ServiceNetwork.up(try plan(name, lines, machineID: machineID), adoptingNamespace: true)
        } catch {
            _ = try? clear(name, keepLease: false)
            throw error
        }
        return try NetworkRecord.read(owner(name))?.address?.description
    }

    /// What `fork` makes the machine's network with: its lease (known before the seed is laid), then
    /// its namespace, veth and bridge (`replica-net up`); undone by `replica-net down` of its owner.
    /// Nil for a machine without `[Network]` lines.
    public static func forFork(_ name: String, _ lines: [String], vm: Bool = false) throws(ReplicaError) -> Machines.Network? {
        guard !lines.isEmpty else { return nil }
        _ = try plan(name, lines, vm: vm)
        try checkParent(lines)
        if lanParent(of: lines) != nil { return Machines.Network(settings: lines, up: { _ in nil }, down: {}) }  // made at each start, by the guest's DHCP
        return Machines.Network(settings: lines, up: { (machineID) throws(ReplicaError) -> Machines.Addresses? in
            // The name is free (fork checked, holding its lock): a network its owner has is what a
            // killed fork left. It goes; its address stays, to be taken again.
            try clear(name, keepLease: true)
            let prepared = try plan(name, lines, machineID: machineID, vm: vm)
            let leased = try ServiceNetwork.lease(prepared)
            _ = try ServiceNetwork.up(prepared)
            try openLowPorts(namespace(name))
            return addresses(prepared, leased: leased?.address, gateway: leased?.gateway)
        }, down: { _ = try? clear(name, keepLease: false) })
    }
}
