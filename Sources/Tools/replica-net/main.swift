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
                    options: planOptions + [.flag("dry-run", "Print the plan as ip commands and change nothing.")], positionals: [name]),
        CommandSpec("down", "Remove the service's veth and namespace and release its address; absent objects are fine.",
                    options: planOptions, positionals: [name]),
        CommandSpec("check", "Report where the kernel differs from the plan; changes nothing.", options: planOptions, positionals: [name]),
        CommandSpec("proxy", "Forward connections between a host socket and one inside a namespace, until SIGTERM.",
                    options: [
                        .option("listen", "endpoint", "Where to accept: unix:/PATH or tcp:HOST:PORT."),
                        .option("listen-netns", "name", "Accept inside this namespace (default: the host's)."),
                        .option("connect", "endpoint", "Where each connection goes: unix:/PATH or tcp:HOST:PORT."),
                        .option("connect-netns", "name", "Connect inside this namespace (default: the host's)."),
                    ]),
        CommandSpec("list", "The named namespaces and leased addresses.",
                    options: [.flag("json", "Print JSON."), .option("leases", "dir", "Where leases are kept.", default: AddressPool.defaultRoot, hidden: true)]),
    ])

let arguments = tool.parseOrExit()

func fail(_ message: String, _ code: Int32 = ExitCode.failure) -> Never {
    printError("replica-net: \(message)")
    exit(code)
}

/// The plan from the profile, or from flags standing in for its [Network] section.
func plan(_ name: String, leasing: Bool) -> (plan: NetworkPlan, pool: AddressPool?, owner: String) {
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
        var pool: AddressPool?
        let leases = arguments.value("leases") ?? AddressPool.defaultRoot
        let owner = profile.unit
        guard let plan = try NetworkPlan(profile: profile, lease: { (subnet) throws(NetError) -> IPPrefix in
            let made = try AddressPool(subnet: subnet, root: leases)
            pool = made
            return try made.lease(for: owner, dryRun: !leasing)
        }) else { fail("\(name) has no [Network]", ExitCode.notConfigured) }
        return (plan, pool, owner)
    } catch {
        fail("\(error)", ExitCode.usage)
    }
}

let target = arguments.positionals.first ?? ""
do {
    switch arguments.command {
    case "up":
        let dryRun = arguments.flag("dry-run")
        let (plan, pool, owner) = plan(target, leasing: !dryRun)
        if dryRun {
            plan.commands.forEach { print($0) }
            break
        }
        do throws(NetError) {
            for line in try plan.apply() { print("\(target): \(line)") }
        } catch {
            try? pool?.release(owner)  // the address leased for this attempt
            throw error
        }
        print("\(target): join it with NetworkNamespacePath=\(NetworkNamespace.directory)/\(plan.namespace)")
    case "down":
        let (plan, pool, owner) = plan(target, leasing: false)
        try plan.teardown()
        try pool?.release(owner)
        print("\(target): \(plan.hostLink) and namespace \(plan.namespace) removed")
    case "check":
        let (plan, _, _) = plan(target, leasing: false)
        let drift = try plan.check()
        if drift.isEmpty {
            print("\(target): matches the plan")
        } else {
            drift.forEach { print("\(target): \($0)") }
            exit(ExitCode.failure)
        }
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
        if arguments.flag("json") {
            print(JSON.object([
                ("namespaces", .array(namespaces.map(JSON.string))),
                ("leases", .array(leases.map { .object([("subnet", .string($0.subnet)), ("address", .string($0.address)), ("owner", .string($0.owner))]) })),
            ]).serialized())
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
