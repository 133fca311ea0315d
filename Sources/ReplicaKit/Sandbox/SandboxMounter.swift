import CReplicaShim
import Glibc
import Synchronization

/// Which kernel interface mounts are made with.
public enum MountMethod: Sendable, Equatable {
    /// The new mount API when the kernel has it (5.2; `mount_setattr` 5.12), else `mount(2)`.
    case automatic
    /// `open_tree`, `fsopen`/`fsmount`, `mount_setattr`, `move_mount`.
    case newAPI
    /// `mount(2)` with `MS_BIND`/`MS_REMOUNT`, keeping each mount's existing (possibly locked) flags.
    case legacy
}

/// Applies a `SandboxPlan` to the calling process's mount namespace. Call it in a child (or a
/// thread) that has its own namespace (`enterPrivateMountNamespace`); it refuses to touch the
/// initial one.
public enum SandboxMounter {
    /// `unshare -m --propagation slave`: a private mount namespace for the calling thread whose
    /// mounts receive the host's new mounts but never send any back.
    public static func enterPrivateMountNamespace(method: MountMethod = .automatic) throws(ReplicaError) {
        _ = try syscall("unshare(CLONE_NEWNS)") { replica_unshare(replica_CLONE_NEWNS) }
        enteredNamespace.store(try FileStatus.of("/proc/thread-self/ns/mnt").inode, ordering: .releasing)
        if useNewAPI(method) {
            _ = try syscall("mount_setattr(MS_SLAVE)", "/") {
                replica_mount_setattr(AT_FDCWD, "/", UInt32(replica_AT_RECURSIVE), 0, 0, UInt64(MS_SLAVE))
            }
        } else {
            _ = try syscall("mount(MS_SLAVE)", "/") { mount("", "/", nil, UInt(MS_SLAVE | MS_REC), nil) }
        }
    }

    /// Whether this kernel has `mount_setattr` (and so the whole new mount API); probed once.
    public static let hasNewMountAPI: Bool = {
        let result = replica_mount_setattr(-1, "", UInt32(replica_AT_EMPTY_PATH), 0, 0, 0)
        return !(result == -1 && Errno.current == .ENOSYS)
    }()

    static func useNewAPI(_ method: MountMethod) -> Bool {
        method == .newAPI || (method == .automatic && hasNewMountAPI)
    }

    /// The mount namespace `enterPrivateMountNamespace` last created in this process.
    static let enteredNamespace = Atomic<UInt64>(0)

    /// Makes the mounts the plan describes, in the namespace `enterPrivateMountNamespace` made for
    /// this thread (anything else is refused: never the host's). Mounts are made parents first, each
    /// target resolved inside the plan's root to a descriptor (no symlinks, type checked) just before
    /// mounting onto it, so a path swapped during setup cannot redirect a mount. Bind sources keep
    /// the host's flags unless made read-only: with the new API they are cloned before the root turns
    /// read-only; with `mount(2)` the read-only walk skips the plan's own mounts.
    public static func apply(_ plan: SandboxPlan, method: MountMethod = .automatic) throws(ReplicaError) {
        let planned = plan.steps
        try plan.validate(targets: planned.map(\.target))
        try refuseUnlessPrivate()
        let newAPI = useNewAPI(method)
        let root = MountPoints(directory: try RootDirectory(plan.root))
        let host = try RootDirectory("/")
        let strict = plan.protectSystem == .strict
        // Service directories are the service's own: made (0755, without following symlinks) before
        // anything is bound, so they exist on the host as with systemd.
        for directory in plan.serviceDirectories { try root.create(directory.path, .directory) }
        let optional = plan.optionalTargets
        var steps: [SandboxPlan.Step] = []
        for step in planned {
            guard optional.contains(step.target) else { steps.append(step); continue }
            // What a protection covers may be reached through a symlink (/lib/modules is
            // /usr/lib/modules on merged-/usr systems): it then covers the real path, once.
            guard let real = try root.realPath(step.target) else { continue }
            let moved = step.moved(to: real, root: plan.root)
            if !steps.contains(where: { $0.target == real }) && !planned.contains(where: { $0.target == real && $0 != step }) {
                steps.append(moved)
            }
        }
        steps = SandboxPlan.Step.inMountOrder(steps)  // a moved step may sit at another depth
        // Sources first (cloned before anything turns read-only, so they keep the host's flags),
        // then every missing mount point outside the plan's own tmpfs while the tree is writable.
        var prepared: [Prepared?] = []
        for step in steps { prepared.append(try prepare(step, host: host, clone: newAPI)) }
        let temporary = steps.compactMap { step -> String? in
            switch step {
            case .temporary(let tmp): tmp.path
            case .procfs(let path): path
            default: nil
            }
        }
        // A mount point opened here is kept for its mount when no mount made before it can cover it
        // (none of the earlier targets is it or above it); the others are resolved again just before.
        var opened: [OpenTarget?] = Array(repeating: nil, count: steps.count)
        for (index, step) in steps.enumerated() where !temporary.contains(where: { step.target.hasPrefix($0 + "/") }) {
            guard let kind = mountPointKind(step, prepared[index]) else { continue }
            let target = try root.open(step.target, [.noSymlinks], creating: kind)
            let covered = steps[..<index].contains { step.target == $0.target || step.target.hasPrefix($0.target + "/") }
            if !covered { opened[index] = OpenTarget(target) }
        }
        if newAPI && strict { try makeReadOnly(plan.root, newAPI: true, except: []) }
        for (index, step) in steps.enumerated() {
            do throws(ReplicaError) {
                try mountStep(step, prepared[index], in: root, opened: opened[index], newAPI: newAPI)
            } catch where error.errno == .ENOENT && optional.contains(step.target) {
                // What a protection covers may vanish or be unmountable as the kernel sees it (a
                // deleted file bound there, as /proc/kmsg in a container): skipped, as systemd skips it.
                continue
            }
        }
        if !newAPI && strict { try makeReadOnly(plan.root, newAPI: false, except: steps.map(\.target)) }
        if plan.confinement.privateDevices { try sealDevices(in: root, newAPI: newAPI) }
    }

    /// `PrivateDevices=`'s /dev read-only once it is populated, as systemd leaves it: its own mount
    /// only (`mount_setattr` without `AT_RECURSIVE`), so /dev/shm, pts and mqueue stay writable and
    /// not even root can add a node or a file beside them.
    static func sealDevices(in root: borrowing MountPoints, newAPI: Bool) throws(ReplicaError) {
        let devices = try root.open("/dev", [.noSymlinks, .directory])
        let fd = devices.rawValue
        if newAPI {
            _ = try syscall("mount_setattr(MOUNT_ATTR_RDONLY)", "/dev") {
                replica_mount_setattr(fd, "", UInt32(replica_AT_EMPTY_PATH), replica_MOUNT_ATTR_RDONLY, 0, 0)
            }
        } else {
            let flags = UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
            _ = try syscall("mount(MS_REMOUNT|MS_RDONLY)", "/dev") { mount(nil, "/proc/self/fd/\(fd)", nil, flags, nil) }
        }
    }

    /// Makes one step's mount, onto its target as `opened` holds it, or else resolved inside the
    /// root just before.
    static func mountStep(
        _ step: SandboxPlan.Step, _ prepared: Prepared?, in root: borrowing MountPoints, opened: OpenTarget? = nil, newAPI: Bool
    ) throws(ReplicaError) {
        switch step {
        case .temporary(let tmp):
            let target = try root.open(tmp.path, [.noSymlinks, .directory], creating: .directory, opened: opened)
            if newAPI, let tree = prepared { try attach(tree.fd, onto: target, name: tmp.path) }
            else { try mountTemporary(tmp, onto: target, newAPI: false) }
        case .bind(let bind):
            guard let source = prepared else { return }  // an optional source that is missing
            let kind: ResolveOptions = source.isDirectory ? .directory : .regularFile
            let target = try root.open(bind.target, [.noSymlinks, kind], creating: source.isDirectory ? .directory : .regular, opened: opened)
            if newAPI { try attach(source.fd, onto: target, name: bind.target) }
            else { try bindMount(source.fd, onto: target, bind, newAPI: false) }
        case .symlink(let path, let destination):
            let (parent, name) = splitPath(path)
            try root.create(parent, .directory)
            let directory = try root.open(parent, [.noSymlinks, .directory])
            _ = try syscall("symlinkat", path) { symlinkat(destination, directory.rawValue, name) }
        case .procfs(let path):
            let target = try root.open(path, [.noSymlinks, .directory], opened: opened)
            if newAPI, let tree = prepared { try attach(tree.fd, onto: target, name: path) }
            else { _ = try syscall("mount(proc)", path) { mount("proc", "/proc/self/fd/\(target.rawValue)", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) } }
        case .inaccessible(let path):
            // Device nodes too (/dev/kmsg): opened with O_PATH, covered, never opened for I/O.
            try makeInaccessible(path, try root.open(path, [.noSymlinks]), newAPI: newAPI)
        }
    }

    /// Resolves mount targets inside the plan's root, making missing ones first as systemd does:
    /// the missing directories (0755) and, for a file, an empty file (0644), each made by descriptor
    /// from its parent with `mkdirat`/`openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, never through a symlink.
    /// Like systemd's, a mount point made on the real root stays after the sandbox is gone; one made
    /// inside a tmpfs of the plan goes with it.
    struct MountPoints: ~Copyable {
        let directory: RootDirectory

        /// `path` resolved inside the root, made first when missing and `kind` says what as; or the
        /// descriptor `opened` holds for it, checked against `options` like a fresh one.
        func open(
            _ path: String, _ options: ResolveOptions, creating kind: FileStatus.Kind? = nil, opened: OpenTarget? = nil
        ) throws(ReplicaError) -> OwnedFD {
            if let fd = opened?.fd.take() {
                try directory.check(fd, path, options)
                return fd
            }
            do throws(ReplicaError) { return try directory.open(path, options) } catch where error.errno == .ENOENT && kind != nil {
                try create(path, kind!)
                return try directory.open(path, options)
            }
        }

        /// `path` with its symlinks resolved inside the root (`openat2(RESOLVE_IN_ROOT)`, then the
        /// descriptor's path), or nil when it does not exist.
        func realPath(_ path: String) throws(ReplicaError) -> String? {
            do throws(ReplicaError) { _ = try directory.open(path, [.noSymlinks]); return path } catch {
                if error.errno == .ENOENT { return nil }
                guard error.errno == .ELOOP else { throw error }
            }
            let fd: OwnedFD
            do throws(ReplicaError) { fd = try directory.open(path, []) } catch {
                if error.errno == .ENOENT { return nil }
                throw error
            }
            guard let kernel = fd.kernelPath(), let rootPath = directory.fd.kernelPath() else { return nil }
            if rootPath == "/" { return kernel }
            return kernel.hasPrefix(rootPath + "/") ? String(kernel.dropFirst(rootPath.count)) : nil
        }

        func create(_ path: String, _ kind: FileStatus.Kind) throws(ReplicaError) {
            let components = path.split(separator: "/").map(String.init)
            var parent = try directory.fd.duplicate()
            for (index, name) in components.enumerated() {
                let last = index == components.count - 1
                if last && kind != .directory {
                    let made = Glibc.openat(parent.rawValue, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o644)
                    if made >= 0 { Glibc.close(made) } else if Errno.current != .EEXIST { throw ReplicaError.current("create mount point", [path]) }
                    return
                }
                if mkdirat(parent.rawValue, name, 0o755) != 0 && Errno.current != .EEXIST {
                    throw ReplicaError.current("mkdirat", [path], hint: "the mount point is missing and cannot be made here")
                }
                parent = try parent.openat(name, replica_O_PATH | O_DIRECTORY | O_NOFOLLOW)
            }
        }
    }

    /// What a step's missing mount point is made as: a directory for a tmpfs or a directory bind, a
    /// file for a file bind; nil for inaccessible paths (hiding what is not there is refused) and
    /// optional binds whose source is missing.
    static func mountPointKind(_ step: SandboxPlan.Step, _ source: Prepared?) -> FileStatus.Kind? {
        switch step {
        case .temporary, .procfs: .directory
        case .symlink: nil
        case .bind: source.map { $0.isDirectory ? FileStatus.Kind.directory : .regular }
        case .inaccessible: nil
        }
    }

    /// A mount point opened before anything was mounted, taken by its mount.
    final class OpenTarget {
        var fd: OwnedFD?
        init(_ fd: consuming OwnedFD) { self.fd = .some(fd) }
    }

    /// A step's source, opened before anything is mounted: a detached tree (the new mount API) or
    /// the bind source itself (`mount(2)`).
    final class Prepared {
        let fd: OwnedFD
        let isDirectory: Bool
        init(_ fd: consuming OwnedFD, isDirectory: Bool) {
            self.fd = fd
            self.isDirectory = isDirectory
        }
    }

    /// The step's source: with `clone`, a detached tmpfs or cloned bind tree; without, the opened
    /// bind source (tmpfs and inaccessible paths are made when mounted). Nil for an optional bind
    /// whose source is missing.
    static func prepare(_ step: SandboxPlan.Step, host: borrowing RootDirectory, clone: Bool) throws(ReplicaError) -> Prepared? {
        switch step {
        case .temporary(let tmp):
            guard clone else { return nil }
            return Prepared(try FilesystemMount.detached(type: "tmpfs", source: "replica-tmp", options: tmp.options,
                                                         attributes: attributes(tmp.flags), name: tmp.path), isDirectory: true)
        case .bind(let bind):
            var kind: FileStatus.Kind?
            guard let source = try openSource(bind, host: host, kind: &kind) else { return nil }
            if kind == nil { kind = try source.status().kind }  // device binds ask for no check
            let isDirectory = kind == .directory
            return Prepared(clone ? try cloneTree(source, bind) : source, isDirectory: isDirectory)
        case .symlink:
            return nil
        case .procfs(let path):
            guard clone else { return nil }
            return Prepared(try FilesystemMount.detached(type: "proc", source: "proc", options: [:],
                                                         attributes: attributes([.noSetUID, .noDevices, .noExec]), name: path), isDirectory: true)
        case .inaccessible:
            return nil
        }
    }

    /// The bind's source, or nil when it is optional and missing.
    static func openSource(_ bind: Bind, host: borrowing RootDirectory, kind: inout FileStatus.Kind?) throws(ReplicaError) -> OwnedFD? {
        do throws(ReplicaError) {
            return try host.open(bind.source, bind.device ? [.noSymlinks] : [.noSymlinks, .noSpecialFiles], kind: &kind)
        } catch {
            if bind.optional && error.errno == .ENOENT { return nil }
            throw error
        }
    }

    /// Refuses unless the calling thread is in a namespace `enterPrivateMountNamespace` made. Fails
    /// closed: not knowing is a refusal.
    static func refuseUnlessPrivate() throws(ReplicaError) {
        let mine = try FileStatus.of("/proc/thread-self/ns/mnt").inode
        guard mine == enteredNamespace.load(ordering: .acquiring) else {
            throw ReplicaError("sandbox", ["/proc/thread-self/ns/mnt"], errno: .EPERM,
                              hint: "not a mount namespace made by enterPrivateMountNamespace (it may be the host's); enter one first")
        }
    }

    /// Everything at and below `root` read-only in one recursive `mount_setattr`, then the API
    /// filesystems (/dev, /proc, /sys) that were writable made writable again, as systemd's
    /// `ProtectSystem=strict` leaves them. The legacy path remounts each mount, keeping its flags.
    static func makeReadOnly(_ root: String, newAPI: Bool, except planTargets: [String]) throws(ReplicaError) {
        let mounts = try MountInfo.read()
        let below = { (path: String) in root == "/" || path == root || path.hasPrefix(root + "/") }
        let joined = { (target: String) in root == "/" ? target : root + target }
        let ours = { (path: String) in planTargets.contains { path == joined($0) || path.hasPrefix(joined($0) + "/") } }
        let api = { (path: String) in ["/dev", "/proc", "/sys"].contains { path == $0 || path.hasPrefix($0 + "/") } }
        if newAPI {
            _ = try syscall("mount_setattr(MOUNT_ATTR_RDONLY)", root) {
                replica_mount_setattr(AT_FDCWD, root, UInt32(replica_AT_RECURSIVE), replica_MOUNT_ATTR_RDONLY, 0, 0)
            }
            guard root == "/" else { return }
            // Each API tree writable again in one recursive call, then what was read-only in it
            // read-only again (usually nothing): 3 calls instead of one per mount.
            for top in ["/dev", "/proc", "/sys"] where mounts.contains(where: { $0.mountPoint == top && !$0.isReadOnly }) {
                _ = try syscall("mount_setattr(clear MOUNT_ATTR_RDONLY)", top) {
                    replica_mount_setattr(AT_FDCWD, top, UInt32(replica_AT_RECURSIVE), 0, replica_MOUNT_ATTR_RDONLY, 0)
                }
            }
            for entry in mounts where api(entry.mountPoint) && entry.isReadOnly {
                _ = try syscall("mount_setattr(MOUNT_ATTR_RDONLY)", entry.mountPoint) {
                    replica_mount_setattr(AT_FDCWD, entry.mountPoint, 0, replica_MOUNT_ATTR_RDONLY, 0, 0)
                }
            }
        } else {
            for entry in mounts where below(entry.mountPoint) && !(root == "/" && api(entry.mountPoint)) && !ours(entry.mountPoint)
                && !entry.isReadOnly {
                let flags = UInt(MS_REMOUNT | MS_BIND | MS_RDONLY) | lockedFlags(entry)
                _ = try syscall("mount(MS_REMOUNT|MS_RDONLY)", entry.mountPoint) { mount(nil, entry.mountPoint, nil, flags, nil) }
            }
        }
    }

    /// The per-mount flags a remount must repeat (the kernel refuses to drop locked ones).
    static func lockedFlags(_ entry: MountInfoEntry) -> UInt {
        let table: [(String, Int)] = [("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC),
                                      ("noatime", MS_NOATIME), ("nodiratime", MS_NODIRATIME), ("relatime", MS_RELATIME)]
        return table.reduce(0) { entry.mountOptions.contains($1.0) ? $0 | UInt($1.1) : $0 }
    }

    static func attributes(_ flags: MountFlags) -> UInt64 {
        (flags.contains(.readOnly) ? replica_MOUNT_ATTR_RDONLY : 0) | (flags.contains(.noSetUID) ? replica_MOUNT_ATTR_NOSUID : 0)
            | (flags.contains(.noDevices) ? replica_MOUNT_ATTR_NODEV : 0) | (flags.contains(.noExec) ? replica_MOUNT_ATTR_NOEXEC : 0)
    }

    static func legacyFlags(_ flags: MountFlags) -> UInt {
        UInt((flags.contains(.readOnly) ? MS_RDONLY : 0) | (flags.contains(.noSetUID) ? MS_NOSUID : 0)
            | (flags.contains(.noDevices) ? MS_NODEV : 0) | (flags.contains(.noExec) ? MS_NOEXEC : 0))
    }

    /// A fresh tmpfs: `fsopen("tmpfs")` → `fsconfig(mode, size)` → `fsmount(flags)` → `move_mount`.
    static func mountTemporary(_ tmp: TemporaryDirectory, onto target: borrowing OwnedFD, newAPI: Bool) throws(ReplicaError) {
        if newAPI {
            let mountFD = try FilesystemMount.detached(type: "tmpfs", source: "replica-tmp", options: tmp.options,
                                                       attributes: attributes(tmp.flags), name: tmp.path)
            try attach(mountFD, onto: target, name: tmp.path)
        } else {
            let data = FilesystemMount.data(tmp.options)
            let proc = "/proc/self/fd/\(target.rawValue)"
            _ = try syscall("mount(tmpfs)", tmp.path) { mount("replica-tmp", proc, "tmpfs", legacyFlags(tmp.flags), data) }
        }
    }

    /// `open_tree(OPEN_TREE_CLONE [| AT_RECURSIVE])`: a detached copy of the source's mount tree,
    /// made read-only and/or `nodev` with one `mount_setattr` (covering its submounts) when the bind asks.
    static func cloneTree(_ source: borrowing OwnedFD, _ bind: Bind) throws(ReplicaError) -> OwnedFD {
        let flags = replica_OPEN_TREE_CLONE | replica_OPEN_TREE_CLOEXEC | UInt32(replica_AT_EMPTY_PATH)
            | (bind.recursive ? UInt32(replica_AT_RECURSIVE) : 0)
        let sourceFD = source.rawValue
        let tree = OwnedFD(adopting: try syscall("open_tree", bind.source, bind.target) { replica_open_tree(sourceFD, "", flags) })
        let set = attributes(bindFlags(bind))
        if set != 0 {
            _ = try syscall("mount_setattr", bind.source, bind.target) {
                replica_mount_setattr(tree.rawValue, "", UInt32(replica_AT_EMPTY_PATH | replica_AT_RECURSIVE), set, 0, 0)
            }
        }
        return tree
    }

    /// The flags a bind sets on its mount: read-only, `nodev`.
    static func bindFlags(_ bind: Bind) -> MountFlags {
        MountFlags().union(bind.readOnly ? .readOnly : []).union(bind.noDevices ? .noDevices : [])
    }

    /// A bind mount onto the target: a cloned tree attached with `move_mount`, or `mount(MS_BIND)`
    /// then a remount (read-only, `nodev`) that keeps the mount's other flags.
    static func bindMount(_ source: borrowing OwnedFD, onto target: borrowing OwnedFD, _ bind: Bind, newAPI: Bool) throws(ReplicaError) {
        if newAPI {
            try attach(try cloneTree(source, bind), onto: target, name: bind.target)
        } else {
            let from = "/proc/self/fd/\(source.rawValue)", to = "/proc/self/fd/\(target.rawValue)"
            _ = try syscall("mount(MS_BIND)", bind.source, bind.target) {
                mount(from, to, nil, UInt(MS_BIND) | (bind.recursive ? UInt(MS_REC) : 0), nil)
            }
            if bind.readOnly || bind.noDevices {
                // The new mount sits on the target's dentry; remount it through its path, keeping flags.
                let entry = try MountInfo.read().last { $0.mountPoint == bind.target }
                let flags = UInt(MS_REMOUNT | MS_BIND) | legacyFlags(bindFlags(bind)) | (entry.map(lockedFlags) ?? 0)
                _ = try syscall("mount(MS_REMOUNT)", bind.target) { mount(nil, bind.target, nil, flags, nil) }
            }
        }
    }

    /// An empty, mode-0000, read-only tmpfs over a directory; over a file, a mode-0000 empty file
    /// cloned from a detached tmpfs (new mount API only).
    static func makeInaccessible(_ path: String, _ target: borrowing OwnedFD, newAPI: Bool) throws(ReplicaError) {
        let isDirectory = try target.status().kind == .directory
        if isDirectory {
            try mountTemporary(TemporaryDirectory(path, mode: 0, size: 4096, flags: [.readOnly, .noSetUID, .noDevices, .noExec]),
                               onto: target, newAPI: newAPI)
            return
        }
        guard newAPI else {
            throw ReplicaError("inaccessible file", [path], errno: .ENOTSUP, hint: "hiding a file needs the new mount API (Linux 5.2)")
        }
        let scratch = try FilesystemMount.detached(type: "tmpfs", source: "replica-inaccessible", options: ["mode": "0", "size": "4096"],
                                                   attributes: 0, name: path)
        let made = Glibc.openat(scratch.rawValue, "file", O_CREAT | O_WRONLY | O_CLOEXEC | O_EXCL, 0)
        if made < 0 { throw ReplicaError.current("openat", [path]) }
        Glibc.close(made)
        let flags = replica_OPEN_TREE_CLONE | replica_OPEN_TREE_CLOEXEC
        let tree = OwnedFD(adopting: try syscall("open_tree", path) { replica_open_tree(scratch.rawValue, "file", flags) })
        _ = try syscall("mount_setattr(MOUNT_ATTR_RDONLY)", path) {
            replica_mount_setattr(tree.rawValue, "", UInt32(replica_AT_EMPTY_PATH), replica_MOUNT_ATTR_RDONLY, 0, 0)
        }
        try attach(tree, onto: target, name: path)
    }

    /// `move_mount(tree, "", target, "", F_EMPTY_PATH | T_EMPTY_PATH)`.
    static func attach(_ tree: borrowing OwnedFD, onto target: borrowing OwnedFD, name: String) throws(ReplicaError) {
        let (from, to) = (tree.rawValue, target.rawValue)
        _ = try syscall("move_mount", name) {
            replica_move_mount(from, "", to, "", replica_MOVE_MOUNT_F_EMPTY_PATH | replica_MOVE_MOUNT_T_EMPTY_PATH)
        }
    }
}
