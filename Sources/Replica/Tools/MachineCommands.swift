import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// One parsed invocation of `replica-machine`.
struct MachineCommand {
    let arguments: ParsedArguments
    init(_ arguments: ParsedArguments) { self.arguments = arguments }

    /// The store, opened by the commands that need it (stop does not).
    func openStore() throws(ReplicaError) -> Store { try Store(path: arguments.value("store")!) }

    func run() throws(ReplicaError) -> ToolOutput {
        switch arguments.command {
        case "template": return try template()
        case "fork": return try fork()
        case "start": return try start()
        case "stop": return try stop()
        case "remove": return try remove()
        case "set": return try set()
        case "console": return try console()
        case "pool": return try pool()
        case "claim": return try claim()
        default: return try list()
        }
    }

    /// The `[Network]` lines the options give: a profile's section (`--network PROFILE`) or
    /// `--bridge`/`--subnet`. Empty: none.
    func networkLines() throws(ReplicaError) -> [String] {
        if let parent = arguments.value("macvlan") {
            guard arguments.value("bridge") == nil && arguments.value("network") == nil else {
                throw .usage("give --macvlan IFACE, --bridge or --network, one of them")
            }
            return ["Macvlan=\(parent)"] + (arguments.value("address").map { ["Address=\($0)"] } ?? [])
                + (arguments.value("gateway").map { ["Gateway=\($0)"] } ?? [])
        }
        if let bridge = arguments.value("bridge") {
            guard let subnet = arguments.value("subnet") else { throw .usage("--bridge needs --subnet CIDR (the bridge's subnet)") }
            guard arguments.value("network") == nil else { throw .usage("give --network PROFILE or --bridge/--subnet, not both") }
            return ["Bridge=\(bridge)", "Subnet=\(subnet)"]
        }
        return try arguments.value("network").map { (name) throws(ReplicaError) in try MachinePlan.network(fromProfile: name) } ?? []
    }

    /// The limits the options give (`--memory-max 1G` …), as the set file's keys take them.
    func limits() throws(ReplicaError) -> MachineLimits {
        var limits = MachineLimits()
        for (option, key, _, _) in MachineTool.limitOptions {
            if let value = arguments.value(option) { try limits.set(key, value) }
        }
        return limits
    }

    /// Set `name`, from the set directories (`--sets`, else the system's); a usage error when it is
    /// broken, exit 6 when no file names it.
    func loadSet(_ name: String) throws(ReplicaError) -> ServiceSet {
        let directories = arguments.all("sets")
        let loader: ProfileLoader = directories.isEmpty ? .sets() : .sets(directories: directories)
        let loaded: ServiceSet?
        do throws(ReplicaError) { loaded = try ServiceSet.load(name, loader: loader) } catch { throw error.because(.usage) }
        guard let set = loaded else { throw .notConfigured("no set \(name): looked for \(loader.searchedPaths(name).joined(separator: ", "))") }
        return set
    }

    func template() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals.dropFirst().first
        switch arguments.positionals[0] {
        case "import":
            guard let name, arguments.positionals.count == 3 else { throw .usage("usage: replica-machine template import NAME DIR|TARBALL") }
            var vm: VMImage? = nil
            if arguments.flag("vm") {
                var settings = Record()
                for (key, option) in [("Machine", "machine"), ("Memory", "memory"), ("CPUs", "cpus"), ("Firmware", "firmware")] { try settings.append(key, arguments.value(option)!) }
                vm = try VMImage(settings)
            }
            guard let diskSize = parseByteSize(arguments.value("disk-size")!), diskSize >= 64 << 20 else {
                throw .usage("--disk-size \(arguments.value("disk-size")!): a size of at least 64M (4G, 20G)")
            }
            let (template, findings) = try Templates.importTemplate(name, from: arguments.positionals[2], into: try openStore(),
                                                                    strict: arguments.flag("strict"), minimal: arguments.flag("minimal"), vm: vm, diskSize: diskSize,
                                                                    check: !arguments.flag("no-check"))
            // What every fork gets as it is: said, never silently kept (all of it with --json).
            var lines = ["replica-machine: template \(name) imported from \(arguments.positionals[2])"]
            if arguments.flag("minimal"), let vm = template.vm {
                lines.append(vm.hasInitrd ? "replica-machine: its units are trimmed; it keeps its initrd: its kernel cannot mount the root by itself (that needs ext4 and virtio-blk or, on a q35, NVMe built in)"
                                          : "replica-machine: its units are trimmed, and it boots without its initrd: its kernel mounts \(vm.root) (\(vm.diskBus.rawValue)) itself")
            }
            if !findings.isEmpty {
                lines.append("replica-machine: it holds \(findings.count) device node(s), set-ID file(s), FIFO(s) or socket(s) every fork gets "
                             + "(--strict refuses them):")
                lines += findings.prefix(10).map { "  \($0)" } + (findings.count > 10 ? ["  … \(findings.count - 10) more (--json lists all)"] : [])
            }
            return ToolOutput(lines.joined(separator: "\n"), [("template", .string(name)), ("origin", .string(template.origin)), ("uuid", .string(template.uuid)),
                ("findings", .array(findings.map { .object([("path", .string($0.path)), ("what", .string($0.what)),
                                                            ("mode", .string(String($0.mode, radix: 8))), ("owner", .int(Int64($0.owner))),
                                                            ("group", .int(Int64($0.group)))]) }))])
        case "list":
            let opened = try openStore()
            let templates = try Templates.list(in: opened), machines = try Machines.list(in: opened)
            var table = Table(["TEMPLATE", "KIND", "ORIGIN", "MACHINES", "POOL"])
            var listed: [JSON] = []
            for template in templates {
                let forks = machines.filter { $0.templateUUID == template.uuid }.map(\.name)
                // Its pool: how many wait ready of the size it keeps.
                let pool = try MachinePool.settings(template.name, in: opened).map { (settings) throws(ReplicaError) in
                    (size: settings.size, ready: try MachinePool.members(template.name, in: opened).filter(\.ready).count)
                }
                table.append([template.name, kindText(template.vm), template.origin, "\(forks.count)", pool.map { "\($0.ready)/\($0.size) ready" } ?? "-"])
                listed.append(.object([("name", .string(template.name)), ("origin", .string(template.origin)), ("uuid", .string(template.uuid)),
                                       ("machines", .array(forks.map(JSON.string))),
                                       ("pool", pool.map { .object([("size", .int(Int64($0.size))), ("ready", .int(Int64($0.ready)))]) } ?? .null)]
                                      + kindJSON(template.vm)))
            }
            return ToolOutput(table.description, [("templates", .array(listed))])
        case "remove":
            guard let name else { throw .usage("usage: replica-machine template remove NAME [--force]") }
            try Templates.remove(name, from: try openStore(), force: arguments.flag("force"))
            return ToolOutput("replica-machine: template \(name) removed", [("template", .string(name)), ("removed", .bool(true))])
        default:
            throw .usage("template takes import, list or remove")
        }
    }

    /// The keys of every `--ssh-key FILE`; a file that cannot be read is a usage error.
    func sshKeys() throws(ReplicaError) -> [String] {
        var keys: [String] = []
        for file in arguments.all("ssh-key") {
            do throws(ReplicaError) { keys += try Machines.Seed.keys(in: file) } catch { throw .usage("--ssh-key \(file): \(error)") }
        }
        return keys
    }

    func fork() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals[0]
        var seed = Machines.Seed()
        seed.hostname = arguments.value("hostname")
        seed.sshKeys = try sshKeys()
        if arguments.value("macvlan") == nil { (seed.address, seed.gateway) = (arguments.value("address"), arguments.value("gateway")) }
        seed.nocloud = arguments.value("seed")
        let users = try arguments.value("private-users").map { (text) throws(ReplicaError) in try MachineUsers(text) }
        let plan = try MachinePlan(name, template: arguments.value("template"), seed: seed, network: try networkLines(),
                                   users: users, limits: try limits(), set: try arguments.value("set").map { (set) throws(ReplicaError) in try loadSet(set) })
        let began = ContinuousClock.now
        let (machine, address) = try plan.fork(in: try openStore())
        return ToolOutput("replica-machine: \(name) forked from \(plan.template) in \(ContinuousClock.now - began)" + (address.map { ", address \($0)" } ?? "")
                          + (machine.users == .host ? "; no user namespace (--private-users=no): its root is the host's" : ""),
                          [("machine", .string(name)), ("template", .string(plan.template)), ("path", .string(machine.path)),
                           ("address", address.map(JSON.string) ?? .null), ("users", .string(machine.users?.description ?? "")),
                           ("limits", limitsJSON(machine.limits))])
    }

    func start() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals[0], wait = try arguments.seconds("wait")!
        let opened = try openStore()
        _ = try Machines.machine(name, in: opened)  // exit 6 before anything is recorded
        if let pid = MachineProcess.running(name) {
            throw ReplicaError("start machine", [name], errno: .EBUSY, hint: "it is running already (pid \(pid))", reason: .busy)
        }
        let limits = try limits()
        var machine = try Machines.prepareStart(name, limits: limits, in: opened)
        var namespace = arguments.value("namespace")
        let given = try networkLines()
        if !given.isEmpty {
            guard namespace == nil else { throw .usage("give --namespace or a network of its own, not both") }
            guard machine.network.isEmpty || machine.network == given else {
                throw .usage("\(name) has a network already (\(machine.network.joined(separator: " "))); start it without one, or remove and fork it again")
            }
            if machine.network.isEmpty { try MachinePlan.check(network: given, of: name) }
            try Machines.recordNetwork(given, of: name, in: opened)
            machine.network = given
        }
        var madeNetwork = false
        if namespace == nil, let made = try MachineNetwork.up(machine) { (namespace, madeNetwork) = made }
        if arguments.flag("foreground"), let vm = machine.vm {
            let status = try VirtualMachine.runForeground(machine, vm, timeout: wait == .zero ? .seconds(120) : wait)
            guard status.isSuccess else { throw ReplicaError("run machine", [name], errno: .ECHILD, hint: "\(QEMU.program) \(status)") }
            return ToolOutput("replica-machine: \(name) powered off", [("machine", .string(name)), ("stopped", .bool(true))])
        }
        if arguments.flag("foreground") {
            let placement = MachinePlacement.current(for: name, foreground: true)
            let command = Machines.spawnCommand(machine, networkNamespace: namespace, placement: placement)
            let filters = NspawnSeccomp.programs(for: command)  // taken before this process enters the machine's cgroup
            try placement.prepare(name, limits: machine.limits)?.enter()
            if let namespace { try SandboxMounter.joinNetworkNamespace("\(SandboxPlan.networkNamespaceDirectory)/\(namespace)") }
            try MachineProcess.record(name, pid: getpid())  // the pid systemd-nspawn keeps
            if let filters, NspawnSeccomp.load(filters) {
                setenv(NspawnSeccomp.environment.0, NspawnSeccomp.environment.1, 1)
            }
            let argv = command.map { strdup($0) } + [nil]
            execvp(command[0], argv)
            throw .current("execvp", [command[0]])
        }
        let began = ContinuousClock.now
        let pid: Int32
        do throws(ReplicaError) { pid = try MachineProcess.start(machine, networkNamespace: namespace, wait: wait == .zero ? nil : wait) } catch {
            if madeNetwork { try? MachineNetwork.stop([name]) }
            throw error
        }
        return ToolOutput("replica-machine: \(name) \(wait == .zero ? "started" : "ready in \(ContinuousClock.now - began)") (\(machine.vm == nil ? "systemd-nspawn" : QEMU.program) pid \(pid))",
                          [("machine", .string(name)), ("pid", .int(Int64(pid))), ("ready", .bool(wait != .zero)),
                           ("namespace", namespace.map(JSON.string) ?? .null)])
    }

    /// A name that is no machine on the store, and runs nowhere, is not "stopped": exit 6.
    func stop() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals[0]
        do throws(ReplicaError) { _ = try Machines.machine(name, in: try openStore()) } catch where error.reason == .notFound {
            if MachineProcess.running(name) == nil { throw error }
        }
        try MachineProcess.stop(name)
        try MachineNetwork.stop([name])
        return ToolOutput("replica-machine: \(name) stopped", [("machine", .string(name)), ("stopped", .bool(true))])
    }

    func console() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals[0], listen = arguments.value("listen")!
        let machine = try Machines.machine(name, in: try openStore())
        try VMConsole.open(name, listen: listen, vm: machine.vm)
        return ToolOutput("replica-machine: \(name)'s console on ws://\(listen)/ (noVNC connects there; closed when it stops)",
                          [("machine", .string(name)), ("listen", .string(listen)), ("vnc", .string(QEMU.runtimePath(name, "vnc")))])
    }

    func pool() throws(ReplicaError) -> ToolOutput {
        if arguments.flag("refill") { usleep(MachinePool.refillDelay) }
        let template = arguments.positionals[0]
        let opened = try openStore()
        let recorded = try MachinePool.settings(template, in: opened)
        let network = try networkLines()
        if let size = arguments.value("size") {
            guard let count = Int(size) else { throw .usage("--size \(size): a count of machines (0 to 1000)") }
            try MachinePool.configure(template, MachinePool.Settings(size: count, limits: (recorded?.limits ?? MachineLimits()).overridden(by: try limits()),
                                                                     network: network.isEmpty ? recorded?.network ?? [] : network),
                                      in: opened)
        } else if recorded == nil {
            throw ReplicaError("machine pool", [template], errno: .ENOENT, hint: "no pool of that template; make one: replica-machine pool \(template) --size N",
                               reason: .notFound)
        }
        let began = ContinuousClock.now
        let (started, removed) = try MachinePool.fill(template, in: opened)
        let members = try MachinePool.members(template, in: opened)
        let ready = members.filter(\.ready).map(\.name)
        let size = try MachinePool.settings(template, in: opened)?.size ?? 0
        return ToolOutput("replica-machine: pool \(template): \(ready.count) ready" + (started.isEmpty ? "" : ", \(started.count) booted in \(ContinuousClock.now - began)")
                          + (removed.isEmpty ? "" : ", \(removed.count) removed"),
                          [("template", .string(template)), ("size", .int(Int64(size))),
                           ("ready", .array(ready.map(JSON.string))), ("started", .array(started.map(JSON.string))), ("removed", .array(removed.map(JSON.string)))])
    }

    func claim() throws(ReplicaError) -> ToolOutput {
        guard let template = arguments.value("template") else { throw .usage("claim needs --template NAME (the pool's)") }
        let request = try MachinePool.Claim(arguments.positionals[0], hostname: arguments.value("hostname"), sshKeys: try sshKeys())
        let opened = try openStore()
        let began = ContinuousClock.now
        let (machine, member, address) = try MachinePool.claim(request, template: template, in: opened)
        let took = ContinuousClock.now - began
        let refill = arguments.flag("no-refill") ? nil : try refillInBackground(template, store: opened.path)
        return ToolOutput("replica-machine: \(machine.name) claimed from the pool of \(template) in \(took) (it booted as \(member))"
                          + (address.map { ", address \($0)" } ?? "")
                          + (refill.map { "; a replacement is booting (\($0.said))" } ?? ""),
                          [("machine", .string(machine.name)), ("template", .string(template)), ("was", .string(member)),
                           ("hostname", .string(machine.hostname)), ("machine_id", machine.machineID.map(JSON.string) ?? .null),
                           ("address", address.map(JSON.string) ?? .null),
                           ("pid", MachineProcess.running(machine.name).map { .int(Int64($0)) } ?? .null),
                           ("leader", MachineProcess.leader(machine.name).map { .int(Int64($0)) } ?? .null),
                           ("milliseconds", .double(Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15)), ("refill_pid", refill.map { .int(Int64($0.pid)) } ?? .null),
                           ("refill", refill.map { .string($0.said) } ?? .null)])
    }

    /// Starts `replica-machine pool TEMPLATE --refill` without waiting for it, outliving this
    /// command: where systemd runs, as a transient unit of its own (`systemd-run`: the caller's unit
    /// or session ending does not end it; its output in the journal), else in a session of its own,
    /// its output in `/run/replica/pools/TEMPLATE.log`. Returns the pid started and where to read
    /// what it did.
    func refillInBackground(_ template: String, store: String) throws(ReplicaError) -> (pid: Int32, said: String) {
        let pool = [Command.beside("replica-machine"), "pool", template, "--refill", "--store", store]
        if Systemd.isBooted {
            let unit = "replica-pool-fill-\(template)-\(String(UInt32.random(in: .min ... .max), radix: 16))"
            let pid = try Command.spawn(["systemd-run", "--quiet", "--no-block", "--collect", "--unit=\(unit)"] + pool, newSession: true)
            return (pid, "journalctl -u \(unit)")
        }
        try createDirectories(MachinePool.logDirectory, mode: 0o700)
        let log = try OwnedFD.open("\(MachinePool.logDirectory)/\(template).log", O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
        return (try Command.spawn(pool, output: log.rawValue, newSession: true), "\(MachinePool.logDirectory)/\(template).log")
    }

    /// No machine: what a fork killed before its end left, if anything — its network and lease.
    func remove() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals[0]
        do throws(ReplicaError) { try Machines.remove(name, from: try openStore()) } catch where error.reason == .notFound {
            guard try MachineNetwork.clear(name, keepLease: false) else { throw error }
        }
        try MachineNetwork.clear(name, keepLease: false)
        return ToolOutput("replica-machine: \(name) removed", [("machine", .string(name)), ("removed", .bool(true))])
    }

    func set() throws(ReplicaError) -> ToolOutput {
        let name = arguments.positionals[1]
        let set = try loadSet(name)
        switch arguments.positionals[0] {
        case "start":
            let timeout = try arguments.seconds("wait", minimum: 1)!
            let began = ContinuousClock.now
            let started = try set.start(in: try openStore(), timeout: timeout)
            return ToolOutput("replica-machine: set \(name): \(set.machines.count) machines ready in \(ContinuousClock.now - began)"
                              + (started.count < set.machines.count ? " (\(set.machines.count - started.count) were running)" : ""),
                              [("set", .string(name)), ("machines", .array(set.machines.map { .string($0.name) })),
                               ("started", .array(started.map(JSON.string)))])
        case "stop":
            set.stop()
            try Firewall.update(name, nil)
            if let zone = try set.names() { try BridgeNames.stop(zone.bridge) }
            try MachineNetwork.stop(set.machines.map(\.name))
            if let bridge = MachineNetwork.bridge(of: set.machineNetwork) { try NetworkPlan.removeBridgeIfUnused(bridge) }  // the one its start made
            return ToolOutput("replica-machine: set \(name) stopped", [("set", .string(name)), ("stopped", .bool(true))])
        default:
            throw .usage("set takes start or stop")
        }
    }

    func list() throws(ReplicaError) -> ToolOutput {
        let machines = try Machines.list(in: try openStore())
        var table = Table(["MACHINE", "TEMPLATE", "KIND", "STATE", "USERS", "LIMITS"])
        var listed: [JSON] = []
        for machine in machines {
            let running = MachineProcess.running(machine.name) != nil
            let users = machine.users.map { if case .range(let base) = $0 { "\(base):\(MachineUsers.size)" } else { "host" } } ?? "-"
            let state = machine.pool == nil ? (running ? "running" : "stopped") : (running ? "pooled" : "pooled, stopped")
            table.append([machine.name, machine.template, kindText(machine.vm), state, users, machine.limits.summary])
            listed.append(.object([("name", .string(machine.name)), ("template", .string(machine.template)), ("path", .string(machine.path)),
                                   ("running", .bool(running)), ("users", .string(machine.users?.description ?? "")),
                                   ("limits", limitsJSON(machine.limits)), ("machine_id", machine.machineID.map(JSON.string) ?? .null),
                                   ("pool", machine.pool.map(JSON.string) ?? .null)]
                                  + kindJSON(machine.vm)))
        }
        return ToolOutput(table.description, [("machines", .array(listed))])
    }

    /// `container`, or `vm q35 1G×2` (machine type, UEFI if so, memory, CPUs).
    func kindText(_ vm: VMImage?) -> String {
        vm.map { "vm \($0.machineType.rawValue)\($0.firmware == .uefi ? " uefi" : "") \(formatByteSize($0.memory << 20))×\($0.cpus)" } ?? "container"
    }

    /// `"kind"` and `"vm"` (null for a container) as `--json` gives them.
    func kindJSON(_ vm: VMImage?) -> [(String, JSON)] {
        [("kind", .string(vm == nil ? "container" : "vm")),
         ("vm", vm.map { .object([("machine", .string($0.machineType.rawValue)), ("memory", .string(formatByteSize($0.memory << 20))),
                                  ("cpus", .int(Int64($0.cpus))), ("tpm", .bool($0.tpm)),
                                  ("firmware", .string($0.firmware.rawValue)), ("disk", .string($0.diskBus.rawValue)),
                                  ("initrd", .bool($0.hasInitrd))]) } ?? .null)]
    }

    /// A machine's limits as `--json` gives them: `{"MemoryMax": "536870912", …}`.
    func limitsJSON(_ limits: MachineLimits) -> JSON {
        .object(limits.settings.map { ($0.key, .string($0.value)) })
    }
}
