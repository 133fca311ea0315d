import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaStore
import Synchronization

/// Makes a fresh directory `/tmp/replica-test-XXXXXX`, runs `body` with its path, then removes it
/// (never crossing into a filesystem still mounted below it).
public func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/replica-test-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw ReplicaError.current("mkdtemp", ["/tmp/replica-test-XXXXXX"]) }
    let path = String(cString: made)
    defer { removeTree(path) }
    return try body(path)
}

/// `rm -rf --one-file-system PATH`, after `chattr -i -a` where plain removal fails: a state path
/// sealed by Replica holds an immutable placeholder, which not even root can remove as it is.
public func removeTree(_ path: String) {
    if (try? Command.run(["rm", "-rf", "--one-file-system", path]).status.isSuccess) == true { return }
    _ = try? Command.run(["chattr", "-R", "-f", "-i", "-a", path])
    _ = try? Command.run(["rm", "-rf", "--one-file-system", path])
}

/// A loop-mounted btrfs image for one test: made in a temporary directory, formatted, mounted on
/// `DIR/mnt`, handed to `body`, then unmounted (which detaches its autoclear loop device) and removed,
/// whether `body` returns or throws.
public func withBtrfsImage<T>(size: Int64 = 256 << 20, _ body: (MountedImage) throws -> T) throws -> T {
    try withTemporaryDirectory { directory in
        let image = "\(directory)/store.img"
        let mountPoint = "\(directory)/mnt"
        guard mkdir(mountPoint, 0o700) == 0 else { throw ReplicaError.current("mkdir", [mountPoint]) }
        try LoopImage.create(at: image, size: size)
        let mounted = try LoopImage.mount(image, at: mountPoint)
        defer { try? mounted.unmount() }
        return try body(mounted)
    }
}

/// A network namespace pinned as `/run/netns/replica-test-PID-N` for one test, deleted afterwards.
public func withThrowawayNetworkNamespace<T>(_ body: (String) throws -> T) throws -> T {
    let name = "replica-test-\(getpid())-\(NamespaceCounter.next())"
    try NetworkNamespace.create(name)
    defer { try? NetworkNamespace.delete(name) }
    return try body(name)
}

/// Unique suffixes for fixture names within one test process.
enum NamespaceCounter {
    private static let value = Atomic<Int>(0)
    static func next() -> Int { value.add(1, ordering: .relaxed).newValue }
}

/// A tool built next to the test runner (`swift build --build-tests` builds both into one folder).
public func builtTool(_ name: String) throws -> String {
    let path = Command.beside(name)
    guard access(path, X_OK) == 0 else {
        throw ReplicaError("access", [path], errno: .ENOENT, hint: "build it first: swift build --build-tests")
    }
    return path
}

extension StateMigration {
    /// The owner tests migrate as: one unit, the state path itself.
    public static func shift(_ name: String, from source: String, in store: borrowing Store) throws(ReplicaError) -> Outcome {
        try shift(name, from: source, owner: StateOwner(unit: "test.service", path: source), in: store)
    }
}

/// The repository's top folder (where Package.swift is), for tests that read Docs/ or fixtures.
public let repositoryRoot = String(#filePath.dropLast("Tests/ReplicaTestSupport/Fixtures.swift".count))
