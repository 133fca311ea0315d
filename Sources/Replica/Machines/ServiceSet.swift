import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// A service set: machines started together behind one name, from a set file
/// (`/etc/replica/sets/NAME.conf`, also `/run/replica/sets` and `/usr/lib/replica/sets`, with
/// `NAME.conf.d/` drop-ins: the grammar and search path of profiles).
///
/// ```ini
/// [Set]
/// # NAME:TEMPLATE, forked on first start
/// Machine=web1:debian12 web2:debian12 db:debian12
/// # public keys root may log in with, on every fork
/// SSHKey=/etc/replica/keys/admin.pub
/// # a network namespace all of them join (/run/netns/NAME); default: one of their own each
/// Network=lab
/// # or: each a namespace of its own with a veth on this bridge and an address leased from Subnet=
/// #Bridge=br-lab
/// #Subnet=10.88.0.0/24
/// # or: each on the LAN, a macvlan of this host interface, its address from the LAN's DHCP server
/// #Macvlan=eth0
/// # what each machine may take (systemd.resource-control(5) spellings)
/// MemoryMax=1G
/// TasksMax=2048
/// CPUWeight=100
/// CPUQuota=150%
/// IOWeight=100
/// # the explicit opt-out of each machine's own user namespace (its root is the host's)
/// #PrivateUsers=no
/// # with Bridge=: host ports forwarded to machines, PROTO:[HOSTADDRESS:]HOSTPORT:MACHINE:PORT
/// #Forward=tcp:8080:web1:80 udp:5353:db:53
/// # with Bridge=: bridges or subnets whose traffic may come in (default: none; other sets are apart)
/// #Allow=br-ops 192.0.2.0/24
/// # with Bridge=: masquerade what leaves for the world (default yes)
/// #NAT=yes
/// # with Bridge=: machines are NAME.SET.ZONE to each other and the host (default replica)
/// #Zone=replica
/// # with Bridge=: an IPv6 address each too, in the bridge's unique local /64 (default yes)
/// #IPv6=yes
/// ```
public struct ServiceSet: Equatable, Sendable {
    /// The set's name.
    public var name: String
    /// Its machines and the templates they are forked from, in order.
    public var machines: [(name: String, template: String)]
    /// Public keys for root on every fork.
    public var sshKeys: [String]
    /// The network namespace every machine joins; nil for one of its own each.
    public var network: String?
    /// `[Network]` lines each machine is forked with (`Bridge=`, `Subnet=`): a namespace, veth and
    /// lease of its own; empty for none.
    public var machineNetwork: [String] = []
    /// What each machine may take, applied at every start.
    public var limits = MachineLimits()
    /// `PrivateUsers=no`: forks without a user namespace of their own; nil: one each.
    public var users: MachineUsers?
    /// `Forward=`: host ports forwarded to its machines, the targets as machine names.
    public var forwards: [(transport: PortForward.Transport, hostAddress: IPPrefix?, hostPort: UInt16, machine: String, port: UInt16)] = []
    /// `Allow=`: bridges or subnets whose traffic may enter the set's bridge.
    public var allow: [BridgeFirewall.Peer] = []
    /// `NAT=no`: what leaves for the world keeps the machines' addresses.
    public var masquerade = true
    /// `Zone=`: the machines' names are `NAME.SET.ZONE`.
    public var zone = "replica"
    /// `IPv6=`: each machine on the bridge has an IPv6 address too (`UniqueLocal`); true by default.
    public var ipv6: Bool { machineNetwork.contains("IPv6=yes") }

    /// The domain of the set's names: `SET.ZONE`.
    public var domain: String { "\(name).\(zone)" }

    /// Two sets are equal when they say the same.
    public static func == (a: ServiceSet, b: ServiceSet) -> Bool {
        a.name == b.name && a.machines.map { "\($0.name):\($0.template)" } == b.machines.map { "\($0.name):\($0.template)" }
            && a.sshKeys == b.sshKeys && a.network == b.network && a.machineNetwork == b.machineNetwork
            && a.limits == b.limits && a.users == b.users && a.allow == b.allow && a.masquerade == b.masquerade && a.zone == b.zone
            && a.forwards.map { "\($0.transport):\($0.hostAddress?.description ?? ""):\($0.hostPort):\($0.machine):\($0.port)" }
                == b.forwards.map { "\($0.transport):\($0.hostAddress?.description ?? ""):\($0.hostPort):\($0.machine):\($0.port)" }
    }

    /// Reads set `name`; nil when no file names it. Every machine name and template is checked.
    public static func load(_ name: String, loader: ProfileLoader = .sets()) throws(ProfileError) -> ServiceSet? {
        guard let profile = try loader.load(name) else { return nil }
        var machines: [(name: String, template: String)] = []
        for setting in profile.list("Set", "Machine") {
            for word in try ProfileWords.split(setting) {
                let parts = word.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2 else { throw ProfileError(setting, "\"\(word)\": write NAME:TEMPLATE (web1:debian12)") }
                do {
                    _ = try MachineName(parts[0])
                    _ = try PlainName(parts[1], kind: "template")
                } catch { throw ProfileError(setting, "\"\(word)\": \(error.hint ?? error.description)") }
                guard !machines.contains(where: { $0.name == parts[0] }) else { throw ProfileError(setting, "machine \(parts[0]) is listed twice") }
                machines.append((parts[0], parts[1]))
            }
        }
        guard !machines.isEmpty else {
            throw ProfileError(file: profile.files.first ?? name, line: 0, key: "Machine", reason: "a set needs at least one Machine=NAME:TEMPLATE")
        }
        var keys: [String] = []
        for setting in profile.list("Set", "SSHKey") {
            for path in try ProfileWords.split(setting) {
                do throws(ReplicaError) { keys += try Machines.Seed.keys(in: path) } catch {
                    throw ProfileError(setting, "\(path) cannot be read: \(error.hint ?? "\(error.errno)")")
                }
            }
        }
        let bridge = profile.value("Set", "Bridge"), subnet = profile.value("Set", "Subnet")
        if let setting = bridge ?? subnet, bridge == nil || subnet == nil {
            throw ProfileError(setting, "Bridge= and Subnet= go together: the bridge, and the subnet its machines' addresses are leased from")
        }
        if let bridge, let network = profile.value("Set", "Network") {
            throw ProfileError(network, "give Network= (one namespace all join) or Bridge= (one of their own each on \(bridge.value)), not both")
        }
        let macvlan = profile.value("Set", "Macvlan")
        if let macvlan, bridge != nil || profile.value("Set", "Network") != nil {
            throw ProfileError(macvlan, "give Macvlan= (each on the LAN), Bridge= or Network=, one of them")
        }
        if let macvlan {
            do throws(ReplicaError) { _ = try LinkName(macvlan.value) } catch { throw ProfileError(macvlan, error.hint ?? "not an interface name") }
        }
        var set = ServiceSet(name: name, machines: machines, sshKeys: keys, network: profile.value("Set", "Network")?.value)
        if let macvlan { set.machineNetwork = ["Macvlan=\(macvlan.value)"] }
        if let bridge, let subnet {
            set.machineNetwork = ["Bridge=\(bridge.value)", "Subnet=\(subnet.value)"]
            if try profile.value("Set", "IPv6")?.boolean() ?? true { set.machineNetwork.append("IPv6=yes") }
        }
        for key in MachineLimits.keys {
            guard let setting = profile.value("Set", key) else { continue }
            do throws(ReplicaError) { try set.limits.set(key, setting.value) } catch { throw ProfileError(setting, error.hint ?? error.description) }
        }
        for key in ["Forward", "Allow", "NAT", "Zone", "IPv6"] where bridge == nil {
            if let setting = profile.value("Set", key) { throw ProfileError(setting, "\(key)= needs Bridge= and Subnet=: the rules are the bridge's") }
        }
        for setting in profile.list("Set", "Forward") {
            for word in try ProfileWords.split(setting) {
                do throws(ReplicaError) {
                    let forward = try PortForward.words(word)
                    guard machines.contains(where: { $0.name == forward.target }) else {
                        throw ReplicaError("Forward", [word], errno: .EINVAL, hint: "\(forward.target) is not a machine of the set")
                    }
                    set.forwards.append((forward.transport, forward.hostAddress, forward.hostPort, forward.target, forward.port))
                } catch { throw ProfileError(setting, "\"\(word)\": \(error.hint ?? error.description)") }
            }
        }
        for setting in profile.list("Set", "Allow") {
            for word in try ProfileWords.split(setting) {
                do throws(ReplicaError) { set.allow.append(try BridgeFirewall.Peer(word)) } catch {
                    throw ProfileError(setting, "\"\(word)\": a bridge's name or a subnet (10.0.0.0/8)")
                }
            }
        }
        if let setting = profile.value("Set", "Zone") {
            do throws(ReplicaError) { try BridgeNames.Zone.checkDomain("\(name).\(setting.value)") } catch { throw ProfileError(setting, error.hint ?? "") }
            set.zone = setting.value.lowercased()
        }
        if let setting = profile.value("Set", "NAT") { set.masquerade = try setting.boolean() }
        if let setting = profile.value("Set", "PrivateUsers") {
            guard setting.value == "no" else { throw ProfileError(setting, "only PrivateUsers=no is taken (each machine has a user namespace of its own by default)") }
            set.users = .host
        }
        return set
    }

    /// The set's bridge and subnets as rules without forwards; nil for a set without a bridge.
    public func bridgeRules() throws(ReplicaError) -> BridgeFirewall? {
        guard let bridge = MachineNetwork.bridge(of: machineNetwork),
              let subnet = MachineNetwork.value("Subnet", in: machineNetwork) else { return nil }
        var rules = try BridgeFirewall(owner: name, bridge: bridge, subnet: try IPPrefix(subnet))
        if ipv6 { rules.subnet6 = UniqueLocal.prefix(bridge: bridge) }
        return rules
    }

    /// The set's rules (`Firewall`), the forwards' machines resolved to the addresses they lease
    /// and, with IPv6, to the IPv6 addresses their networks have (a forward without a host address
    /// is both; with one, of its family).
    /// Nil for a set without a bridge.
    public func firewall() throws(ReplicaError) -> BridgeFirewall? {
        guard var rules = try bridgeRules() else { return nil }
        rules.masquerade = masquerade
        rules.allow = allow
        let leases = try AddressPool(subnet: rules.subnet).leases()
        for forward in forwards {
            guard let lease = leases.first(where: { $0.owner == MachineNetwork.owner(forward.machine) }) else {
                throw ReplicaError("Forward", [forward.machine], errno: .ENOENT, hint: "the machine holds no address in \(rules.subnet)", reason: .notFound)
            }
            var targets = [IPPrefix(address: lease.address.address, length: 32)]
            if ipv6 {
                guard let address6 = try NetworkRecord.read(MachineNetwork.owner(forward.machine))?.address6 else {
                    throw ReplicaError("Forward", [forward.machine], errno: .ENOENT, hint: "the machine's network is not up: it has no IPv6 address yet",
                                       reason: .notFound)
                }
                targets.append(IPPrefix(address: address6.address, length: 128))
            }
            for target in targets where forward.hostAddress == nil || forward.hostAddress?.family == target.family {
                rules.forwards.append(PortForward(forward.transport, hostAddress: forward.hostAddress, hostPort: forward.hostPort,
                                                  target: target, targetPort: forward.port))
            }
        }
        return rules
    }

    /// The set's names (`BridgeNames`): its machines as `NAME.SET.ZONE` on its bridge's gateway;
    /// nil for a set without a bridge.
    public func names() throws(ReplicaError) -> BridgeNames.Zone? {
        guard let rules = try bridgeRules() else { return nil }
        var zone = try BridgeNames.Zone(bridge: rules.bridge, domain: domain, subnet: rules.subnet, listen: try AddressPool(subnet: rules.subnet).gateway)
        zone.subnet6 = rules.subnet6
        return zone
    }

    /// Powers every machine of the set off, all at once.
    public func stop() {
        for (name, _) in machines { if let pid = MachineProcess.running(name) { kill(pid, SIGTERM) } }
        for (name, _) in machines { try? MachineProcess.stop(name) }
    }
}
