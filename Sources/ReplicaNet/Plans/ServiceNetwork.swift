import Glibc
import ReplicaKit

/// A service's network from its profile, as `replica-net up`/`down` and `replica-net@.service` run
/// it: the plan checked whole before an address is leased, the lease kept only when the plan was
/// applied, and what was made recorded, so that `down NAME` needs nothing but the name and removes
/// only what its `up` made.
public enum ServiceNetwork {
    /// Where records live: /run, so that they go at reboot together with what they describe.
    public static let recordDirectory = "/run/replica/net"

    /// A profile's plan, every name and address checked, and the lease it needs (not taken yet).
    public struct Prepared: Sendable {
        /// What to make.
        public var plan: NetworkPlan
        /// The lease owner: the unit (`web.service`), or the name given with flags.
        public var owner: String
        /// The subnet an address is leased from, when the profile has no `Address=`.
        public var leaseSubnet: IPPrefix?
    }

    /// The plan of `profile`, fully validated, with the address a lease would give now
    /// (`AddressPool.take(dryRun:)`): nothing is written. Nil without a `[Network]` section.
    public static func prepare(_ profile: Profile, leases: String = AddressPool.defaultRoot) throws(ProfileError) -> Prepared? {
        var subnet: IPPrefix?
        guard let plan = try NetworkPlan(profile: profile, lease: { (range) throws(ReplicaError) -> IPPrefix in
            subnet = range
            return try AddressPool(subnet: range, root: leases).take(for: profile.unit, dryRun: true).address
        }) else { return nil }
        return Prepared(plan: plan, owner: profile.unit, leaseSubnet: subnet)
    }

    /// Takes the address `prepared` leases (the owner's own if it holds one) without making
    /// anything, so that it can be known — and written into a seed — before `up`, which then finds
    /// the same lease. Returns it, the plan's gateway, and whether this call took it (`down` of the
    /// owner gives it back). Nil when the plan leases nothing (an `Address=` of its own).
    public static func lease(_ prepared: Prepared, leases: String = AddressPool.defaultRoot)
        throws(ReplicaError) -> (address: IPPrefix, gateway: IPPrefix?, isNew: Bool)? {
        guard let subnet = prepared.leaseSubnet else { return nil }
        let lease = try AddressPool(subnet: subnet, root: leases).take(for: prepared.owner)
        return (lease.address, prepared.plan.routes.first { $0.gateway != nil }?.gateway, lease.isNew)
    }

    /// `replica-net up`: leases the address (the owner's own if it holds one), applies the plan
    /// (all or nothing) and records what it made; where the bridge's names are served
    /// (`BridgeNames`), the owner is a name from then on. On any failure the lease is given back
    /// when this call took it, and nothing stays.
    /// `adoptingNamespace`: made in the plan's namespace, which exists (`NetworkPlan.apply`).
    public static func up(_ prepared: Prepared, leases: String = AddressPool.defaultRoot,
                          records: String = recordDirectory, adoptingNamespace: Bool = false) throws(ReplicaError) -> NetworkPlan.Report {
        var plan = prepared.plan
        var taken: AddressPool?
        if let subnet = prepared.leaseSubnet {
            let pool = try AddressPool(subnet: subnet, root: leases)
            let lease = try pool.take(for: prepared.owner)
            if lease.isNew { taken = pool }
            plan.addresses = [lease.address] + plan.addresses.filter { $0.family != lease.address.family }
        }
        do throws(ReplicaError) {
            try plan.validate()
            let report = try plan.apply(adoptingNamespace: adoptingNamespace)
            do throws(ReplicaError) {
                try NetworkRecord(made: plan, owner: prepared.owner, leaseSubnet: prepared.leaseSubnet).write(in: records)
            } catch {
                try? plan.teardown()
                throw error
            }
            if let bridge = plan.bridge { try BridgeNames.refresh(bridge: bridge, leases: leases) }  // a name the moment it has an address
            return report
        } catch {
            try? taken?.release(prepared.owner)
            throw error
        }
    }

    /// Whether what `up` records for the owner is there: its record, and its namespace pinned.
    public static func isUp(_ owner: String, namespace: String, records: String = recordDirectory) throws(ReplicaError) -> Bool {
        try NetworkRecord.read(owner, in: records) != nil && access("\(NetworkNamespace.directory)/\(namespace)", F_OK) == 0
    }

    /// What `down` did for one owner.
    public struct Removed: Sendable {
        /// The owner named to `down`.
        public var owner: String
        /// What `up` had recorded; nil when there was nothing.
        public var record: NetworkRecord?
        /// One line per object: removed, already gone, or left alone and why.
        public var lines: [String]
        /// Whether an address leased to the owner was given back.
        public var releasedLease = false

        /// What `down` did for `owner`.
        public init(owner: String, record: NetworkRecord?, lines: [String], releasedLease: Bool = false) {
            (self.owner, self.record, self.lines, self.releasedLease) = (owner, record, lines, releasedLease)
        }

        /// Whether there was anything of the owner's: a record of what `up` made, or a lease.
        public var foundAnything: Bool { record != nil || releasedLease }
    }

    /// `replica-net down NAME…`: for each owner, removes what its record says `up` made — the host
    /// veth only while it is still the link `up` made (same name and index), the namespace only
    /// while it is still the one `up` pinned (same inode) — gives its address back, and removes the
    /// record. Without a record (never up, already down, or up in an earlier boot) only the owner's
    /// leases are given back. The veths of all owners go in one batch. With `keepLeases` the
    /// addresses stay the owners' (a stopped machine keeps the address its seed names). Names
    /// served for their subnets are reread: a name goes with its lease, an AAAA with its network.
    public static func down(_ owners: [String], keepLeases: Bool = false, leases: String = AddressPool.defaultRoot,
                            records: String = recordDirectory) throws(ReplicaError) -> [Removed] {
        for owner in owners { _ = try LeaseOwner(owner) }
        var results: [Removed] = []
        var links: [String] = []
        var named: Set<IPPrefix> = []  // subnets whose names change: a lease given back, an IPv6 address gone
        var host = try NetlinkSocket()
        for owner in owners {
            guard let record = try NetworkRecord.read(owner, in: records) else {
                if keepLeases {
                    results.append(Removed(owner: owner, record: nil, lines: ["nothing recorded as made by up"]))
                    continue
                }
                var released: [String] = []
                for pool in try AddressPool.all(root: leases) where try pool.leases().contains(where: { $0.owner == owner }) {
                    try pool.release(owner)
                    released.append("its address in \(pool.subnet) given back")
                    named.insert(pool.subnet)
                }
                results.append(Removed(owner: owner, record: nil, lines: ["nothing recorded as made by up"] + released,
                                       releasedLease: !released.isEmpty))
                continue
            }
            let found = try record.hostLink.map { (name) throws(ReplicaError) in try host.link(named: name)?.index } ?? nil
            let decision = record.hostLinkDecision(found: found)
            if case .remove(let name) = decision { links.append(name) }
            results.append(Removed(owner: owner, record: record, lines: decision.line.map { [$0] } ?? []))
        }
        try NetworkPlan.deleteLinks(links)
        for index in results.indices {
            guard let record = results[index].record else { continue }
            let decision = record.namespaceDecision(found: (try? FileStatus.of("\(NetworkNamespace.directory)/\(record.namespace)"))?.inode)
            if case .remove = decision { try NetworkNamespace.delete(record.namespace) }
            if let line = decision.line { results[index].lines.append(line) }
            if let subnet = record.leaseSubnet, !keepLeases {
                try AddressPool(subnet: subnet, root: leases).release(record.owner)
                results[index].lines.append("address \(record.address.map { $0.description } ?? "") given back")
                results[index].releasedLease = true
            }
            if let subnet = record.leaseSubnet, !keepLeases || record.address6 != nil { named.insert(subnet) }
            try record.remove(in: records)
        }
        for zone in BridgeNames.served() where named.contains(zone.subnet) { try BridgeNames.refresh(bridge: zone.bridge, leases: leases) }
        return results
    }
}

/// What `down` does with one object `up` recorded, decided from the record and what is there
/// now: remove it only while it is still the one `up` made.
public enum TeardownDecision: Equatable, Sendable {
    /// It is the one `up` made: remove it.
    case remove(String)
    /// Something of that name is there, but not the one `up` made (another index or inode): leave it.
    case leave(String, why: String)
    /// Nothing of that name is there.
    case gone(String)
    /// The record names none (a macvlan has no host link).
    case none

    /// What `down` reports for it.
    public var line: String? {
        switch self {
        case .remove(let name): "\(name) removed"
        case .leave(let name, let why): "\(name) is not the one up made (\(why)); left alone"
        case .gone(let name): "\(name) already gone"
        case .none: nil
        }
    }
}

extension NetworkRecord {
    /// The host veth: removed only while the link of its name has the index `up` recorded.
    public func hostLinkDecision(found index: Int32?) -> TeardownDecision {
        guard let hostLink else { return .none }
        guard let index else { return .gone("veth \(hostLink)") }
        return index == hostLinkIndex ? .remove(hostLink) : .leave(hostLink, why: "index \(index), not \(hostLinkIndex ?? 0)")
    }

    /// The namespace: unpinned only while `/run/netns/NAME` has the inode `up` recorded.
    public func namespaceDecision(found inode: UInt64?) -> TeardownDecision {
        guard let inode else { return .gone("namespace \(namespace)") }
        return inode == namespaceInode ? .remove("namespace \(namespace)") : .leave("namespace \(namespace)", why: "inode \(inode), not \(namespaceInode)")
    }
}

/// What one `up` made, at /run/replica/net/OWNER: `key=value` lines, written atomically.
public struct NetworkRecord: Equatable, Sendable {
    /// The unit (`web.service`) or name it was made for.
    public var owner: String
    /// The namespace's name, pinned at `/run/netns/NAME`.
    public var namespace: String
    /// The nsfs inode of the pinned namespace: a namespace of the same name made by someone else
    /// later has another.
    public var namespaceInode: UInt64
    /// The host veth and its index (nil for a macvlan, which lives and dies with the namespace).
    public var hostLink: String?
    /// The host veth's interface index, so a link of the same name made later is left alone.
    public var hostLinkIndex: Int32?
    /// The subnet its address was leased from; nil for an address given in the profile.
    public var leaseSubnet: IPPrefix?
    /// The address inside.
    public var address: IPPrefix?
    /// Its IPv6 address inside (`IPv6=yes`), which names give as AAAA while it is up.
    public var address6: IPPrefix?

    /// The record of a plan just applied, reading the namespace's inode and the veth's index.
    init(made plan: NetworkPlan, owner: String, leaseSubnet: IPPrefix?) throws(ReplicaError) {
        self.owner = owner
        namespace = plan.namespace
        namespaceInode = try FileStatus.of("\(NetworkNamespace.directory)/\(plan.namespace)").inode
        if plan.macvlanParent == nil {
            var host = try NetlinkSocket()
            hostLink = plan.hostLink
            hostLinkIndex = try host.link(named: plan.hostLink)?.index
        }
        self.leaseSubnet = leaseSubnet
        address = plan.addresses.first { $0.family == AF_INET } ?? plan.addresses.first
        address6 = plan.addresses.first { $0.family == AF_INET6 }
    }

    func encoded() throws(ReplicaError) -> String {
        var record = Record()
        try record.append("owner", owner)
        try record.append("namespace", namespace)
        try record.append("namespace_inode", String(namespaceInode))
        if let hostLink, let hostLinkIndex {
            try record.append("host_link", hostLink)
            try record.append("host_link_index", String(hostLinkIndex))
        }
        if let leaseSubnet { try record.append("lease_subnet", leaseSubnet.description) }
        if let address { try record.append("address", address.description) }
        if let address6, address6 != address { try record.append("address6", address6.description) }
        return record.encoded
    }

    /// The record `up` wrote (`encoded()`), read from `path`; refused when a key it always writes is missing.
    public init(parsing text: String, path: String) throws(ReplicaError) {
        let record = try Record(decoding: text, source: path)
        guard let owner = record.value("owner"), let namespace = record.value("namespace"),
              let inode = record.value("namespace_inode").flatMap({ UInt64($0) }) else {
            throw ReplicaError("read network record", [path], errno: .EINVAL, hint: "not a record replica-net up wrote; remove it by hand")
        }
        (self.owner, self.namespace, namespaceInode) = (owner, namespace, inode)
        hostLink = record.value("host_link")
        hostLinkIndex = record.value("host_link_index").flatMap { Int32($0) }
        leaseSubnet = try record.value("lease_subnet").map { (text) throws(ReplicaError) in try IPPrefix(text) }
        address = try record.value("address").map { (text) throws(ReplicaError) in try IPPrefix(text) }
        address6 = try record.value("address6").map { (text) throws(ReplicaError) in try IPPrefix(text) }
    }

    func write(in directory: String) throws(ReplicaError) {
        try createDirectories(directory, mode: 0o755)
        let folder = try RootDirectory(directory)
        RootDirectory.removeStaleTemporaries(in: try folder.openForReading(".", [.directory]))  // a killed up's
        try folder.writeFileAtomically(owner, contents: Array(try encoded().utf8), mode: 0o644)
    }

    /// The owner's record, or nil when there is none.
    public static func read(_ owner: String, in directory: String = ServiceNetwork.recordDirectory) throws(ReplicaError) -> NetworkRecord? {
        _ = try LeaseOwner(owner)
        let path = "\(directory)/\(owner)"
        guard let fd = try? OwnedFD.open(path, O_RDONLY | O_NOFOLLOW) else { return nil }
        return try NetworkRecord(parsing: String(decoding: try fd.readAll(limit: 64 << 10, name: path),
                                                 as: UTF8.self), path: path)
    }

    func remove(in directory: String) throws(ReplicaError) {
        if unlink("\(directory)/\(owner)") != 0 && Errno.current != .ENOENT {
            throw ReplicaError.current("unlink", ["\(directory)/\(owner)"])
        }
    }
}
