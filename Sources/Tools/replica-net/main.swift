// replica-net: a service's private network — a named netns, a veth into it from a bridge, an
// address leased from the bridge's subnet, a default route — from its profile's [Network] section
// or from flags. Parses, calls NetworkPlan, prints.
import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaNet

let planOptions: [OptionSpec] = [
    .option("profiles", "dir", "A profile directory, lowest priority first.", repeatable: true, hidden: true),
    .option("bridge", "name", "Without a profile: the bridge the host end joins (made when missing)."),
    .option("macvlan", "interface", "Without a profile: a macvlan on this interface instead of a bridge port."),
    .option("subnet", "cidr", "Without a profile: the bridge's subnet; the address is leased from it."),
    .option("address", "cidr", "Without a profile: the address inside, instead of a lease."),
    .option("gateway", "ip", "Without a profile: the default route's gateway (default: the subnet's first host)."),
    .option("leases", "dir", "Where leases are kept.", default: AddressPool.defaultRoot, hidden: true),
]
let name = PositionalSpec("name", "The service (web, web.service) whose profile has [Network], or a namespace name with flags.")
let names = PositionalSpec("name", "Services or namespace names as for up; several are torn down in one batch.", many: true)
let json = OptionSpec.flag("json", "Print JSON (schema replica.net.v1).")
let tool = ToolSpec(
    name: "replica-net",
    abstract: "Give a service its own network namespace, reachable through a bridge.",
    discussion: """
        A unit joins it with NetworkNamespacePath=/run/netns/NAME, after replica-net up NAME has run
        (e.g. from a oneshot unit ordered before it). Exit codes: 0 ok, 1 failure or drift, 2 usage,
        6 not configured.
        """,
    commands: [
        CommandSpec("up", "Make the namespace, veth, bridge port, address and route, all or nothing.",
                    options: planOptions + [.flag("dry-run", "Print the plan as ip commands and change nothing."), json], positionals: [name]),
        CommandSpec("down", "Remove the services' veths and namespaces and release their addresses; absent objects are fine.",
                    options: planOptions + [json], positionals: [names]),
        CommandSpec("check", "Report where the kernel differs from the plan; changes nothing.", options: planOptions + [json], positionals: [name]),
        CommandSpec("proxy", "Forward connections between a host socket and one inside a namespace, until SIGTERM.",
                    options: [
                        .option("listen", "endpoint", "Where to accept: unix:/PATH or tcp:HOST:PORT."),
                        .option("listen-netns", "name", "Accept inside this namespace (default: the host's)."),
                        .option("connect", "endpoint", "Where each connection goes: unix:/PATH or tcp:HOST:PORT."),
                        .option("connect-netns", "name", "Connect inside this namespace (default: the host's)."),
                    ]),
        CommandSpec("list", "The named namespaces and leased addresses.",
                    options: [json, .option("leases", "dir", "Where leases are kept.", default: AddressPool.defaultRoot, hidden: true)]),
    ])

let arguments = tool.parseOrExit()

func fail(_ message: String, _ code: Int32 = ExitCode.failure) -> Never {
    printError("replica-net: \(message)")
    exit(code)
}

/// The plan from the profile, or from flags standing in for its [Network] section. `leased` is the
/// pool when this call made the owner's lease (so a failed `up` gives back only that one).
func plan(_ name: String, leasing: Bool) -> (plan: NetworkPlan, pool: AddressPool?, owner: String, leased: AddressPool?) {
    let directories = arguments.all("profiles")
    let loader = directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
    let flags = [("Bridge", "bridge"), ("Macvlan", "macvlan"), ("Subnet", "subnet"), ("Address", "address"), ("Gateway", "gateway")]
        .compactMap { key, flag in arguments.value(flag).map { ProfileSetting(section: "Network", key: key, value: $0, file: "command line", line: 0) } }
    do {
        var profile = try loader.load(name) ?? Profile(unit: name)
        profile.settings += flags
        guard profile.settings.contains(where: { $0.section == "Network" }) else {
            fail("\(name) is not configured: no [Network] in \(loader.searchedPaths(name).joined(separator: ", ")) and no --subnet/--address",
                 ExitCode.notConfigured)
        }
        var pool: AddressPool?, leased: AddressPool?
        let leases = arguments.value("leases") ?? AddressPool.defaultRoot
        let owner = profile.unit
        guard let plan = try NetworkPlan(profile: profile, lease: { (subnet) throws(NetError) -> IPPrefix in
            let made = try AddressPool(subnet: subnet, root: leases)
            pool = made
            let lease = try made.take(for: owner, dryRun: !leasing)
            if lease.isNew && leasing { leased = made }
            return lease.address
        }) else { fail("\(name) has no [Network]", ExitCode.notConfigured) }
        return (plan, pool, owner, leased)
    } catch {
        fail("\(error)", ExitCode.usage)
    }
}

/// One JSON document on standard output, tagged with the schema.
func printJSON(_ members: [(String, JSON)]) {
    print(JSON.object([("schema", .string("replica.net.v1"))] + members).serialized())
}

let target = arguments.positionals.first ?? ""
let asJSON = arguments.flag("json")
do {
    switch arguments.command {
    case "up":
        let dryRun = arguments.flag("dry-run")
        let (plan, _, owner, leased) = plan(target, leasing: !dryRun)
        let directive = "NetworkNamespacePath=\(NetworkNamespace.directory)/\(plan.namespace)"
        if dryRun {
            if asJSON {
                printJSON([("action", .string("up")), ("dry_run", .bool(true)), ("name", .string(target)), ("plan", plan.json),
                           ("commands", .array(plan.commands.map(JSON.string)))])
            } else {
                plan.commands.forEach { print($0) }
            }
            break
        }
        let steps: NetworkPlan.Report
        do throws(NetError) {
            steps = try plan.apply()
        } catch {
            try? leased?.release(owner)  // the address leased for this attempt, if it was new
            throw error
        }
        if asJSON {
            printJSON([("action", .string("up")), ("dry_run", .bool(false)), ("name", .string(target)), ("plan", plan.json),
                       ("steps", .array(steps.map(JSON.string))), ("directive", .string(directive))])
        } else {
            steps.forEach { print($0) }  // each names the namespace or link it is about
            print("\(target): join it with \(directive)")
        }
    case "down":
        // Every name is resolved before anything is removed: one bad name changes nothing.
        let resolved = arguments.positionals.map { (name: $0, found: plan($0, leasing: false)) }
        try NetworkPlan.teardown(resolved.map(\.found.plan))
        for (_, found) in resolved { try found.pool?.release(found.owner) }
        if asJSON {
            printJSON([("action", .string("down")), ("removed", .array(resolved.map { name, found in
                .object([("name", .string(name)), ("namespace", .string(found.plan.namespace)),
                         ("host_link", found.plan.macvlanParent == nil ? .string(found.plan.hostLink) : .null)])
            }))])
        } else {
            for (name, found) in resolved {
                let link = found.plan.macvlanParent == nil ? "\(found.plan.hostLink) and namespace" : "namespace"
                print("\(name): \(link) \(found.plan.namespace) removed")
            }
        }
    case "check":
        let (plan, _, _, _) = plan(target, leasing: false)
        let drift = try plan.check()
        if asJSON {
            printJSON([("action", .string("check")), ("name", .string(target)), ("matches", .bool(drift.isEmpty)),
                       ("drift", .array(drift.map(JSON.string))), ("plan", plan.json)])
        } else if drift.isEmpty {
            print("\(target): matches the plan")
        } else {
            drift.forEach { print("\(target): \($0)") }
        }
        if !drift.isEmpty { exit(ExitCode.failure) }
    case "proxy":
        guard let listen = arguments.value("listen"), let connect = arguments.value("connect") else {
            fail("proxy needs --listen and --connect, e.g. --listen unix:/run/web.sock --connect tcp:127.0.0.1:8080 --connect-netns web",
                 ExitCode.usage)
        }
        // SIGTERM and SIGINT arrive through a signalfd the proxy polls: a clean stop, no handler.
        let stop = replica_termination_signalfd()
        guard stop >= 0 else { fail("signalfd: \(Errno.current)") }
        let proxy = try Proxy(listen: try ProxyEndpoint(parsing: listen, namespace: arguments.value("listen-netns")),
                              connect: try ProxyEndpoint(parsing: connect, namespace: arguments.value("connect-netns")))
        let started = "replica-net: forwarding \(proxy.listen) → \(proxy.connect)\n"
        _ = write(1, started, started.utf8.count)
        let served = try proxy.run(until: stop)
        print("replica-net: stopped after \(served) connections")
    default:
        let root = arguments.value("leases") ?? AddressPool.defaultRoot
        var leases: [(subnet: String, address: String, owner: String)] = []
        var directories: [String] = []
        if let top = try? OwnedFD.open(root, O_RDONLY | O_DIRECTORY) { directories = (try? DirectoryEntries.names(in: top)) ?? [] }
        for directory in directories.sorted() {
            let parts = directory.split(separator: "-")
            guard parts.count == 2, let subnet = try? IPPrefix("\(parts[0])/\(parts[1])"),
                  let pool = try? AddressPool(subnet: subnet, root: root) else { continue }
            for lease in try pool.leases() { leases.append((subnet.description, lease.address.addressText, lease.owner)) }
        }
        let namespaces = NetworkNamespace.list()
        if asJSON {
            printJSON([
                ("action", .string("list")),
                ("namespaces", .array(namespaces.map(JSON.string))),
                ("leases", .array(leases.map { .object([("subnet", .string($0.subnet)), ("address", .string($0.address)), ("owner", .string($0.owner))]) })),
            ])
        } else {
            print("NAMESPACES  \(namespaces.isEmpty ? "-" : namespaces.joined(separator: " "))")
            var table = Table(["SUBNET", "ADDRESS", "OWNER"])
            for lease in leases { table.append([lease.subnet, lease.address, lease.owner]) }
            print("\n\(table)")
        }
    }
} catch {
    fail("\(error)")
}
