import BenchmarkSupport
import Glibc
import Replica
import ReplicaKit
import ReplicaNet
import ReplicaStore

/// How costs grow with the number of services, machines and snapshots: each operation at three
/// sizes, as a total and per item. Linear means the cost per item stays flat as the count grows
/// tenfold; the last column is the per-item cost at the largest size over that at the smallest
/// (1.0 linear, 10 quadratic).
func benchmarkScale() throws {
    print("replica-bench scale: cost at each size; per item; growth = per item at the largest size ÷ at the smallest (1 = linear)")
    var rows: [(String, [Int], [Double])] = []
    func row(_ name: String, _ sizes: [Int], _ measure: (Int) throws -> Double) rethrows {
        let totals = try sizes.map(measure)
        rows.append((name, sizes, totals))
        printScaleRow(name, sizes, totals)
    }
    let services = [10, 100, 1000]
    try row("replica-generator, whole process", services) { try generatorRun(profiles: $0) }
    try row("lease one address with N held", services) { try leaseWithHeld($0) }
    try withBenchmarkStore(size: 6 << 30) { store, mountPoint in
        var snapRuns: [String: [Double]] = [:]
        for size in services {  // the three measured together at each size, on the same filesystem
            for (name, time) in try snapRun(services: size, mountPoint: mountPoint) { snapRuns[name, default: []].append(time) }
        }
        for name in snapRunRows { rows.append((name, services, snapRuns[name]!)); printScaleRow(name, services, snapRuns[name]!) }
        try row("replica-machine list --json with N machines", services) { try machineList(machines: $0, store: store, mountPoint: mountPoint) }
        try row("list one service's 10 snapshots among N services'", services) { try listOneAmong(services: $0, store: store) }
        let snapshotCounts = [1_000, 10_000, 100_000]
        var made = 0
        try store.ensureSubvolume("history")
        let start: Int64 = 1_600_000_000
        try row("list N snapshots, each verified ours", snapshotCounts) { count in
            while made < count {  // hourly, going back from the start
                try store.snapshot("history", at: UTCTimestamp(secondsSinceEpoch: start + Int64(made) * 3600))
                made += 1
            }
            return try nanosecondsPerOperation(iterations: 1, rounds: 3) { _ in
                let listed = try store.inventory(of: "history").snapshots.count
                precondition(listed == count)
            }
        }
        try printManyMachinesAtOnce(store: store)
        let policy = try RetentionPolicy.parse("preserve 24h 14d 8w 12m *y")
        row("retention plan over N snapshots (decide only)", snapshotCounts) { count in
            let times = (0..<count).map { UTCTimestamp(secondsSinceEpoch: start + Int64($0) * 3600) }
            let now = UTCTimestamp(secondsSinceEpoch: start + Int64(count) * 3600)
            return nanosecondsPerOperation(iterations: 1, rounds: 3) { _ in
                precondition(Retention.decide(times, policy: policy, now: now).count == count)
            }
        }
    }
}

/// 50 machines forked from the end-to-end suite's template and started at once: the time until all
/// are READY and how many failed (also alone: `replica-bench fifty`, without the scale group's minutes).
func printManyMachinesAtOnce(store: borrowing Store) throws {
    let instances = (try? OwnedFD.open("/proc/sys/fs/inotify/max_user_instances", O_RDONLY).readLine()) ?? "?"
    if (Int(instances) ?? 0) < 1024 {
        // Each guest's systemd takes inotify instances: most of the 50 would fail to boot.
        print("  50 machines at once: skipped, fs.inotify.max_user_instances is \(instances); the package sets 1048576 "
              + "(sysctl -p /usr/lib/sysctl.d/60-replica.conf)")
    } else if let rootfs = cachedRoot(skipping: "  50 machines at once") {
        _ = try Templates.importTemplate("debian12", from: rootfs, into: store)
        let fifty = try forkAndBootAtOnce(50, template: "debian12", store: store)
        print("  50 machines forked and started at once: all READY in \(formatDuration(fifty.time)), \(fifty.failures) failed "
              + "(goal: under 15 s, none; fs.inotify.max_user_instances \(instances), the package's 1048576)")
    }
}

func printScaleRow(_ name: String, _ sizes: [Int], _ totals: [Double]) {
    let cells = zip(sizes, totals).map { "\($0): \(formatDuration($1)) (\(formatDuration($1 / Double($0)))/item)" }
    let growth = (totals.last! / Double(sizes.last!)) / (totals.first! / Double(sizes.first!))
    print("  \(pad(name, 50)) \(cells.joined(separator: "  "))  growth \(format3(growth))")
}

/// A temporary folder, removed after `body`.
func withScratchFolder<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
    return try body(dir)
}

/// `count` profiles like an operator's (state, sandbox, snapshot policy) in `dir/profiles`.
func writeProfiles(_ count: Int, in dir: String) throws {
    mkdir("\(dir)/profiles", 0o755)
    for i in 0..<count {
        let text = """
            [State]
            Path=/var/lib/app\(i)
            [Sandbox]
            ProtectSystem=strict
            PrivateTmp=yes
            [Snapshots]
            Preserve=24h 14d
            """
        try OwnedFD.open("\(dir)/profiles/app\(i).service.conf", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(text.utf8))
    }
}

/// The generator over `profiles` profiles, a whole process as systemd runs it at each reload.
func generatorRun(profiles: Int) throws -> Double {
    try withScratchFolder { dir in
        try writeProfiles(profiles, in: dir)
        var round = 0
        return try nanosecondsPerOperation(iterations: 1, rounds: 5) { _ in
            round += 1
            mkdir("\(dir)/out\(round)", 0o755)
            try Command.check([Command.beside("replica-generator"), "--profiles", "\(dir)/profiles", "\(dir)/out\(round)"])
        }
    }
}

/// One more lease in a pool already holding `held` (what `replica-net up` does for a service).
func leaseWithHeld(_ held: Int) throws -> Double {
    try withScratchFolder { dir in
        let pool = try AddressPool(subnet: try IPPrefix("10.200.0.0/20"), root: dir)
        for i in 0..<held { _ = try pool.lease(for: "held\(i)") }
        var round = 0
        return try nanosecondsPerOperation(iterations: 1, rounds: 9) { _ in
            round += 1
            _ = try pool.lease(for: "new\(round)")
            try pool.release("new\(round)")
        }
    }
}

/// The rows of `snapRun`: the tool as a timer runs it, the same one subvolume at a time, and the
/// usual tool's snapshots alone, one `btrfs` process per service as a shell loop runs them.
let snapRunRows = ["replica-snap run over N services, one process", "  the same with --jobs 1 (one at a time)",
                   "  btrfs subvolume snapshot -r, N processes (no prune)"]

/// `replica-snap run` over `services` subvolumes with profiles, each snapshot taken, pruned, and
/// the metrics file updated in one process as a timer over every service would, by default and
/// with `--jobs 1`; then btrfs's own loop. Each run but the first deletes the snapshots the run
/// before it took; each run is timed after btrfs's cleaner has removed what the last one deleted
/// (`btrfs subvolume sync`), as an hourly timer finds it; each figure is the median of 3 runs.
func snapRun(services: Int, mountPoint: String) throws -> [(String, Double)] {
    try withScratchFolder { dir in
        try writeProfiles(services, in: dir)
        let store = try Store(path: mountPoint)
        for i in 0..<services { try store.ensureSubvolume("app\(i)") }
        var second = 0  // all in one hour: each run after the first deletes the one before it (Preserve=24h)
        func timed(_ arguments: [String]) throws -> Double {
            median(try (0..<3).map { _ in
                try Command.check(["btrfs", "subvolume", "sync", mountPoint])
                second += 1
                let now = UTCTimestamp(secondsSinceEpoch: 1_767_225_600 + Int64(second)).description
                let start = monotonicNanoseconds()
                try Command.check([Command.beside("replica-snap"), "run", "--profiles", "\(dir)/profiles", "--store", mountPoint,
                                   "--metrics-file", "\(dir)/replica.prom", "--now", now] + arguments + (0..<services).map { "app\($0)" })
                return Double(monotonicNanoseconds() - start)
            })
        }
        let byDefault = try timed([]), oneAtATime = try timed(["--jobs", "1"])
        try Command.check(["btrfs", "subvolume", "sync", mountPoint])
        mkdir("\(mountPoint)/by-btrfs", 0o755)
        let start = monotonicNanoseconds()
        for i in 0..<services {
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(mountPoint)/app\(i)", "\(mountPoint)/by-btrfs/app\(i)"])
        }
        let byBtrfs = Double(monotonicNanoseconds() - start)
        for i in 0..<services {
            let snapshots = try store.snapshots(of: "app\(i)")
            _ = try store.delete(snapshots, of: "app\(i)")
            try Btrfs.deleteSubvolume(in: try store.directory("by-btrfs"), named: "app\(i)", parentPath: "\(mountPoint)/by-btrfs")
            try Btrfs.deleteSubvolume(in: try store.directory("."), named: "app\(i)", parentPath: mountPoint)
        }
        rmdir("\(mountPoint)/by-btrfs")
        try Command.check(["btrfs", "subvolume", "sync", mountPoint])
        return zip(snapRunRows, [byDefault, oneAtATime, byBtrfs]).map { ($0, $1) }
    }
}

/// Listing one service's 10 snapshots when `services` services were snapshotted in turn, ten
/// rounds, as timers do: its snapshots' ids are spread among all the others'. The cost should follow
/// its own 10, not the store's `services` × 10 (a total that stays flat: growth per item 0.01).
func listOneAmong(services: Int, store: borrowing Store) throws -> Double {
    for i in 0..<services { try store.ensureSubvolume("many\(i)") }
    for round in 0..<10 {
        for i in 0..<services { try store.snapshot("many\(i)", at: UTCTimestamp(secondsSinceEpoch: 1_700_000_000 + Int64(round) * 3600)) }
    }
    let time = try nanosecondsPerOperation(iterations: 5, rounds: 3) { _ in
        let listed = try store.inventory(of: "many0").snapshots.count
        precondition(listed == 10)
    }
    for i in 0..<services {
        let failures = try store.delete(try store.snapshots(of: "many\(i)"), of: "many\(i)")
        precondition(failures.isEmpty)
        try Btrfs.deleteSubvolume(in: try store.directory("."), named: "many\(i)", parentPath: store.path)
    }
    return time
}

/// `replica-machine list --json` with `machines` machines forked from a small template.
func machineList(machines: Int, store: borrowing Store, mountPoint: String) throws -> Double {
    if (try? store.directory("\(Templates.directory)/tiny")) == nil {
        try withScratchFolder { dir in
            for folder in ["etc", "usr", "usr/lib"] { mkdir("\(dir)/\(folder)", 0o755) }
            try OwnedFD.open("\(dir)/usr/lib/os-release", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("ID=tiny\n".utf8))
            _ = try Templates.importTemplate("tiny", from: dir, into: store)
        }
    }
    let existing = try Machines.list(in: store).count
    for i in existing..<machines { _ = try Machines.fork("m\(i)", template: "tiny", in: store) }
    return try nanosecondsPerOperation(iterations: 1, rounds: 5) { _ in
        try Command.check([Command.beside("replica-machine"), "list", "--json", "--store", mountPoint])
    }
}
