import BenchmarkSupport
import CReplicaShim
import Glibc
import ReplicaKit

/// The reference sandbox of these figures: private mount namespace, rslave, recursive read-only
/// root, a tmpfs and three binds (two read-only, one writable).
func referencePlan(_ dir: String) -> SandboxPlan {
    var plan = SandboxPlan()
    plan.temporaryDirectories = [TemporaryDirectory("\(dir)/view/tmp", mode: 0o1777, size: 1 << 20)]
    plan.binds = [
        Bind("\(dir)/a", to: "\(dir)/view/a", readOnly: true),
        Bind("\(dir)/b", to: "\(dir)/view/b", readOnly: true),
        Bind("\(dir)/c", to: "\(dir)/view/c", readOnly: false),
    ]
    return plan
}

/// Sandbox setup in-process (timed inside a child, from unshare to the last mount) and whole
/// processes of `bwrap` and `unshare` doing the same or less.
func benchmarkSandbox() throws -> [Comparison] {
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
    for d in ["a", "b", "c", "view", "view/tmp", "view/a", "view/b", "view/c"] { mkdir("\(dir)/\(d)", 0o755) }
    let plan = referencePlan(dir)
    // On a dedicated thread, as replica-run sets up its own namespace before exec (no fork, so no
    // copy-on-write faults in the measurement); the namespace and its mounts end with the thread.
    // Ours and C's take turns in five blocks of 40, so a drift in the machine's speed falls on both.
    let inC = try SandboxInC(dir)
    var ours: [Double] = [], sameCalls: [Double] = [], mountsOnly: [Double] = []
    for _ in 0..<5 {
        var inside: [Double] = []
        for _ in 0..<40 {
            let nanoseconds = try DedicatedThread.run { () throws(ReplicaError) -> Int in
                let began = monotonicNanoseconds()
                try SandboxMounter.enterPrivateMountNamespace()
                try SandboxMounter.apply(plan)
                return Int(monotonicNanoseconds() - began)
            }
            inside.append(Double(nanoseconds))
        }
        ours.append(median(inside))
        if let inC { sameCalls.append(try inC.run("same")); mountsOnly.append(try inC.run("bare")) }
    }
    let setup = median(ours)
    // replica-run of /bin/true as a whole process, with a profile giving the same plan; the three
    // commands take turns in each round.
    mkdir("\(dir)/profiles", 0o755)
    let profile = """
        [Sandbox]
        TemporaryFileSystem=\(dir)/view/tmp:mode=1777,size=1M
        BindReadOnlyPaths=\(dir)/a:\(dir)/view/a \(dir)/b:\(dir)/view/b
        BindPaths=\(dir)/c:\(dir)/view/c
        """
    try OwnedFD.open("\(dir)/profiles/bench.service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(profile.utf8))
    // The same work as unshare: a private mount namespace (rslave) and nothing mounted.
    try OwnedFD.open("\(dir)/profiles/bare.service.conf", O_WRONLY | O_CREAT, mode: 0o644)
        .writeAll(Array("[Sandbox]\nProtectSystem=no\n".utf8))
    let commands = [
        [Command.beside("replica-run"), "--profiles", "\(dir)/profiles", "bench", "--", "/bin/true"],
        ["bwrap", "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--tmpfs", "\(dir)/view/tmp",
         "--ro-bind", "\(dir)/a", "\(dir)/view/a", "--ro-bind", "\(dir)/b", "\(dir)/view/b", "--bind", "\(dir)/c", "\(dir)/view/c", "/bin/true"],
        ["unshare", "-m", "--propagation", "slave", "/bin/true"],
        [Command.beside("replica-run"), "--profiles", "\(dir)/profiles", "bare", "--", "/bin/true"],
    ]
    var runs: [[Double]] = [[], [], [], []]
    for _ in 0..<60 {
        for (which, command) in commands.enumerated() {
            let began = monotonicNanoseconds()
            try Command.check(command)
            runs[which].append(Double(monotonicNanoseconds() - began))
        }
    }
    let medians = runs.map(median)
    // As after a reboot: a copy of each program, dropped from the page cache, is read back by its
    // first start's faults, a few pages at a time (an install writes a file whole). Copies, so the
    // programs themselves stay as they were for the rows above in the next run.
    let pair = try [commands[3], commands[2]].map { command in
        let copy = "\(dir)/\(splitPath(command[0]).name)"
        try Command.check(["cp", command[0].hasPrefix("/") ? command[0] : Command.path(of: command[0]) ?? command[0], copy])
        evictFromPageCache(copy)
        return [copy] + command.dropFirst()
    }
    var evicted: [[Double]] = [[], []]
    for _ in 0..<60 {
        for (which, command) in pair.enumerated() {
            let began = monotonicNanoseconds()
            try Command.check(command)
            evicted[which].append(Double(monotonicNanoseconds() - began))
        }
    }
    let limits = inC == nil ? [] : [
        Comparison(operation: "sandbox setup in-process (ns, ro root, tmpfs, 3 binds)", replica: setup,
                   tool: "the same system calls in C:", toolTime: median(sameCalls)),
        Comparison(operation: "sandbox setup in-process (ns, ro root, tmpfs, 3 binds)", replica: setup,
                   tool: "the mounts alone in C (no checks):", toolTime: median(mountsOnly)),
    ]
    return limits + [
        Comparison(operation: "replica-run /bin/true (whole process, same mounts)", replica: medians[0],
                   tool: "bwrap, same mounts:", toolTime: medians[1]),
        Comparison(operation: "replica-run /bin/true (whole process, same mounts)", replica: medians[0],
                   tool: "unshare -m --propagation slave (no mounts):", toolTime: medians[2]),
        Comparison(operation: "replica-run /bin/true (private mount ns only)", replica: medians[3],
                   tool: "unshare -m --propagation slave:", toolTime: medians[2]),
        Comparison(operation: "the same, each program read back by its start", replica: median(evicted[0]),
                   tool: "unshare -m --propagation slave:", toolTime: median(evicted[1])),
        Comparison(operation: "sandbox setup in-process (ns, ro root, tmpfs, 3 binds)", replica: setup,
                   tool: "bwrap, same mounts (whole process):", toolTime: medians[1]),
    ]
}

/// Recursive read-only over 1,000 mounts: one `mount_setattr` against a remount of each mount (what
/// `mount -o remount,ro,bind` does per mount, here in-process), in a child's private namespace.
func benchmarkRecursiveReadOnly() throws -> [Comparison] {
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
    func measure(_ newAPI: Bool) throws -> Double {
        var runs: [Double] = []
        for _ in 0..<5 {
            runs.append(Double(try ChildProcess.run { () throws(ReplicaError) -> Int in
                try SandboxMounter.enterPrivateMountNamespace()
                _ = try syscall("mount(tmpfs)", dir) { mount("replica-bench", dir, "tmpfs", 0, nil) }
                for i in 0..<1000 {
                    mkdir("\(dir)/m\(i)", 0o755)
                    _ = try syscall("mount(tmpfs)", "\(dir)/m\(i)") { mount("replica-bench", "\(dir)/m\(i)", "tmpfs", 0, nil) }
                }
                let began = monotonicNanoseconds()
                if newAPI {
                    _ = try syscall("mount_setattr", dir) {
                        replica_mount_setattr(AT_FDCWD, dir, UInt32(replica_AT_RECURSIVE), replica_MOUNT_ATTR_RDONLY, 0, 0)
                    }
                } else {
                    for entry in try MountInfo.read() where entry.mountPoint.hasPrefix(dir) {
                        _ = try syscall("mount(MS_REMOUNT)", entry.mountPoint) {
                            mount(nil, entry.mountPoint, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil)
                        }
                    }
                }
                return Int(monotonicNanoseconds() - began)
            }))
        }
        return runs.sorted()[runs.count / 2]
    }
    return [Comparison(operation: "recursive read-only, 1,001 mounts (mount_setattr)", replica: try measure(true),
                       tool: "remount walk, in-process:", toolTime: try measure(false))]
}
