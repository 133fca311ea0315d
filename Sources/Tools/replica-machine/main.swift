// replica-machine: containers forked from copy-on-write templates on the store, identity reset,
// seeded, booted with systemd-nspawn and ready when their own systemd says so. Parses, calls
// Templates / Machines / MachineProcess, prints.
import Glibc
import Replica
import ReplicaKit
import ReplicaNet
import ReplicaStore

let store = OptionSpec.option("store", "path", "The mounted btrfs store.", default: EmbeddedStore.defaultMountPoint)
let json = OptionSpec.json
let machineName = PositionalSpec("name", "The machine (also its hostname).")
let tool = ToolSpec(
    name: "replica-machine",
    abstract: "Fork containers from copy-on-write templates, seed them and boot them with systemd-nspawn.",
    discussion: "Exit codes: 0 ok, 1 failure, 2 usage, 6 no such template or machine.",
    commands: [
        CommandSpec("template", "Templates: import NAME DIR|TARBALL, list, remove NAME.",
                    options: [store, json, .flag("force", "remove: even while machines forked from it exist.")],
                    positionals: [PositionalSpec("action", "import, list or remove."),
                                  PositionalSpec("template", "The template.", optional: true),
                                  PositionalSpec("source", "import: a root file system folder, or a tarball of one.", optional: true)]),
        CommandSpec("fork", "Fork a machine from a template: a writable snapshot, its identity reset, its seed laid.",
                    options: [store, json,
                              .option("template", "name", "The template to fork."),
                              .option("set", "name", "Fork it as a machine of this service set: its template and the set's SSH keys from the set file."),
                              .option("sets", "dir", "A set directory, lowest priority first.", repeatable: true, hidden: true),
                              .option("hostname", "name", "Its hostname (default: its name)."),
                              .option("ssh-key", "file", "A public key root may log in with.", repeatable: true),
                              .option("address", "cidr", "Its address, for a static network-config (10.88.0.5/24)."),
                              .option("gateway", "ip", "Its default gateway, with --address."),
                              .option("seed", "dir", "A NoCloud folder (meta-data, user-data …) to lay instead."),
                              .option("network", "profile", "Its network: the [Network] section of this profile (a namespace of its own, a veth on its bridge, a leased address)."),
                              .option("bridge", "name", "Instead: a veth on this bridge (made when missing)."),
                              .option("subnet", "cidr", "With --bridge: the bridge's subnet; the machine's address is leased from it.")],
                    positionals: [machineName]),
        CommandSpec("start", "Boot the machine, in the network it was forked with; with --wait, return once its systemd is ready.",
                    options: [store,
                              .option("wait", "seconds", "Wait this long for READY (0: do not wait).", default: "60"),
                              .option("namespace", "name", "Join this network namespace instead (/run/netns/NAME, e.g. from replica-net up)."),
                              .option("network", "profile", "A machine forked without a network: give it this profile's [Network], kept from now on."),
                              .option("bridge", "name", "Or a veth on this bridge (made when missing), kept from now on."),
                              .option("subnet", "cidr", "With --bridge: the bridge's subnet; the machine's address is leased from it."),
                              .flag("foreground", "Run systemd-nspawn in place (what replica-machine@.service does).")],
                    positionals: [machineName]),
        CommandSpec("stop", "Power the machine off (kill it after 30 s), then remove its veth and namespace (its address stays leased to it).",
                    options: [store], positionals: [machineName]),
        CommandSpec("remove", "Remove a stopped machine, its data and its network (its address given back).", options: [store, json],
                    positionals: [machineName]),
        CommandSpec("list", "The machines, their templates and whether they run.", options: [store, json]),
        CommandSpec("set", "Service sets (/etc/replica/sets/NAME.conf): start forks and boots them all at once, ready when all are; stop.",
                    options: [store,
                              .option("wait", "seconds", "start: how long all may take to be ready.", default: "120"),
                              .option("sets", "dir", "A set directory, lowest priority first.", repeatable: true, hidden: true)],
                    positionals: [PositionalSpec("action", "start or stop."), PositionalSpec("set", "The set.")]),
    ])

let arguments = tool.parseOrExit()
let asJSON = arguments.flag("json")

func fail(_ message: String, _ code: Int32 = ExitCode.failure) -> Never {
    printError("replica-machine: \(message)")
    exit(code)
}

/// The network a fork is made with (`MachineNetwork.forFork`); one that cannot be had is a usage
/// error, before anything is made.
func forkNetwork(_ name: String, _ lines: [String]) -> Machines.Network? {
    do { return try MachineNetwork.forFork(name, lines) } catch { fail("\(error)", ExitCode.usage) }
}

func report(_ text: String, _ members: [(String, JSON)]) {
    if asJSON { JSONEnvelope.print(tool: "replica-machine", action: arguments.command, members) } else { print(text) }
}

/// The `[Network]` lines the options give: a profile's section (`--network PROFILE`) or
/// `--bridge`/`--subnet`; the namespace is always the machine's own (`m-NAME`). Empty: none.
func networkLines() -> [String] {
    if let bridge = arguments.value("bridge") {
        guard let subnet = arguments.value("subnet") else { fail("--bridge needs --subnet CIDR (the bridge's subnet)", ExitCode.usage) }
        guard arguments.value("network") == nil else { fail("give --network PROFILE or --bridge/--subnet, not both", ExitCode.usage) }
        return ["Bridge=\(bridge)", "Subnet=\(subnet)"]
    }
    guard let name = arguments.value("network") else { return [] }
    let loaded: Profile?
    do { loaded = try ProfileLoader().load(name) } catch { fail("\(error)", ExitCode.usage) }
    guard let profile = loaded else {
        fail("no profile \(name): looked for \(ProfileLoader().searchedPaths(name).joined(separator: ", "))", ExitCode.notConfigured)
    }
    let lines = profile.settings.filter { $0.section == "Network" && !["Namespace", "HostLink"].contains($0.key) }.map { "\($0.key)=\($0.value)" }
    guard !lines.isEmpty else { fail("profile \(name) has no [Network] section to give the machine", ExitCode.usage) }
    return lines
}

/// Set `name`, from the set directories (`--sets`, else the system's); a usage error when it is
/// broken, exit 6 when no file names it.
func loadSet(_ name: String) -> ServiceSet {
    let directories = arguments.all("sets")
    let loader: ProfileLoader = directories.isEmpty ? .sets() : .sets(directories: directories)
    let loaded: ServiceSet?
    do { loaded = try ServiceSet.load(name, loader: loader) } catch { fail("\(error)", ExitCode.usage) }
    guard let set = loaded else { fail("no set \(name): looked for \(loader.searchedPaths(name).joined(separator: ", "))", ExitCode.notConfigured) }
    return set
}

/// The store, opened by the commands that need it (stop does not).
func openStore() throws(ReplicaError) -> Store { try Store(path: arguments.value("store")!) }

do {
    switch arguments.command {
    case "template":
        let name = arguments.positionals.dropFirst().first
        switch arguments.positionals[0] {
        case "import":
            guard let name, arguments.positionals.count == 3 else { fail("usage: replica-machine template import NAME DIR|TARBALL", ExitCode.usage) }
            let template = try Templates.importTemplate(name, from: arguments.positionals[2], into: try openStore())
            report("replica-machine: template \(name) imported from \(arguments.positionals[2])",
                   [("template", .string(name)), ("origin", .string(template.origin)), ("uuid", .string(template.uuid))])
        case "list":
            let opened = try openStore()
            let templates = try Templates.list(in: opened)
            var table = Table(["TEMPLATE", "ORIGIN", "MACHINES"])
            let machines = try Machines.list(in: opened)
            for template in templates {
                table.append([template.name, template.origin, "\(machines.filter { $0.templateUUID == template.uuid }.count)"])
            }
            report(table.description, [("templates", .array(templates.map { template in
                .object([("name", .string(template.name)), ("origin", .string(template.origin)), ("uuid", .string(template.uuid)),
                         ("machines", .array(machines.filter { $0.templateUUID == template.uuid }.map { .string($0.name) }))])
            }))])
        case "remove":
            guard let name else { fail("usage: replica-machine template remove NAME [--force]", ExitCode.usage) }
            try Templates.remove(name, from: try openStore(), force: arguments.flag("force"))
            report("replica-machine: template \(name) removed", [("template", .string(name)), ("removed", .bool(true))])
        default:
            fail("template takes import, list or remove", ExitCode.usage)
        }
    case "fork":
        var seed = Machines.Seed()
        var template = arguments.value("template")
        if let setName = arguments.value("set") {
            // A machine of a set: its template and the set's keys from the set file.
            let set = loadSet(setName)
            guard let member = set.machines.first(where: { $0.name == arguments.positionals[0] }) else {
                fail("set \(setName) has no machine \(arguments.positionals[0]); add Machine=\(arguments.positionals[0]):TEMPLATE to it", ExitCode.usage)
            }
            guard template == nil || template == member.template else {
                fail("set \(setName) forks \(member.name) from \(member.template), not \(template!)", ExitCode.usage)
            }
            template = member.template
            seed.sshKeys = set.sshKeys
        }
        guard let template else { fail("fork needs --template NAME (or --set SET)", ExitCode.usage) }
        seed.hostname = arguments.value("hostname")
        for file in arguments.all("ssh-key") {
            do throws(ReplicaError) { seed.sshKeys += try Machines.Seed.keys(in: file) } catch { fail("--ssh-key \(file): \(error)", ExitCode.usage) }
        }
        seed.address = arguments.value("address")
        seed.gateway = arguments.value("gateway")
        seed.nocloud = arguments.value("seed")
        let name = arguments.positionals[0]
        _ = try MachineName(name)
        let lines = networkLines()
        if !lines.isEmpty && seed.address != nil { fail("--address is for a machine without --network or --bridge (those lease one)", ExitCode.usage) }
        let began = ContinuousClock.now
        let machine = try Machines.fork(name, template: template, seed: seed, network: forkNetwork(name, lines), in: try openStore())
        let address = try NetworkRecord.read(MachineNetwork.owner(name))?.address
        report("replica-machine: \(name) forked from \(template) in \(ContinuousClock.now - began)"
               + (address.map { ", address \($0)" } ?? ""),
               [("machine", .string(name)), ("template", .string(template)), ("path", .string(machine.path)),
                ("address", address.map { .string($0.description) } ?? .null)])
    case "start":
        let name = arguments.positionals[0]
        let opened = try openStore()
        var machine = try Machines.machine(name, in: opened)
        var namespace = arguments.value("namespace")
        let given = networkLines()
        if !given.isEmpty {
            guard namespace == nil else { fail("give --namespace or a network of its own, not both", ExitCode.usage) }
            guard machine.network.isEmpty || machine.network == given else {
                fail("\(name) has a network already (\(machine.network.joined(separator: " "))); start it without one, "
                     + "or remove and fork it again", ExitCode.usage)
            }
            if machine.network.isEmpty { _ = forkNetwork(name, given) }  // checked before it is recorded
            try Machines.recordNetwork(given, of: name, in: opened)
            machine.network = given
        }
        var madeNetwork = false
        if namespace == nil, let made = try MachineNetwork.up(machine) { (namespace, madeNetwork) = made }
        let command = Machines.spawnCommand(machine, networkNamespace: namespace)
        if arguments.flag("foreground") {
            if let pid = MachineProcess.running(name) { fail("\(name) is running already (pid \(pid))") }
            try MachineProcess.record(name, pid: getpid())  // the pid systemd-nspawn keeps
            let argv = command.map { strdup($0) } + [nil]
            execvp(command[0], argv)
            fail("execvp(\(command[0])): \(Errno.current)")
        }
        guard let seconds = Int(arguments.value("wait") ?? "60"), seconds >= 0 else { fail("--wait takes whole seconds", ExitCode.usage) }
        let began = ContinuousClock.now
        let pid: Int32
        do throws(ReplicaError) { pid = try MachineProcess.start(name, command: command, wait: seconds == 0 ? nil : .seconds(seconds)) } catch {
            if madeNetwork { try? MachineNetwork.stop([name]) }
            fail("\(error)")
        }
        print("replica-machine: \(name) \(seconds == 0 ? "started" : "ready in \(ContinuousClock.now - began)") (systemd-nspawn pid \(pid))")
    case "stop":
        // A name that is no machine on the store, and runs nowhere, is not "stopped": exit 6.
        do { _ = try Machines.machine(arguments.positionals[0], in: try openStore()) } catch where error.reason == .notFound {
            if MachineProcess.running(arguments.positionals[0]) == nil { fail("\(error)", ExitCode.notConfigured) }
        }
        try MachineProcess.stop(arguments.positionals[0])
        try MachineNetwork.stop([arguments.positionals[0]])
        print("replica-machine: \(arguments.positionals[0]) stopped")
    case "remove":
        let name = arguments.positionals[0]
        do throws(ReplicaError) {
            try Machines.remove(name, from: try openStore())
        } catch where error.reason == .notFound {
            // No machine: what a fork killed before its end left, if anything — its network and lease.
            guard try MachineNetwork.clear(name, keepLease: false) else { fail("\(error)", ExitCode.notConfigured) }
        }
        try MachineNetwork.clear(name, keepLease: false)
        report("replica-machine: \(name) removed", [("machine", .string(name)), ("removed", .bool(true))])
    case "set":
        let name = arguments.positionals[1]
        let set = loadSet(name)
        switch arguments.positionals[0] {
        case "start":
            guard let seconds = Int(arguments.value("wait") ?? "120"), seconds > 0 else { fail("--wait takes whole seconds", ExitCode.usage) }
            let began = ContinuousClock.now
            let started = try set.start(in: try openStore(), timeout: .seconds(seconds),
                                        network: { member in set.machineNetwork.isEmpty ? nil : forkNetwork(member, set.machineNetwork) },
                                        namespaces: { (machine) throws(ReplicaError) in try MachineNetwork.up(machine)?.namespace })
            print("replica-machine: set \(name): \(set.machines.count) machines ready in \(ContinuousClock.now - began)"
                  + (started.count < set.machines.count ? " (\(set.machines.count - started.count) were running)" : ""))
        case "stop":
            set.stop()
            try MachineNetwork.stop(set.machines.map(\.name))
            print("replica-machine: set \(name) stopped")
        default:
            fail("set takes start or stop", ExitCode.usage)
        }
    default:
        let machines = try Machines.list(in: try openStore())
        var table = Table(["MACHINE", "TEMPLATE", "STATE"])
        for machine in machines { table.append([machine.name, machine.template, MachineProcess.running(machine.name) == nil ? "stopped" : "running"]) }
        report(table.description, [("machines", .array(machines.map { machine in
            .object([("name", .string(machine.name)), ("template", .string(machine.template)), ("path", .string(machine.path)),
                     ("running", .bool(MachineProcess.running(machine.name) != nil))])
        }))])
    }
} catch {
    fail("\(error)", error.reason == .notFound ? ExitCode.notConfigured : ExitCode.failure)
}
