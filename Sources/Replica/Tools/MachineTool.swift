import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// `replica-machine`: containers forked from copy-on-write templates on the store, identity reset,
/// seeded, booted with systemd-nspawn and ready when their own systemd says so. Every step is one
/// call of `MachinePlan`, `Templates`, `Machines`, `MachineProcess` or `MachineNetwork`.
public enum MachineTool: Tool {
    static let store = OptionSpec.option("store", "path", "The mounted btrfs store.", default: EmbeddedStore.defaultMountPoint)
    static let machineName = PositionalSpec("name", "The machine (also its hostname).")
    static let sets = OptionSpec.option("sets", "dir", "A set directory, lowest priority first.", repeatable: true, hidden: true)
    static let network: [OptionSpec] = [
        .option("network", "profile", "Its network: the [Network] section of this profile (a namespace of its own, a veth on its bridge, a leased address)."),
        .option("bridge", "name", "Instead: a veth on this bridge (made when missing)."),
        .option("subnet", "cidr", "With --bridge: the bridge's subnet; the machine's address is leased from it."),
        .option("macvlan", "interface", "Instead: on the LAN, a macvlan of this host interface; its address from the LAN's DHCP server (the guest's own client), or --address."),
    ]
    /// The options that set a machine's limits, and the set file's key each is.
    /// The options that set a machine's limits: option, the set file's key it sets, its value, its help.
    static let limitOptions = [
        ("memory-max", "MemoryMax", "size", "Its memory at most (MemoryMax=, 512M, 2G); recorded, kept across starts."),
        ("tasks-max", "TasksMax", "count", "Its processes and threads at most (TasksMax=)."),
        ("cpu-weight", "CPUWeight", "weight", "Its CPU share, 1-10000, 100 the default (CPUWeight=)."),
        ("cpu-quota", "CPUQuota", "percent", "Its CPU time at most, in percent of one CPU (CPUQuota=, 150%)."),
        ("io-weight", "IOWeight", "weight", "Its block I/O share, 1-10000 (IOWeight=)."),
    ]
    static let limits = limitOptions.map { OptionSpec.option($0.0, $0.2, $0.3) }
    public static let spec = ToolSpec(
        name: "replica-machine",
        abstract: "Fork containers and VMs from copy-on-write templates, seed them and boot them with systemd-nspawn or QEMU.",
        discussion: "Exit codes: 0 ok, 1 failure, 2 usage, 3 lock held, 6 no such template or machine.",
        commands: [
            CommandSpec("template", "Templates: import NAME DIR|TARBALL, list, remove NAME.",
                        options: [store, .flag("force", "remove: even while machines forked from it exist."),
                                  .flag("strict", "import: refuse a root holding device nodes, set-ID files, FIFOs or sockets (reported either way)."),
                                  .flag("minimal", "import: trim the boot: mask the units and generators a container (or VM) never needs, keep the journal in memory; a VM boots without its initrd when its kernel can mount the root itself."),
                                  .flag("vm", "import: a VM template: the root as a raw disk with its kernel and initrd, booted once to check it says READY."),
                                  .option("machine", "type", "import --vm: QEMU's machine type, q35 (TPM, display) or microvm.", default: "q35"),
                                  .option("firmware", "kind", "import --vm: bios, or uefi (q35; its variables kept, each fork's its own).", default: "bios"),
                                  .option("memory", "size", "import --vm: the guest's memory.", default: "1G"),
                                  .option("cpus", "count", "import --vm: its virtual CPUs.", default: "2"),
                                  .option("disk-size", "size", "import --vm: its disk's size (sparse: unused space costs nothing).", default: "4G"),
                                  .flag("no-check", "import --vm: do not boot it once to check it.")],
                        positionals: [PositionalSpec("action", "import, list or remove."), PositionalSpec("template", "The template.", optional: true),
                                      PositionalSpec("source", "import: a root file system folder, or a tarball of one; with --vm also a raw or qcow2 disk image.", optional: true)]),
            CommandSpec("fork", "Fork a machine from a template: a writable snapshot, its identity reset, its seed laid.", options: [
                store, .option("template", "name", "The template to fork."),
                .option("set", "name", "Fork it as a machine of this service set: its template and the set's SSH keys from the set file."), sets,
                .option("hostname", "name", "Its hostname (default: its name)."),
                .option("ssh-key", "file", "A public key root may log in with.", repeatable: true),
                .option("address", "cidr", "Its address, for a static network-config (10.88.0.5/24); with --macvlan, set on it."),
                .option("gateway", "ip", "Its default gateway, with --address."),
                .option("seed", "dir", "A NoCloud folder (meta-data, user-data …) to lay instead."),
                .option("private-users", "base|no", "Its user namespace's host range (a free one by default); no: none, its root is the host's."),
            ] + network + limits, positionals: [machineName]),
            CommandSpec("start", "Boot the machine, in the network it was forked with; with --wait, return once its systemd is ready.", options: [
                store, .option("wait", "seconds", "Wait this long for READY (0: do not wait).", default: "60"),
                .option("namespace", "name", "Join this network namespace instead (/run/netns/NAME, e.g. from replica-net up)."),
            ] + network + limits + [.flag("foreground", "Run systemd-nspawn in place (what replica-machine@.service does).")], positionals: [machineName]),
            CommandSpec("stop", "Power the machine off (kill it after 30 s), then remove its veth and namespace (its address stays leased to it).",
                        options: [store], positionals: [machineName]),
            CommandSpec("remove", "Remove a stopped machine, its data and its network (its address given back).", options: [store],
                        positionals: [machineName]),
            CommandSpec("list", "The machines, their templates, whether they run, their user ranges and limits.", options: [store]),
            CommandSpec("pool", "A template's warm pool: machines forked and booted ahead of demand. Records --size (and limits), then forks, boots or removes machines until the pool has that many ready.",
                        options: [store, .option("size", "count", "How many machines the pool keeps booted (0: none; the pool goes)."),
                                  .flag("refill", "A claim's refill (what claim starts): begin 0.1 s later, so the machine just claimed runs its first commands alone.")]
                            + network.filter { $0.name != "macvlan" } + limits,
                        positionals: [PositionalSpec("template", "The template.")]),
            CommandSpec("claim", "Hand out a ready machine of a template's pool under this name, its hostname and SSH keys applied in it; a replacement starts booting in the background.",
                        options: [store, .option("template", "name", "The template whose pool to claim from."),
                                  .option("hostname", "name", "Its hostname (default: its name)."),
                                  .option("ssh-key", "file", "A public key root may log in with.", repeatable: true),
                                  .flag("no-refill", "Do not start a replacement.")],
                        positionals: [machineName]),
            CommandSpec("console", "A running q35 VM's display for a browser: a websocket endpoint (noVNC) started on the first connection, closed when the machine stops.",
                        options: [store, .option("listen", "host:port", "Where the websocket listens (anyone reaching it has the guest's console).", default: "127.0.0.1:6080")],
                        positionals: [machineName]),
            CommandSpec("set", "Service sets (/etc/replica/sets/NAME.conf): start forks and boots them all at once, ready when all are; stop.",
                        options: [store, .option("wait", "seconds", "start: how long all may take to be ready.", default: "120"), sets],
                        positionals: [PositionalSpec("action", "start or stop."), PositionalSpec("set", "The set.")]),
        ])

    /// A machine or template that is not there is not configured (exit 6).
    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        do throws(ReplicaError) { return try MachineCommand(arguments).run() } catch where error.reason == .notFound { throw error.because(.notConfigured) }
    }
}
