import CReplicaShim
import Glibc
import ReplicaKit

/// A network namespace pinned by name under `/run/netns`, compatible with `ip netns`.
public enum NetworkNamespace {
    /// Where named namespaces are pinned (`ip netns` uses the same directory).
    public static let directory = SandboxPlan.networkNamespaceDirectory

    /// `ip netns add NAME`: a new namespace, pinned by bind-mounting its nsfs file onto
    /// `/run/netns/NAME`. The namespace is made on a dedicated thread, so the caller's stays put.
    /// Where this process's mounts do not reach the host (a hardened unit in a mount namespace of
    /// its own: `SystemdManager.mountsThroughPID1`), PID 1 makes the pin (`SystemdManager.bindMount`) while the thread holds the
    /// namespace. On failure nothing is left behind.
    public static func create(_ name: String) throws(ReplicaError) {
        _ = try NamespaceName(name)
        let byHost = SystemdManager.mountsThroughPID1
        try prepareDirectory(shared: !byHost)
        let path = "\(directory)/\(name)"
        let fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        if fd < 0 {
            let errno = Errno.current
            throw ReplicaError("create netns", [path], errno: errno,
                           hint: errno == .EEXIST ? "a namespace of that name exists; delete it or pick another" : nil)
        }
        Glibc.close(fd)
        do throws(ReplicaError) {
            try DedicatedThread.run { () throws(ReplicaError) in
                _ = try syscall("unshare(CLONE_NEWNET)") { replica_unshare(replica_CLONE_NEWNET) }
                if byHost {
                    try SystemdManager.bindMount("/proc/\(getpid())/task/\(replica_gettid())/ns/net", on: path,
                                                 description: "Network namespace \(name), pinned for replica-net")
                    return
                }
                let tree = OwnedFD(adopting: try syscall("open_tree", "/proc/thread-self/ns/net") {
                    replica_open_tree(AT_FDCWD, "/proc/thread-self/ns/net", replica_OPEN_TREE_CLONE | replica_OPEN_TREE_CLOEXEC)
                })
                _ = try syscall("move_mount", "/proc/thread-self/ns/net", path) {
                    replica_move_mount(tree.rawValue, "", AT_FDCWD, path, replica_MOVE_MOUNT_F_EMPTY_PATH)
                }
            }
        } catch {
            unlink(path)
            throw error
        }
    }

    /// Pins the namespace pinned as `existing` under the name `name` too (a second bind mount of
    /// its nsfs file, `mount --bind /run/netns/EXISTING /run/netns/NAME`): a namespace renamed while
    /// its processes run is pinned as both, then `delete`d under the old name. On failure nothing
    /// is left.
    public static func pin(_ existing: String, as name: String) throws(ReplicaError) {
        _ = try NamespaceName(existing)
        _ = try NamespaceName(name)
        let (from, path) = ("\(directory)/\(existing)", "\(directory)/\(name)")
        guard list().contains(existing) else {
            throw ReplicaError("pin netns", [from], errno: .ENOENT, hint: "no namespace of that name to pin again")
        }
        let fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        if fd < 0 {
            let errno = Errno.current
            throw ReplicaError("pin netns", [path], errno: errno, hint: errno == .EEXIST ? "a namespace of that name exists" : nil)
        }
        Glibc.close(fd)
        do throws(ReplicaError) {
            if SystemdManager.mountsThroughPID1 {
                try SystemdManager.bindMount(from, on: path, description: "Network namespace \(name), pinned for replica-net")
                return
            }
            let tree = OwnedFD(adopting: try syscall("open_tree", from) {
                replica_open_tree(AT_FDCWD, from, replica_OPEN_TREE_CLONE | replica_OPEN_TREE_CLOEXEC)
            })
            _ = try syscall("move_mount", from, path) { replica_move_mount(tree.rawValue, "", AT_FDCWD, path, replica_MOVE_MOUNT_F_EMPTY_PATH) }
        } catch {
            unlink(path)
            throw error
        }
    }

    /// `ip netns del NAME`: unpins the namespace (it ends when its last process leaves). Deleting a
    /// namespace that does not exist is not an error. Where this process's mounts do not reach the
    /// host, PID 1 unmounts the pin (`SystemdManager.unmount`).
    public static func delete(_ name: String) throws(ReplicaError) {
        _ = try NamespaceName(name)
        let path = "\(directory)/\(name)"
        if SystemdManager.mountsThroughPID1 {
            if SystemdManager.isMountPoint(path) { try SystemdManager.unmount(path) }
        } else if umount2(path, Int32(MNT_DETACH)) != 0 && ![.EINVAL, .ENOENT].contains(Errno.current) {
            throw ReplicaError.current("umount2", [path])
        }
        if unlink(path) != 0 && Errno.current != .ENOENT { throw ReplicaError.current("unlink", [path]) }
    }

    /// The names pinned under `/run/netns`, like `ip netns list`.
    public static func list() -> [String] {
        guard let fd = try? OwnedFD.open(directory, O_RDONLY | O_DIRECTORY) else { return [] }
        return ((try? DirectoryEntries.names(in: fd)) ?? []).sorted()
    }

    /// Runs `body` in a child process that has joined the namespace (`ip netns exec`).
    public static func run<Result: ChildTransferable>(
        in name: String, _ body: () throws(ReplicaError) -> Result
    ) throws(ReplicaError) -> Result {
        _ = try NamespaceName(name)
        let path = "\(directory)/\(name)"
        return try ChildProcess.run { () throws(ReplicaError) in
            try SandboxMounter.joinNetworkNamespace(path)
            return try body()
        }
    }

    /// `socket(family, type, protocol)` made inside the namespace, on a dedicated thread that
    /// joined it: the socket acts there for as long as it lives, whichever thread uses it; the
    /// caller's thread never changes namespace.
    public static func socket(in name: String, family: Int32, type: Int32, protocol: Int32 = 0) throws(ReplicaError) -> OwnedFD {
        _ = try NamespaceName(name)
        let path = "\(directory)/\(name)"
        let fd = try DedicatedThread.run { () throws(ReplicaError) -> Int32 in
            try SandboxMounter.joinNetworkNamespace(path)
            return try syscall("socket", path) { Glibc.socket(family, type, `protocol`) }
        }
        return OwnedFD(adopting: fd)
    }

    /// Makes `/run/netns` exist and, with `shared`, be a shared mount point, as `ip netns add`
    /// does, so pins made later propagate into mount namespaces created earlier. (Pins PID 1 makes
    /// are in its namespace, where `/run` is shared already.)
    static func prepareDirectory(shared: Bool = true) throws(ReplicaError) {
        if mkdir(directory, 0o755) != 0 && Errno.current != .EEXIST {
            throw ReplicaError.current("mkdir", [directory])
        }
        guard shared else { return }
        if Glibc.mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) == 0 { return }
        guard Errno.current == .EINVAL else { throw ReplicaError.current("mount(MS_SHARED)", [directory]) }
        guard Glibc.mount(directory, directory, "none", UInt(MS_BIND | MS_REC), nil) == 0 else {
            throw ReplicaError.current("mount(MS_BIND)", [directory])
        }
        guard Glibc.mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) == 0 else {
            throw ReplicaError.current("mount(MS_SHARED)", [directory])
        }
    }
}
