import BenchmarkSupport
import CReplicaShim
import Glibc
import ReplicaKit

/// Confinement: replica-run with `@system-service`, an empty bounding set and no_new_privs as a whole
/// process, against bwrap with the same mounts and the same filter (`--seccomp FD`) and plain
/// `unshare -m`; the filters loaded from the cache against compiling them; and what the filter adds
/// to every system call (a getppid loop in a child, before and after loading it).
func benchmarkConfinement() throws -> [Comparison] {
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
    for d in ["a", "b", "c", "view", "view/tmp", "view/a", "view/b", "view/c", "profiles", "cache"] { mkdir("\(dir)/\(d)", 0o700) }
    let confinementText = "SystemCallFilter=@system-service\nCapabilityBoundingSet=\nNoNewPrivileges=yes\n"
    let profile = """
        [Sandbox]
        TemporaryFileSystem=\(dir)/view/tmp:mode=1777,size=1M
        BindReadOnlyPaths=\(dir)/a:\(dir)/view/a \(dir)/b:\(dir)/view/b
        BindPaths=\(dir)/c:\(dir)/view/c
        \(confinementText)
        """
    try OwnedFD.open("\(dir)/profiles/bench.service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(profile.utf8))
    let plan = try SandboxPlan(profile: Profile(unit: "bench.service", files: [], settings: ProfileParser.parse(profile, file: "bench")))
    // bwrap's filter: the same rules, one program (bwrap takes one).
    let programs = try plan.confinement.seccompPrograms()
    try OwnedFD.open("\(dir)/filter.bpf", O_WRONLY | O_CREAT, mode: 0o600).writeAll(programs.flatMap(\.bpf))
    // Warm replica-run's cache as a first start does.
    try Command.check([Command.beside("replica-run"), "--profiles", "\(dir)/profiles", "bench", "--", "/bin/true"])

    let bwrap = ["bwrap", "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--tmpfs", "\(dir)/view/tmp",
                 "--ro-bind", "\(dir)/a", "\(dir)/view/a", "--ro-bind", "\(dir)/b", "\(dir)/view/b", "--bind", "\(dir)/c", "\(dir)/view/c",
                 "--cap-drop", "ALL", "--seccomp", "9", "/bin/true"]
    var runs: [[Double]] = [[], [], []]
    for _ in 0..<60 {
        var began = monotonicNanoseconds()
        try Command.check([Command.beside("replica-run"), "--profiles", "\(dir)/profiles", "bench", "--", "/bin/true"])
        runs[0].append(Double(monotonicNanoseconds() - began))
        began = monotonicNanoseconds()
        try spawnWaiting(bwrap, fd9: "\(dir)/filter.bpf")
        runs[1].append(Double(monotonicNanoseconds() - began))
        began = monotonicNanoseconds()
        try Command.check(["unshare", "-m", "--propagation", "slave", "/bin/true"])
        runs[2].append(Double(monotonicNanoseconds() - began))
    }
    let whole = runs.map(median)

    // Compile against read + load, each in a fresh process as replica-run starts (a child forked
    // from this one would mostly measure copying the pages it writes to).
    // The same for Hardening=service: 14 filters, 7 programs.
    let hardened = "Hardening=service\nUser=nobody\n"
    func probe(_ mode: String, _ text: String) throws -> Double {
        let printed = try Command.check([CommandLine.arguments[0], filterProbe, mode, text, "\(dir)/cache"])
        guard let nanoseconds = Double(printed.split(separator: "\n").first ?? "") else {
            throw ReplicaError("filter probe", errno: .EINVAL, hint: printed)
        }
        return nanoseconds
    }
    var filterRuns: [String: [Double]] = [:]
    for text in [confinementText, hardened] {
        let confinement = try SandboxPlan(profile: Profile(unit: "bench.service", files: [],
                                                           settings: ProfileParser.parse("[Sandbox]\n" + text, file: "bench"))).confinement
        _ = try SeccompCache(directory: "\(dir)/cache").programs(for: confinement)
        _ = try libseccompPrograms(confinement, cache: SeccompCache(directory: "\(dir)/cache"))
    }
    for _ in 0..<50 {
        for text in [confinementText, hardened] {
            for mode in ["compile", "cached", "libseccomp"] where text == confinementText || mode != "compile" {
                filterRuns[mode + text, default: []].append(try probe(mode, text))
            }
        }
    }
    func filters(_ mode: String, _ text: String) -> Double { median(filterRuns[mode + text] ?? []) }

    // Per call: getppid a million times before and after the filter, in one child.
    let perCall = try ChildProcess.run(timeout: .seconds(60)) { () throws(ReplicaError) -> String in
        func loop() -> Double {
            let count = 1_000_000
            let began = monotonicNanoseconds()
            for _ in 0..<count { _ = getppid() }
            return Double(monotonicNanoseconds() - began) / Double(count)
        }
        _ = loop()
        let bare = (0..<5).map { _ in loop() }.sorted()[2]
        _ = replica_set_no_new_privs()
        for filter in programs { try filter.load() }
        let filtered = (0..<5).map { _ in loop() }.sorted()[2]
        return "\(bare) \(filtered)"
    }.split(separator: " ").compactMap { Double($0) }

    return [
        Comparison(operation: "replica-run /bin/true, @system-service, no caps, nnp", replica: whole[0],
                   tool: "bwrap, same mounts, same filter:", toolTime: whole[1]),
        Comparison(operation: "replica-run /bin/true, @system-service, no caps, nnp", replica: whole[0],
                   tool: "unshare -m --propagation slave:", toolTime: whole[2]),
        Comparison(operation: "filters of that profile: read from cache + load", replica: filters("cached", confinementText),
                   tool: "compiled, no cache:", toolTime: filters("compile", confinementText)),
        Comparison(operation: "filters of that profile: read from cache + load", replica: filters("cached", confinementText),
                   tool: "libseccomp's, one per filter, the same way:", toolTime: filters("libseccomp", confinementText)),
        Comparison(operation: "filters of Hardening=service: read from cache + load", replica: filters("cached", hardened),
                   tool: "libseccomp's, one per filter, the same way:", toolTime: filters("libseccomp", hardened)),
        Comparison(operation: "getppid() under the filter (ns per call, \(Int(perCall[1] - perCall[0])) ns added)",
                   replica: perCall[1], tool: "without a filter:", toolTime: perCall[0]),
    ]
}

/// The argument that makes `replica-bench` the filter probe: `replica-bench --filter-probe MODE
/// SECTION CACHE` makes the plan of the `[Sandbox]` section given (untimed), then either reads its
/// filters from the cache folder and loads them (`cached`), does the same with libseccomp's
/// programs of the same filters, one each (`libseccomp`: what Replica loaded before it compiled
/// runs), or compiles them (`compile`), and prints the nanoseconds that took.
let filterProbe = "--filter-probe"

/// The filter probe's work, in a fresh process; never returns.
func runFilterProbe(_ arguments: [String]) -> Never {
    do {
        let plan = try SandboxPlan(profile: Profile(unit: "bench.service", files: [],
                                                    settings: ProfileParser.parse("[Sandbox]\n" + arguments[1], file: "bench")))
        _ = replica_set_no_new_privs()
        let began = monotonicNanoseconds()
        if arguments[0] == "cached" {
            let (filters, cached) = try SeccompCache(directory: arguments[2]).programs(for: plan.confinement)
            precondition(cached, "the probe's filters were not in the cache")
            for filter in filters { try filter.load() }
        } else if arguments[0] == "libseccomp" {
            for filter in try libseccompPrograms(plan.confinement, cache: SeccompCache(directory: arguments[2])) { try filter.load() }
        } else {
            _ = try plan.confinement.seccompPrograms()
        }
        print(monotonicNanoseconds() - began)
        exit(0)
    } catch {
        print("filter probe: \(error)")
        exit(1)
    }
}

/// `confinement`'s filters as libseccomp compiles them, one program each, kept in `cache` beside
/// Replica's own (their key's, suffixed).
func libseccompPrograms(_ confinement: Confinement, cache: SeccompCache) throws -> [SeccompProgram] {
    try cache.programs(key: SeccompCache.key(confinement) + "-libseccomp") { () throws(ReplicaError) in
        try confinement.seccompFilters().map { (filter) throws(ReplicaError) in try SeccompProgram(default: filter.defaultAction, rules: filter.rules) }
    }.programs
}

/// posix_spawnp with `path` open as descriptor 9 (what `bwrap --seccomp 9` reads), then waits.
func spawnWaiting(_ arguments: [String], fd9 path: String) throws {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 9, path, O_RDONLY, 0)
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let result = posix_spawnp(&pid, arguments[0], &actions, nil, argv, environ)
    guard result == 0 else { throw ReplicaError("posix_spawnp", [arguments[0]], errno: Errno(rawValue: result)) }
    let status = try ExitStatus.wait(for: pid)
    guard status == .exited(0) else { throw ReplicaError("bwrap", arguments, errno: .EINVAL, hint: "\(status)") }
}
