// replica-bench: Replica's primitives against the command a user would run instead, in one run.
// Run as root for the btrfs figures: swift run -c release replica-bench
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

func benchmarkSnapshots() throws -> [Comparison] {
    var template = Array("/tmp/replica-bench-XXXXXX".utf8CString)
    let dir = String(cString: mkdtemp(&template)!)
    defer { _ = try? Command.run(["rm", "-rf", "--one-file-system", dir]) }
    let mountPoint = "\(dir)/mnt"
    mkdir(mountPoint, 0o700)
    try LoopImage.create(at: "\(dir)/store.img", size: 1 << 30)
    let mounted = try LoopImage.mount("\(dir)/store.img", at: mountPoint)
    defer { try? mounted.unmount() }
    let store = try Store(path: mountPoint)
    try store.ensureSubvolume("src")
    try store.root.writeFileAtomically("src/data", contents: [UInt8](repeating: 7, count: 1 << 20))
    let source = try store.directory("src")
    let top = try store.directory(".")

    let iterations = 40
    let ours = try nanosecondsPerOperation(iterations: iterations) { i in
        try Btrfs.snapshot(source, into: top, named: "lib-\(i)", readOnly: true, sourcePath: "src", parentPath: mountPoint)
    }
    let command = try nanosecondsPerOperation(iterations: iterations) { i in
        try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(mountPoint)/src", "\(mountPoint)/cmd-\(i)"])
    }
    for name in try DirectoryEntries.names(in: top) where name.hasPrefix("lib-") || name.hasPrefix("cmd-") {
        try Btrfs.deleteSubvolume(in: top, named: name, parentPath: mountPoint)
    }
    return [Comparison(operation: "read-only snapshot of a 1 MiB subvolume", replica: ours,
                       tool: "btrfs subvolume snapshot -r:", toolTime: command)]
}

var uts = utsname()
uname(&uts)
let release = withUnsafeBytes(of: uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
print("replica-bench: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, Linux \(release); median of 5 rounds; "
      + "the usual tool is a whole process, as a user runs it")
Comparison.printHeader()
do {
    for row in try benchmarkResolution() { row.printRow() }
    if (try? Capabilities.current().has(.sysAdmin)) == true {
        for row in try benchmarkSnapshots() { row.printRow() }
    } else {
        print("(btrfs figures skipped: they need root for the loop-mounted image)")
    }
} catch {
    print("replica-bench: \(error)")
    exit(1)
}
