// replica-net: a service's private network — a named netns, a veth into it from a bridge, an
// address leased from the bridge's subnet, a default route — from its profile's [Network] section
// or from flags. Parses, calls NetworkPlan, prints.
import Glibc
import ReplicaKit
import ReplicaNet

let leasesOption = OptionSpec.option("leases", "dir", "Where leases are kept.", default: AddressPool.defaultRoot, hidden: true)
let recordsOption = OptionSpec.option("records", "dir", "Where up records what it made.", default: ServiceNetwork.recordDirectory, hidden: true)
let planOptions: [OptionSpec] = [
    .option("profiles", "dir", "A profile directory, lowest priority first.", repeatable: true, hidden: true),
    .option("bridge", "name", "Without a profile: the bridge the host end joins (made when missing)."),
    .option("macvlan", "interface", "Without a profile: a macvlan on this interface instead of a bridge port."),
    .option("subnet", "cidr", "Without a profile: the bridge's subnet; the address is leased from it."),
    .option("address", "cidr", "Without a profile: the address inside, instead of a lease."),
    .option("gateway", "ip", "Without a profile: the default route's gateway (default: the subnet's first host)."),
    leasesOption,
]
let name = PositionalSpec("name", "The service (web, web.service) whose profile has [Network], or a namespace name with flags.")
let names = PositionalSpec("name", "Names as given to up; several are torn down in one batch.", many: true)
let json = OptionSpec.json
let tool = ToolSpec(
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
                    options: planOptions + [recordsOption, .flag("dry-run", "Print the plan as ip commands and change nothing.", short: "n"), json],
                    positionals: [name]),
        CommandSpec("down", "Remove what up recorded for each name and give its address back; nothing recorded is fine.",
                    options: [leasesOption, recordsOption, json], positionals: [names]),
        CommandSpec("check", "Report where the kernel differs from the plan; changes nothing.", options: planOptions + [json], positionals: [name]),
        CommandSpec("proxy", "Forward connections between a host socket and one inside a namespace, until SIGTERM.",
                    options: [
                        .option("listen", "endpoint", "Where to accept: unix:/PATH or tcp:HOST:PORT."),
                        .option("listen-netns", "name", "Accept inside this namespace (default: the host's)."),
                        .option("connect", "endpoint", "Where each connection goes: unix:/PATH or tcp:HOST:PORT."),
                        .option("connect-netns", "name", "Connect inside this namespace (default: the host's)."),
                    ]),
        CommandSpec("list", "The named namespaces and leased addresses.", options: [json, leasesOption]),
    ])

let arguments = tool.parseOrExit()

func fail(_ message: String, _ code: Int32 = ExitCode.failure) -> Never {
    printError("replica-net: \(message)")
    exit(code)
}

let leases = arguments.value("leases") ?? AddressPool.defaultRoot
let records = arguments.value("records") ?? ServiceNetwork.recordDirectory

/// The profile's network, or the one flags describe standing in for its [Network] section: checked
/// whole, no address leased yet.
func prepared(_ name: String) -> ServiceNetwork.Prepared {
    let directories = arguments.all("profiles")
    let loader = directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
    let flags = [("Bridge", "bridge"), ("Macvlan", "macvlan"), ("Subnet", "subnet"), ("Address", "address"), ("Gateway", "gateway")]
        .compactMap { key, flag in arguments.value(flag).map { ProfileSetting(section: "Network", key: key, value: $0, file: "command line", line: 0) } }
    do {
        var profile = try loader.load(name) ?? Profile(unit: try ProfileLoader.unit(name).rawValue)
        profile.settings += flags
        guard let prepared = try ServiceNetwork.prepare(profile, leases: leases) else {
            fail("\(name) is not configured: no [Network] in \(loader.searchedPaths(name).joined(separator: ", ")) and no --subnet/--address",
                 ExitCode.notConfigured)
        }
        return prepared
    } catch {
        fail("\(error)", ExitCode.usage)
    }
}

/// The command's one JSON document on standard output (`JSONEnvelope`).
func printJSON(_ members: [(String, JSON)]) {
    JSONEnvelope.print(tool: "replica-net", action: arguments.command, members)
}

let target = arguments.positionals.first ?? ""
let asJSON = arguments.flag("json")
do {
    switch arguments.command {
    case "up":
        let prepared = prepared(target)
        let plan = prepared.plan
        let directive = "NetworkNamespacePath=\(NetworkNamespace.directory)/\(plan.namespace)"
        if arguments.flag("dry-run") {
            if asJSON {
                printJSON([("dry_run", .bool(true)), ("name", .string(target)), ("plan", plan.json),
                           ("commands", .array(plan.commands.map(JSON.string)))])
            } else {
                plan.commands.forEach { print($0) }
            }
            break
        }
        let steps = try ServiceNetwork.up(prepared, leases: leases, records: records)
        if asJSON {
            printJSON([("dry_run", .bool(false)), ("name", .string(target)), ("plan", plan.json),
                       ("steps", .array(steps.map(JSON.string))), ("directive", .string(directive))])
        } else {
            steps.forEach { print($0) }  // each names the namespace or link it is about
            print("\(target): join it with \(directive)")
        }
    case "down":
        // Records are kept by unit, as up keeps them: web and web.service name one.
        let owners = arguments.positionals.map { name in
            do throws(ProfileError) { return try ProfileLoader.unit(name).rawValue } catch { fail("\(error)", ExitCode.usage) }
        }
        let removed = try ServiceNetwork.down(owners, leases: leases, records: records)
        if asJSON {
            printJSON([("removed", .array(removed.map { entry in
                .object([("name", .string(entry.owner)), ("namespace", entry.record.map { .string($0.namespace) } ?? .null),
                         ("host_link", entry.record?.hostLink.map(JSON.string) ?? .null), ("steps", .array(entry.lines.map(JSON.string)))])
            }))])
        } else {
            for entry in removed { entry.lines.forEach { print("\(entry.owner): \($0)") } }
        }
    case "check":
        let plan = prepared(target).plan
        let drift = try plan.check()
        if asJSON {
            printJSON([("name", .string(target)), ("matches", .bool(drift.isEmpty)),
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
        let proxy = try Proxy(listen: try ProxyEndpoint(parsing: listen, namespace: arguments.value("listen-netns")),
                              connect: try ProxyEndpoint(parsing: connect, namespace: arguments.value("connect-netns")))
        let started = "replica-net: forwarding \(proxy.listen) → \(proxy.connect)\n"
        _ = write(1, started, started.utf8.count)
        let served = try proxy.runUntilTerminated()
        print("replica-net: stopped after \(served) connections")
    default:
        var held: [(subnet: String, address: String, owner: String)] = []
        for pool in try AddressPool.all(root: leases) {
            for lease in try pool.leases() { held.append((pool.subnet.description, lease.address.addressText, lease.owner)) }
        }
        let namespaces = NetworkNamespace.list()
        if asJSON {
            printJSON([
                ("namespaces", .array(namespaces.map(JSON.string))),
                ("leases", .array(held.map { .object([("subnet", .string($0.subnet)), ("address", .string($0.address)), ("owner", .string($0.owner))]) })),
            ])
        } else {
            print("NAMESPACES  \(namespaces.isEmpty ? "-" : namespaces.joined(separator: " "))")
            var table = Table(["SUBNET", "ADDRESS", "OWNER"])
            for lease in held { table.append([lease.subnet, lease.address, lease.owner]) }
            print("\n\(table)")
        }
    }
} catch {
    fail("\(error)")
}
