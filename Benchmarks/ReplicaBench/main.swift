// replica-bench: Replica's primitives against the command a user would run instead, in one run.
// Run as root for the btrfs figures: swift run -c release replica-bench [GROUP...]
// Groups: resolution, snapshots, sandbox, generator, migration, confinement, volume, replication, machines, pool, vms
// (default: all); scale (minutes) and fifty (its 50 machines at once) only when named.
import BenchmarkSupport
import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaStore

func benchmarkResolution() throws -> [Comparison] {
    // root/a/b/c/d/e/file, reached through an absolute and a relative symlink: 6 components, 2 links.
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
    let root = "\(dir)/root"
    var path = root
    for name in ["", "a", "b", "c", "d", "e"] {
        path += name.isEmpty ? "" : "/\(name)"
        mkdir(path, 0o755)
    }
    close(open("\(path)/file", O_CREAT | O_WRONLY, 0o644))
    symlink("/a/b", "\(root)/abs")
    symlink("c/d", "\(root)/a/b/rel")
    let query = "abs/rel/e/file"

    let confined = try RootDirectory(root)
    var results: [Comparison] = []
    let command = try nanosecondsPerOperation(iterations: 100) { _ in
        _ = try Command.run(["realpath", "\(root)/\(query)"], captureOutput: false)
    }
    let methods: [(String, ResolveMethod)] =
        (RootDirectory.hasOpenat2 ? [("openat2", ResolveMethod.openat2)] : []) + [("component walk", .componentWalk)]
    for (label, method) in methods {
        let ours = try nanosecondsPerOperation(iterations: 20_000) { _ in
            _ = try confined.open(query, .regularFile, method: method)
        }
        results.append(Comparison(operation: "resolve in root, 6 parts, 2 symlinks (\(label))",
                                  replica: ours, tool: "realpath:", toolTime: command))
    }
    return results
}

/// A throwaway loop-mounted btrfs image of `size` bytes for one benchmark.
func withBenchmarkStore<T>(size: Int64, _ body: (borrowing Store, String) throws -> T) throws -> T {
    try withScratchFolder { dir in
        let mountPoint = "\(dir)/mnt"
        mkdir(mountPoint, 0o700)
        try LoopImage.create(at: "\(dir)/store.img", size: size)
        let mounted = try LoopImage.mount("\(dir)/store.img", at: mountPoint)
        defer { try? mounted.unmount() }
        return try body(try Store(path: mountPoint), mountPoint)
    }
}

/// Snapshot cost against subvolume size: empty vs 1 GiB of data, library vs `btrfs` command.
func benchmarkSnapshots() throws -> [Comparison] {
    try withBenchmarkStore(size: 3 << 30) { store, mountPoint in
        try store.ensureSubvolume("empty")
        try store.ensureSubvolume("full")
        let chunk = [UInt8](repeating: 0x5a, count: 1 << 20)
        let file = try store.root.fd.reopen(O_RDONLY | O_DIRECTORY).openat("full/data", O_WRONLY | O_CREAT, mode: 0o644)
        for _ in 0..<1024 { try file.writeAll(chunk) }
        fsync(file.rawValue)
        sync()  // write the image file back now, so snapshots are timed, not the writeback of fresh data
        let top = try store.directory(".")
        // Empty and full alternate within each round, so both see the same machine and filesystem
        // state (a block of one then a block of the other measures drift as much as size).
        let empty = try store.directory("empty"), full = try store.directory("full")
        var ours: [[Double]] = [[], []], command: [[Double]] = [[], []]
        for round in 0..<60 {
            for which in 0..<2 {
                let name = which == 0 ? "empty" : "full"
                var began = monotonicNanoseconds()
                if which == 0 {
                    try Btrfs.snapshot(empty, into: top, named: "\(name)-lib-\(round)", readOnly: true, sourcePath: name, parentPath: mountPoint)
                } else {
                    try Btrfs.snapshot(full, into: top, named: "\(name)-lib-\(round)", readOnly: true, sourcePath: name, parentPath: mountPoint)
                }
                ours[which].append(Double(monotonicNanoseconds() - began))
                began = monotonicNanoseconds()
                try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(mountPoint)/\(name)", "\(mountPoint)/\(name)-cmd-\(round)"])
                command[which].append(Double(monotonicNanoseconds() - began))
            }
        }
        return (0..<2).map { which in
            Comparison(operation: "read-only snapshot, \(which == 0 ? "empty" : "1 GiB") subvolume", replica: median(ours[which]),
                       tool: "btrfs subvolume snapshot -r:", toolTime: median(command[which]))
        }
    }
}

/// Listing and deleting 1,000 snapshots, and a whole `replica-snap create` process.
func benchmarkSnapshotSets() throws -> [Comparison] {
    try withBenchmarkStore(size: 1 << 30) { store, mountPoint in
        try store.ensureSubvolume("svc")
        let start: Int64 = 1_700_000_000
        for i in 0..<1000 { try store.snapshot("svc", at: UTCTimestamp(secondsSinceEpoch: start + Int64(i) * 3600)) }
        var rows: [Comparison] = []
        let list = try nanosecondsPerOperation(iterations: 5) { _ in
            let count = try store.inventory(of: "svc").snapshots.count
            precondition(count == 1000)
        }
        let listCommand = try nanosecondsPerOperation(iterations: 5) { _ in
            _ = try Command.check(["btrfs", "subvolume", "list", "-s", "-u", "-q", mountPoint])
        }
        rows.append(Comparison(operation: "list 1,000 snapshots with info, verified ours", replica: list,
                               tool: "btrfs subvolume list -s -u -q:", toolTime: listCommand))
        let tool = Command.beside("replica-snap")
        let linked = linkage(of: tool)  // the package's tools are static; `swift build` alone makes dynamic ones
        let listTool = try nanosecondsPerOperation(iterations: 5) { _ in
            _ = try Command.check([tool, "list", "--store", mountPoint, "--json", "svc"])
        }
        rows.append(Comparison(operation: "replica-snap list --json, 1,000 snapshots (whole \(linked) process)", replica: listTool,
                               tool: "btrfs subvolume list -s -u -q:", toolTime: listCommand))

        // Deleting: ours by verified ID, then the same count by the btrfs command in one process.
        let snapshots = try store.snapshots(of: "svc")
        let began = monotonicNanoseconds()
        let failures = try store.delete(snapshots, of: "svc")
        let ours = Double(monotonicNanoseconds() - began)
        precondition(failures.isEmpty)
        let parent = "\(mountPoint)/\(Store.snapshotsDirectory)/svc"
        for i in 0..<1000 {
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(mountPoint)/svc", "\(parent)/c\(i)"])
        }
        let commandStart = monotonicNanoseconds()
        try Command.check(["btrfs", "-q", "subvolume", "delete"] + (0..<1000).map { "\(parent)/c\($0)" })
        let command = Double(monotonicNanoseconds() - commandStart)
        rows.append(Comparison(operation: "delete 1,000 snapshots (each re-verified)", replica: ours,
                               tool: "btrfs subvolume delete (x1000, 1 proc):", toolTime: command))

        // A whole process each, as a timer runs it: with the textfile on the host filesystem (where
        // /var/lib/replica/metrics is in production), without it, and btrfs, taking turns in each
        // round so all three see the same machine. btrfs's snapshots go to a folder of their own, as a
        // user's would: in the subvolume's snapshot folder each would be one more entry to classify.
        // Each starts on a host filesystem written back (`syncfs`, untimed), as a timer's runs do
        // minutes apart: back to back, the last textfile would still be unwritten, and replacing it
        // cheaper than it ever is in production.
        let metrics = "\(mountPoint)/../metrics/replica.prom"
        let elsewhere = "\(mountPoint)/by-btrfs"
        mkdir(elsewhere, 0o700)
        let host = try OwnedFD.open("\(mountPoint)/..", O_RDONLY | O_DIRECTORY)
        var timings: [[Double]] = [[], [], []]
        for round in 0..<120 {  // many: a snapshot waits on the disk, whose latency wanders
            let commands = [
                [tool, "create", "--store", mountPoint, "--metrics-file", metrics,
                 "--now", UTCTimestamp(secondsSinceEpoch: start + Int64(round) * 60).description, "svc"],
                [tool, "create", "--store", mountPoint, "--metrics-file", "",
                 "--now", UTCTimestamp(secondsSinceEpoch: start + 100_000 + Int64(round) * 60).description, "svc"],
                ["btrfs", "-q", "subvolume", "snapshot", "-r", "\(mountPoint)/svc", "\(elsewhere)/p\(round)"],
            ]
            // Each first, second and third in turn: a fixed order would time each in one position
            // (right after btrfs's commit, say) every round.
            for which in (0..<3).map({ ($0 + round) % 3 }) {
                let command = commands[which]
                replica_syncfs(host.rawValue)
                let began = monotonicNanoseconds()
                try Command.check(command)
                timings[which].append(Double(monotonicNanoseconds() - began))
            }
        }
        let medians = timings.map(median)
        rows.append(Comparison(operation: "replica-snap create (whole \(linked) process, with metrics)", replica: medians[0],
                               tool: "btrfs subvolume snapshot -r:", toolTime: medians[2]))
        rows.append(Comparison(operation: "replica-snap create (whole \(linked) process, no metrics)", replica: medians[1],
                               tool: "btrfs subvolume snapshot -r:", toolTime: medians[2]))
        return rows
    }
}


if CommandLine.arguments.count == 5 && CommandLine.arguments[1] == filterProbe { runFilterProbe(Array(CommandLine.arguments.dropFirst(2))) }

var uts = utsname()
uname(&uts)
let release = withUnsafeBytes(of: uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
print("replica-bench: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, Linux \(release); median of 5 rounds; "
      + "the usual tool is a whole process, as a user runs it")
Comparison.printHeader()
let groups = Array(CommandLine.arguments.dropFirst())
func wanted(_ group: String) -> Bool { groups.isEmpty || groups.contains(group) }
writeToolsAgainAsInstalled(in: splitPath(Command.beside("replica-bench")).directory)  // the tools it times, as installed
do {
    if wanted("resolution") { for row in try benchmarkResolution() { row.printRow() } }
    if wanted("generator") { for row in try benchmarkGenerator() { row.printRow() } }
    if (try? Capabilities.current().has(.sysAdmin)) == true {
        if wanted("snapshots") {
            for row in try benchmarkSnapshots() { row.printRow() }
            for row in try benchmarkSnapshotSets() { row.printRow() }
        }
        if wanted("sandbox") {
            for row in try benchmarkSandbox() { row.printRow() }
            for row in try benchmarkRecursiveReadOnly() { row.printRow() }
        }
        if wanted("migration") { for row in try benchmarkMigration() { row.printRow() } }
        if wanted("confinement") { for row in try benchmarkConfinement() { row.printRow() } }
        if wanted("volume") { for row in try benchmarkVolume() { row.printRow() } }
        if wanted("replication") { for row in try benchmarkReplication() { row.printRow() } }
        if wanted("machines") { for row in try benchmarkMachines() { row.printRow() } }
        if wanted("pool") { for row in try benchmarkPool() { row.printRow() } }
        if wanted("vms") { for row in try benchmarkVirtualMachines() { row.printRow() } }
        if groups.contains("scale") { try benchmarkScale() }  // minutes (100,000 snapshots): only when asked
        if groups.contains("fifty") { try withBenchmarkStore(size: 6 << 30) { store, _ in try printManyMachinesAtOnce(store: store) } }
    } else {
        print("(btrfs and sandbox figures skipped: they need root)")
    }
} catch {
    print("replica-bench: \(error)")
    exit(1)
}
