import Glibc
import ReplicaKit
import ReplicaNet

/// `replica-net`: a service's private network — a named netns, a veth into it from a bridge, an
/// address leased from the bridge's subnet, a default route — from its profile's [Network] section
/// or from flags. Every step is one call of `ServiceNetwork`, `NetworkPlan` or `Proxy`.
public enum NetTool: Tool {
    static let leases = OptionSpec.option("leases", "dir", "Where leases are kept.", default: AddressPool.defaultRoot, hidden: true)
    static let records = OptionSpec.option("records", "dir", "Where up records what it made.", default: ServiceNetwork.recordDirectory, hidden: true)
    /// Flag → `[Network]` key: a network described on the command line instead of a profile.
    static let networkFlags = [("bridge", "Bridge", "name", "the bridge the host end joins (made when missing)."),
                               ("macvlan", "Macvlan", "interface", "a macvlan on this interface instead of a bridge port."),
                               ("subnet", "Subnet", "cidr", "the bridge's subnet; the address is leased from it."),
                               ("address", "Address", "cidr", "the address inside, instead of a lease."),
                               ("gateway", "Gateway", "ip", "the default route's gateway (default: the subnet's first host)."),
                               ("ipv6", "IPv6", "yes|no", "with --bridge: an IPv6 address too, in the bridge's unique local /64.")]
    static let planOptions = [OptionSpec.profiles, leases] + networkFlags.map { .option($0.0, $0.2, "Without a profile: " + $0.3) }
    static let name = PositionalSpec("name", "The service (web, web.service) whose profile has [Network], or a namespace name with flags.")
    public static let spec = ToolSpec(
        name: "replica-net",
        abstract: "Give a service its own network namespace, reachable through a bridge.",
        discussion: """
            A unit joins it with NetworkNamespacePath=/run/netns/NAME, after replica-net up NAME has run
            (e.g. from a oneshot unit ordered before it). up records what it made in
            /run/replica/net/NAME; down removes exactly that, with no flags. Exit codes: 0 ok, 1 failure
            or drift, 2 usage, 6 not configured.
            """,
        commands: [
            CommandSpec("up", "Make the namespace, veth, bridge port, address and route, all or nothing.",
                        options: planOptions + [records, .flag("dry-run", "Print the plan as ip commands and change nothing.", short: "n")],
                        positionals: [name]),
            CommandSpec("down", "Remove what up recorded for each name and give its address back; nothing recorded is fine.",
                        options: [leases, records], positionals: [PositionalSpec("name", "Names as given to up; several are torn down in one batch.", many: true)]),
            CommandSpec("check", "Report where the kernel differs from the plan; changes nothing.", options: planOptions, positionals: [name]),
            CommandSpec("proxy", "Forward connections between a host socket and one inside a namespace, until SIGTERM.", options: [
                .option("listen", "endpoint", "Where to accept: unix:/PATH or tcp:HOST:PORT."),
                .option("listen-netns", "name", "Accept inside this namespace (default: the host's)."),
                .option("connect", "endpoint", "Where each connection goes: unix:/PATH or tcp:HOST:PORT."),
                .option("connect-netns", "name", "Connect inside this namespace (default: the host's)."),
            ]),
            CommandSpec("list", "The named namespaces and leased addresses.", options: [leases]),
            CommandSpec("firewall", "A bridge's way out, in and apart (nftables table inet replica): set OWNER, unset OWNER, or list.", options: [
                .option("bridge", "name", "set: the bridge whose machines the rules are for."),
                .option("subnet", "cidr", "set: its IPv4 subnet (the only source it may send from; what is masqueraded)."),
                .option("forward", "rule", "set: PROTO:[HOSTADDRESS:]HOSTPORT:ADDRESS:PORT, a host port forwarded in. Repeatable.", repeatable: true),
                .option("allow", "peer", "set: a bridge or subnet whose traffic may enter. Repeatable.", repeatable: true),
                .flag("no-nat", "set: do not masquerade what leaves for the world."),
                .flag("ipv6", "set: IPv6 too, in the bridge's unique local /64 (what IPv6=yes gives its machines)."),
                .option("firewall-records", "dir", "Where the rules of each owner are kept.", default: Firewall.recordDirectory, hidden: true),
            ], positionals: [PositionalSpec("action", "set, unset or list."), PositionalSpec("owner", "Who the rules are for (a set's name).", optional: true)]),
            CommandSpec("names", "A bridge's machines by name (NAME.DOMAIN, and PTR) from a dnsmasq on its gateway: serve, refresh or stop.", options: [
                .option("bridge", "name", "The bridge."),
                .option("subnet", "cidr", "serve: its IPv4 subnet; names come from its leases."),
                .option("domain", "name", "serve: the domain of its names, e.g. lab.replica."),
                .option("listen", "ip", "serve: the address to answer on (default: the subnet's first host, the gateway)."),
                .flag("ipv6", "serve: AAAA names too, and answer on the gateway of the bridge's unique local /64."),
                leases, .option("names-directory", "dir", "Where zones are kept.", default: BridgeNames.directory, hidden: true),
            ], positionals: [PositionalSpec("action", "serve, refresh or stop.")]),
        ])

    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        let leases = arguments.value("leases") ?? AddressPool.defaultRoot, records = arguments.value("records") ?? ServiceNetwork.recordDirectory
        let target = arguments.positionals.first ?? ""
        switch arguments.command {
        case "up":
            let prepared = try prepared(target, arguments)
            let plan = prepared.plan
            if arguments.flag("dry-run") {
                return ToolOutput(lines: plan.commands, [("dry_run", .bool(true)), ("name", .string(target)), ("plan", plan.json),
                                                         ("commands", .array(plan.commands.map(JSON.string)))])
            }
            let steps = try ServiceNetwork.up(prepared, leases: leases, records: records)
            let directive = "NetworkNamespacePath=\(NetworkNamespace.directory)/\(plan.namespace)"
            return ToolOutput(lines: steps + ["\(target): join it with \(directive)"],  // each step names its namespace or link
                              [("dry_run", .bool(false)), ("name", .string(target)), ("plan", plan.json),
                               ("steps", .array(steps.map(JSON.string))), ("directive", .string(directive))])
        case "down":
            // Records are kept by unit, as up keeps them: web and web.service name one.
            var owners: [String] = []
            for name in arguments.positionals {
                do throws(ReplicaError) { owners.append(try ProfileLoader.unit(name).rawValue) } catch { throw error.because(.usage) }
            }
            let removed = try ServiceNetwork.down(owners, leases: leases, records: records)
            return ToolOutput(lines: removed.flatMap { entry in entry.lines.map { "\(entry.owner): \($0)" } },
                              [("removed", .array(removed.map { entry in
                                  .object([("name", .string(entry.owner)), ("namespace", entry.record.map { .string($0.namespace) } ?? .null),
                                           ("host_link", entry.record?.hostLink.map(JSON.string) ?? .null),
                                           ("steps", .array(entry.lines.map(JSON.string)))])
                              }))])
        case "check":
            let plan = try prepared(target, arguments).plan
            let drift = try plan.check()
            return ToolOutput(lines: drift.isEmpty ? ["\(target): matches the plan"] : drift.map { "\(target): \($0)" },
                              [("name", .string(target)), ("matches", .bool(drift.isEmpty)), ("drift", .array(drift.map(JSON.string))),
                               ("plan", plan.json)], exitCode: drift.isEmpty ? ExitCode.ok : ExitCode.failure)
        case "proxy":
            guard let listen = arguments.value("listen"), let connect = arguments.value("connect") else {
                throw .usage("proxy needs --listen and --connect, e.g. --listen unix:/run/web.sock --connect tcp:127.0.0.1:8080 --connect-netns web")
            }
            let proxy = try Proxy(listen: try ProxyEndpoint(parsing: listen, namespace: arguments.value("listen-netns")),
                                  connect: try ProxyEndpoint(parsing: connect, namespace: arguments.value("connect-netns")))
            if !arguments.flag("json") {
                let started = "replica-net: forwarding \(proxy.listen) → \(proxy.connect)\n"
                _ = write(1, started, started.utf8.count)  // at once: a caller waits for it before connecting
            }
            let served = try proxy.runUntilTerminated()
            // Named now: the proxy goes (removing its socket) when this returns, not at exit.
            let (listened, connected) = ("\(proxy.listen)", "\(proxy.connect)")
            return ToolOutput("replica-net: stopped after \(served) connections",
                              [("listen", .string(listened)), ("connect", .string(connected)), ("connections", .int(Int64(served)))])
        case "firewall":
            return try firewall(arguments)
        case "names":
            return try names(arguments, leases: leases)
        default:
            var held: [(subnet: String, address: String, owner: String)] = []
            for pool in try AddressPool.all(root: leases) {
                for lease in try pool.leases() { held.append((pool.subnet.description, lease.address.addressText, lease.owner)) }
            }
            let namespaces = NetworkNamespace.list()
            var table = Table(["SUBNET", "ADDRESS", "OWNER"])
            for lease in held { table.append([lease.subnet, lease.address, lease.owner]) }
            return ToolOutput("NAMESPACES  \(namespaces.isEmpty ? "-" : namespaces.joined(separator: " "))\n\n\(table)", [
                ("namespaces", .array(namespaces.map(JSON.string))),
                ("leases", .array(held.map { .object([("subnet", .string($0.subnet)), ("address", .string($0.address)), ("owner", .string($0.owner))]) })),
            ])
        }
    }

    /// `firewall set|unset|list`: one owner's rules recorded (or removed) and the table loaded whole.
    static func firewall(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        let records = arguments.value("firewall-records") ?? Firewall.recordDirectory
        let action = arguments.positionals[0], owner = arguments.positionals.dropFirst().first
        switch (action, owner) {
        case ("set", let owner?):
            guard let bridge = arguments.value("bridge"), let subnet = arguments.value("subnet") else {
                throw .usage("firewall set needs --bridge NAME --subnet CIDR")
            }
            var rules: BridgeFirewall
            do throws(ReplicaError) {
                rules = try BridgeFirewall(owner: owner, bridge: bridge, subnet: try IPPrefix(subnet))
                rules.masquerade = !arguments.flag("no-nat")
                if arguments.flag("ipv6") { rules.subnet6 = UniqueLocal.prefix(bridge: bridge) }
                rules.allow = try arguments.all("allow").map { (text) throws(ReplicaError) in try BridgeFirewall.Peer(text) }
                rules.forwards = try arguments.all("forward").map { (text) throws(ReplicaError) in try PortForward(parsing: text) }
            } catch { throw error.because(.usage) }
            try Firewall.update(owner, rules, records: records)
            return ToolOutput("replica-net: \(owner): \(bridge) \(rules.subnet)\(rules.subnet6.map { " \($0)" } ?? ""), \(rules.forwards.count) forwards", [("owner", .string(owner)), ("set", .bool(true))])
        case ("unset", let owner?):
            try Firewall.update(owner, nil, records: records)
            return ToolOutput("replica-net: \(owner): no rules", [("owner", .string(owner)), ("set", .bool(false))])
        case ("list", nil):
            let all = try Firewall.read(records)
            var table = Table(["OWNER", "BRIDGE", "SUBNET", "SUBNET6", "NAT", "ALLOW", "FORWARDS"])
            for (owner, rules) in all.sorted(by: { $0.key < $1.key }) {
                table.append([owner, rules.bridge, rules.subnet.description, rules.subnet6?.description ?? "-", rules.masquerade ? "yes" : "no",
                              rules.allow.isEmpty ? "-" : rules.allow.map(\.description).joined(separator: ","),
                              rules.forwards.isEmpty ? "-" : rules.forwards.map(\.description).joined(separator: " ")])
            }
            return ToolOutput("\(table)", [("rules", .array(all.keys.sorted().map { .string($0) }))])
        default:
            throw .usage("firewall takes set OWNER, unset OWNER or list")
        }
    }

    /// `names serve|refresh|stop --bridge BRIDGE`.
    static func names(_ arguments: ParsedArguments, leases: String) throws(ReplicaError) -> ToolOutput {
        let directory = arguments.value("names-directory") ?? BridgeNames.directory
        guard let bridge = arguments.value("bridge") else { throw .usage("names needs --bridge NAME") }
        switch arguments.positionals[0] {
        case "serve":
            guard let subnetText = arguments.value("subnet"), let domain = arguments.value("domain") else {
                throw .usage("names serve needs --subnet CIDR --domain NAME")
            }
            let zone: BridgeNames.Zone
            do throws(ReplicaError) {
                let subnet = try IPPrefix(subnetText)
                var listen = try AddressPool(subnet: subnet).gateway
                if let text = arguments.value("listen") { listen = try IPPrefix(text) }
                var made = try BridgeNames.Zone(bridge: bridge, domain: domain, subnet: subnet, listen: listen)
                if arguments.flag("ipv6") { made.subnet6 = UniqueLocal.prefix(bridge: bridge) }
                zone = made
            } catch { throw error.because(.usage) }
            try BridgeNames.serve(zone, leases: leases, directory: directory)
            let names = try BridgeNames.names(zone.subnet, leases: leases)
            return ToolOutput(lines: names.map { "\($0.name).\(zone.domain) \($0.address.addressText)" },
                              [("bridge", .string(bridge)), ("domain", .string(zone.domain)), ("listen", .string(zone.listen.addressText)),
                               ("names", .array(names.map { .object([("name", .string("\($0.name).\(zone.domain)")), ("address", .string($0.address.addressText))]) }))])
        case "refresh":
            try BridgeNames.refresh(bridge: bridge, leases: leases, directory: directory)
            return ToolOutput("replica-net: \(bridge): names reread", [("bridge", .string(bridge))])
        case "stop":
            try BridgeNames.stop(bridge, directory: directory)
            return ToolOutput("replica-net: \(bridge): no names served", [("bridge", .string(bridge))])
        default:
            throw .usage("names takes serve, refresh or stop")
        }
    }

    /// The profile's network, or the one flags describe standing in for its [Network] section:
    /// checked whole, no address leased yet. Anything wrong in it is a usage error.
    static func prepared(_ name: String, _ arguments: ParsedArguments) throws(ReplicaError) -> ServiceNetwork.Prepared {
        let loader = arguments.profileLoader
        let flags = networkFlags.compactMap { flag, key, _, _ in
            arguments.value(flag).map { ProfileSetting(section: "Network", key: key, value: $0, file: "command line", line: 0) }
        }
        do throws(ReplicaError) {
            let unit = try ProfileLoader.unit(name).rawValue
            var profile = try loader.load(name) ?? Profile(unit: unit)
            profile.settings += flags
            guard let prepared = try ServiceNetwork.prepare(profile, leases: arguments.value("leases") ?? AddressPool.defaultRoot) else {
                throw ReplicaError.notConfigured("\(name) is not configured: no [Network] in \(loader.searchedPaths(name).joined(separator: ", ")) "
                                                 + "and no --subnet/--address")
            }
            return prepared
        } catch { throw error.reason == .notConfigured ? error : error.because(.usage) }
    }
}
