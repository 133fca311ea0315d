import BenchmarkSupport
import Glibc
import Replica
import ReplicaKit
import ReplicaStore

/// replica-generator over 100 profiles, as systemd runs it at boot (one whole process, writing
/// into a tmpfs as /run/systemd/generator is), against writing the same drop-ins one unit at a
/// time with `replica-shift drop-in` (what an operator ran before there was a generator). The goal
/// is under 20 ms for the whole process.
func benchmarkGenerator(profiles count: Int = 100) throws -> [Comparison] {
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    var outputs = Array("/dev/shm/replica-bench-XXXXXX".utf8CString)
    let out = String(cString: mkdtemp(&outputs)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir, out]) }
    mkdir("\(dir)/profiles", 0o755)
    for i in 0..<count {
        let text = """
            [State]
            Path=/var/lib/app\(i) /var/cache/app\(i)
            SnapshotOnStart=yes
            [Sandbox]
            ProtectSystem=strict
            PrivateTmp=yes
            TemporaryFileSystem=/run/app\(i):mode=0755,size=16M
            BindReadOnlyPaths=-/etc/ssl:/etc/ssl
            InaccessiblePaths=/root /home
            [Snapshots]
            Preserve=24h 14d 8w *m
            Latest=3
            """
        try OwnedFD.open("\(dir)/profiles/app\(i).service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(text.utf8))
    }
    let generator = Command.beside("replica-generator"), shift = Command.beside("replica-shift")
    var round = 0
    func output() -> String {
        round += 1
        let path = "\(out)/\(round)"
        mkdir(path, 0o755)
        return path
    }
    let inProcess = try nanosecondsPerOperation(iterations: 20) { _ in
        _ = try ProfileGenerator(loader: ProfileLoader(directories: ["\(dir)/profiles"])).generate(into: output())
    }
    let process = try nanosecondsPerOperation(iterations: 10) { _ in
        try Command.check([generator, "--profiles", "\(dir)/profiles", output()])
    }
    let oneByOne = try nanosecondsPerOperation(iterations: 1, rounds: 3) { _ in
        for i in 0..<count { _ = try Command.run([shift, "drop-in", "--profiles", "\(dir)/profiles", "app\(i)"], captureOutput: false) }
    }
    return [
        Comparison(operation: "drop-ins for \(count) profiles (replica-generator, whole process)", replica: process,
                   tool: "\(count)× replica-shift drop-in:", toolTime: oneByOne),
        Comparison(operation: "drop-ins for \(count) profiles (in process)", replica: inProcess,
                   tool: "\(count)× replica-shift drop-in:", toolTime: oneByOne),
    ]
}

/// Migrating a service's state onto the store (20,000 files, 500 MB, from another filesystem)
/// against `cp -a --reflink=auto` of the same tree, in the same run.
func benchmarkMigration(files: Int = 20_000, megabytes: Int = 500) throws -> [Comparison] {
    try withBenchmarkStore(size: 3 << 30) { store, mountPoint in
        var template = Array("/var/tmp/replica-bench-XXXXXX".utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
        let perFile = megabytes << 20 / files
        var data = [UInt8](repeating: 0, count: perFile)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 131) }
        for d in 0..<100 {
            mkdir("\(dir)/state", 0o755)
            mkdir("\(dir)/state/d\(d)", 0o755)
            for f in 0..<files / 100 {
                try OwnedFD.open("\(dir)/state/d\(d)/f\(f)", O_WRONLY | O_CREAT, mode: 0o644).writeAll(data)
            }
        }
        var ours: [Double] = [], theirs: [Double] = []
        for round in 0..<3 {
            _ = try Command.run(["sync"])
            var began = monotonicNanoseconds()
            _ = try StateMigration.shift("web\(round)", from: "\(dir)/state",
                                         owner: StateOwner(unit: "web\(round).service", path: "\(dir)/state"), in: store)
            ours.append(Double(monotonicNanoseconds() - began))
            _ = try Command.run(["sync"])
            began = monotonicNanoseconds()
            try Command.check(["cp", "-a", "--reflink=auto", "\(dir)/state", "\(mountPoint)/cp\(round)"])
            _ = try Command.run(["sync", "-f", mountPoint])
            theirs.append(Double(monotonicNanoseconds() - began))
            _ = try Command.run(["rm", "-rf", "--one-file-system", "\(mountPoint)/cp\(round)"])
            try Btrfs.deleteSubvolume(in: try store.directory("."), named: "web\(round)", parentPath: mountPoint)
        }
        return [Comparison(operation: "migrate \(files) files, \(megabytes) MB (copy, verify, sync, publish)",
                           replica: median(ours), tool: "cp -a --reflink=auto + sync:", toolTime: median(theirs))]
    }
}
