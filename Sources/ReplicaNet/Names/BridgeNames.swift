import Glibc
import ReplicaKit

/// The names of a bridge's machines — `NAME.DOMAIN` (`web1.lab.replica`) and the reverse (PTR) —
/// served on the bridge's gateway address by a dnsmasq of its own, as LXD and libvirt run one per
/// bridge: names from the bridge's leases (`replica-machine-web1.service` is `web1`, `web.service`
/// is `web`), written to a hosts file dnsmasq rereads on SIGHUP, so a fork or a removal is a name
/// the moment its lease is; every other name is forwarded to the host's own resolvers. dnsmasq was
/// chosen over a responder of our own: it forwards, caches and answers PTR from the same file, is
/// packaged everywhere, and a query costs what a cache lookup does.
public enum BridgeNames {
    /// Where each bridge's zone lives: `BRIDGE.zone` (what it serves), `BRIDGE.hosts` (the names),
    /// `BRIDGE.pid` (its dnsmasq). Beside /run/replica, not in it: dnsmasq rereads the hosts file
    /// as nobody, and /run/replica may be closed to others.
    public static let directory = "/run/replica-names"

    /// What one bridge serves.
    public struct Zone: Equatable, Sendable {
        /// The bridge.
        public var bridge: String
        /// The domain its names are in (`lab.replica`).
        public var domain: String
        /// Its subnet: the addresses named, and the reverse zone answered.
        public var subnet: IPPrefix
        /// The address dnsmasq listens on (the gateway, the bridge's own).
        public var listen: IPPrefix
        /// The bridge's IPv6 /64 (`UniqueLocal.prefix`): its reverse zone answered too, and
        /// dnsmasq listening on its gateway as well; nil without IPv6.
        public var subnet6: IPPrefix? = nil

        /// A zone, every part checked: the domain a DNS name (labels of letters, digits and `-`,
        /// at most 63 bytes each, 253 in all), the subnet IPv4.
        public init(bridge: String, domain: String, subnet: IPPrefix, listen: IPPrefix) throws(ReplicaError) {
            _ = try LinkName(bridge)
            try Self.checkDomain(domain)
            guard subnet.family == AF_INET, listen.family == AF_INET else {
                throw ReplicaError("zone", [subnet.description], errno: .EINVAL, hint: "names are served for an IPv4 subnet")
            }
            (self.bridge, self.domain, self.subnet, self.listen) = (bridge, domain.lowercased(), subnet.network, listen)
        }

        /// Refuses what is not a DNS name.
        public static func checkDomain(_ domain: String) throws(ReplicaError) {
            let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
            let valid = domain.utf8.count <= 253 && !labels.isEmpty && labels.allSatisfy { label in
                (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                    && label.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D }
            }
            guard valid else {
                throw ReplicaError("zone", [domain], errno: .EINVAL,
                                   hint: "not a DNS name: labels of letters, digits and '-' (not first or last), 1-63 bytes, dots between", reason: .usage)
            }
        }

        /// The reverse zone of the subnet, whole octets (`1.61.10.in-addr.arpa` for a /24).
        public var reverseZone: String {
            let octets = subnet.address.prefix(max(1, subnet.length / 8))
            return octets.reversed().map(String.init).joined(separator: ".") + ".in-addr.arpa"
        }

        /// dnsmasq's command line: nothing from its own configuration, only this zone, on `listen`;
        /// it becomes a daemon once it listens and writes its pid to `pidFile`.
        func arguments(hosts: String, pidFile: String) -> [String] {
            ["dnsmasq", "--conf-file=/dev/null", "--bind-interfaces", "--listen-address=\(listen.addressText)"]
                + (subnet6.map { ["--listen-address=\(UniqueLocal.gateway($0).addressText)", "--local=/\(UniqueLocal.reverseZone($0))/"] } ?? [])
                + ["--no-hosts", "--addn-hosts=\(hosts)", "--domain=\(domain)", "--local=/\(domain)/", "--local=/\(reverseZone)/",
                   "--expand-hosts", "--no-negcache", "--log-facility=/dev/null", "--pid-file=\(pidFile)"]
        }
    }

    /// The names the bridge's leases give, sorted: each owner's name without its unit suffix, at its
    /// leased address, and at its IPv6 address while its network is up (`NetworkRecord.address6`).
    public static func names(_ subnet: IPPrefix, leases: String = AddressPool.defaultRoot,
                             records: String = ServiceNetwork.recordDirectory) throws(ReplicaError) -> [(name: String, address: IPPrefix)] {
        try AddressPool(subnet: subnet, root: leases).leases().flatMap { (lease) -> [(name: String, address: IPPrefix)] in
            var name = lease.owner
            if name.hasPrefix("replica-machine-") && name.hasSuffix(".service") { name = String(name.dropFirst(16).dropLast(8)) }
            else if name.hasSuffix(".service") { name = String(name.dropLast(8)) }
            let address6 = (try? NetworkRecord.read(lease.owner, in: records))??.address6
            return [(name: name, address: lease.address)] + (address6.map { [(name: name, address: $0)] } ?? [])
        }.filter { (try? Zone.checkDomain($0.name)) != nil && !$0.name.contains(".") }.sorted { ($0.name, $0.address.family) < ($1.name, $1.address.family) }
    }

    /// Serves `zone`: writes its hosts file from the leases, then starts its dnsmasq, or tells the
    /// running one to reread the file (SIGHUP). Idempotent.
    public static func serve(_ zone: Zone, leases: String = AddressPool.defaultRoot, directory: String = directory) throws(ReplicaError) {
        try createDirectories(directory, mode: 0o755)
        let folder = try RootDirectory(directory)
        var record = Record()
        try record.append("bridge", zone.bridge)
        try record.append("domain", zone.domain)
        try record.append("subnet", zone.subnet.description)
        try record.append("listen", zone.listen.description)
        if let subnet6 = zone.subnet6 { try record.append("subnet6", subnet6.description) }
        try folder.writeFileAtomically("\(zone.bridge).zone", contents: Array(record.encoded.utf8), mode: 0o644, sync: false)
        try writeHosts(zone, leases: leases, in: folder)
        if let pid = running(zone.bridge, directory: directory) {
            kill(pid, SIGHUP)
            return
        }
        let command = zone.arguments(hosts: "\(directory)/\(zone.bridge).hosts", pidFile: "\(directory)/\(zone.bridge).pid")
        do throws(ReplicaError) {
            if Systemd.isBooted && geteuid() == 0 {
                // Where systemd runs, a unit of its own: listed, logged, never in the caller's cgroup.
                try SystemdManager.startForkingService(unit(zone.bridge), command: command, pidFile: "\(directory)/\(zone.bridge).pid",
                                                       description: "Replica names of \(zone.domain) on \(zone.bridge)")
            } else {
                // dnsmasq returns once its daemon listens (its pid written, its output closed), or with the reason it cannot.
                let result = try Command.run(command)
                guard result.status.isSuccess else {
                    throw ReplicaError("dnsmasq", [zone.bridge], errno: .EADDRNOTAVAIL,
                                       hint: "\(result.status): \(result.output.split(separator: "\n").first ?? "")", reason: .system)
                }
            }
            try resolveOnHost(zone)
        } catch {
            try? stop(zone.bridge, directory: directory)
            throw error
        }
    }

    /// The transient unit a bridge's dnsmasq runs as where systemd runs:
    /// `replica-names@BRIDGE.service`, the bridge's name escaped as `systemd-escape` does.
    public static func unit(_ bridge: String) -> String { "replica-names@\(SystemdEscape.path(bridge)).service" }

    /// Where systemd-resolved runs, the host asks the bridge's dnsmasq for the zone and its reverse
    /// zones, and for nothing else (`resolvectl dns BRIDGE GATEWAY…; resolvectl domain BRIDGE
    /// ~DOMAIN ~REVERSE…`). Elsewhere the host's resolver is the operator's to point there.
    static func resolveOnHost(_ zone: Zone) throws(ReplicaError) {
        guard Resolved.isRunning else { return }
        var socket = try NetlinkSocket()
        guard let link = try socket.link(named: zone.bridge) else { return }
        var servers = [(family: AF_INET, address: zone.listen.address)]
        var domains = ["~\(zone.domain)", "~\(zone.reverseZone)"]
        if let subnet6 = zone.subnet6 {
            servers.append((AF_INET6, UniqueLocal.gateway(subnet6).address))
            domains.append("~\(UniqueLocal.reverseZone(subnet6))")
        }
        try Resolved.setLink(link.index, name: zone.bridge, servers: servers, routingDomains: domains)
    }

    /// Rewrites the hosts file of the bridge's zone, if one is served, and has it reread: what a
    /// fork or removal of a machine on it calls once its lease changed.
    public static func refresh(bridge: String, leases: String = AddressPool.defaultRoot, directory: String = directory) throws(ReplicaError) {
        guard let zone = try zone(bridge, directory: directory) else { return }
        try writeHosts(zone, leases: leases, in: try RootDirectory(directory))
        if let pid = running(bridge, directory: directory) { kill(pid, SIGHUP) }
    }

    /// The zone served for `bridge`, or nil.
    public static func zone(_ bridge: String, directory: String = directory) throws(ReplicaError) -> Zone? {
        guard let text = try? OwnedFD.open("\(directory)/\(bridge).zone", O_RDONLY | O_NOFOLLOW).readAll(limit: 4096) else { return nil }
        let record = try Record(decoding: String(decoding: text, as: UTF8.self), source: "\(directory)/\(bridge).zone")
        guard let domain = record.value("domain"), let subnet = record.value("subnet"), let listen = record.value("listen") else { return nil }
        var zone = try Zone(bridge: bridge, domain: domain, subnet: try IPPrefix(subnet), listen: try IPPrefix(listen))
        zone.subnet6 = try record.value("subnet6").map { (text) throws(ReplicaError) in try IPPrefix(text) }
        return zone
    }

    /// Every zone served now.
    public static func served(directory: String = directory) -> [Zone] {
        guard let folder = try? OwnedFD.open(directory, O_RDONLY | O_DIRECTORY), let names = try? DirectoryEntries.names(in: folder) else { return [] }
        return names.filter { $0.hasSuffix(".zone") }.compactMap { try? zone(String($0.dropLast(5)), directory: directory) }
    }

    /// Stops the bridge's dnsmasq (SIGTERM, waited for) and removes its files. Idempotent.
    public static func stop(_ bridge: String, directory: String = directory) throws(ReplicaError) {
        _ = try LinkName(bridge)
        if Resolved.isRunning, var socket = try? NetlinkSocket(), let link = try? socket.link(named: bridge) {
            try? Resolved.revertLink(link.index, name: bridge)
        }
        if Systemd.isBooted && geteuid() == 0, SystemdManager.activeState(of: unit(bridge)).map({ $0 != "inactive" }) == true {
            try SystemdManager.stopUnit(unit(bridge))
        }
        if let pid = running(bridge, directory: directory) {
            kill(pid, SIGTERM)
            for _ in 0..<200 where kill(pid, 0) == 0 {
                _ = waitpid(pid, nil, WNOHANG)
                usleep(5_000)
            }
        }
        for suffix in ["zone", "hosts", "pid"] { unlink("\(directory)/\(bridge).\(suffix)") }
        rmdir(directory)  // with the last zone
    }

    /// The pid of the bridge's dnsmasq while it runs: the recorded pid, checked to be a dnsmasq
    /// serving this bridge's hosts file (a pid reused by another program is never signalled).
    static func running(_ bridge: String, directory: String) -> pid_t? {
        guard let text = try? OwnedFD.open("\(directory)/\(bridge).pid", O_RDONLY | O_NOFOLLOW).readAll(limit: 32),
              let pid = pid_t(String(decoding: text, as: UTF8.self).split(separator: "\n").first ?? ""), pid > 1,
              let command = try? OwnedFD.open("/proc/\(pid)/cmdline", O_RDONLY).readAll(limit: 8192) else { return nil }
        let words = command.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return words.first == "dnsmasq" && words.contains("--addn-hosts=\(directory)/\(bridge).hosts") ? pid : nil
    }

    static func writeHosts(_ zone: Zone, leases: String, in folder: borrowing RootDirectory) throws(ReplicaError) {
        let lines = try names(zone.subnet, leases: leases).map { "\($0.address.addressText) \($0.name)\n" }.joined()
        try folder.writeFileAtomically("\(zone.bridge).hosts", contents: Array(lines.utf8), mode: 0o644, sync: false)
    }
}
