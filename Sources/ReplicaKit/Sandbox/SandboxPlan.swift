/// What a sandboxed service sees, as a value: printed, compared and tested without root, rendered
/// as systemd directives (`systemdDirectives`), or applied in a child's mount namespace
/// (`SandboxMounter`). The same plan gives the same view either way.
public struct SandboxPlan: Equatable, Sendable {
    /// The directory targets are resolved in: `/` for a service, a container's tree otherwise.
    /// No target is ever followed outside it.
    public var root = "/"
    /// `ProtectSystem=`: which of the tree is read-only; `strict` by default.
    public var protectSystem = ProtectSystem.strict
    /// `ProtectHome=`: /home, /root and /run/user hidden or read-only.
    public var protectHome = ProtectHome.no
    /// `TemporaryFileSystem=`: fresh tmpfs mounts, empty at every start.
    public var temporaryDirectories: [TemporaryDirectory] = []
    /// `BindPaths=` / `BindReadOnlyPaths=`: directories or files from elsewhere, including state
    /// subvolumes on the store.
    public var binds: [Bind] = []
    /// `InaccessiblePaths=`: replaced by an empty, mode-0000, read-only directory or file.
    public var inaccessiblePaths: [String] = []
    /// Paths no service reaches whatever its other settings say: Replica's own (the store, its
    /// runtime, state and profile folders) and, outside systemd, other units' credentials. Each is
    /// hidden as `InaccessiblePaths=` hides, where it exists (`InaccessiblePaths=-PATH`). Bind
    /// sources below them are opened before anything is hidden, by systemd and by
    /// `SandboxMounter` alike, so a service's own state still appears at its own path.
    public var hiddenPaths: [String] = []
    /// `ReadWritePaths=` / `ReadOnlyPaths=`: paths of the tree itself kept writable (under a
    /// read-only root) or made read-only.
    public var accessPaths: [AccessPath] = []
    /// `RuntimeDirectory=`, `LogsDirectory=`, `CacheDirectory=`: made (0755) if missing below /run,
    /// /var/log or /var/cache, and writable whatever `ProtectSystem=` says.
    public var serviceDirectories: [ServiceDirectory] = []
    /// Users, capabilities, no_new_privs and seccomp; its `Protect*=` and `PrivateDevices=`
    /// settings also add mounts here (`protectionSteps`).
    public var confinement = Confinement()
    /// `NetworkNamespacePath=`: a pinned network namespace the service joins (`/run/netns/NAME`,
    /// made by `replica-net up`); nil to keep the caller's network.
    public var networkNamespacePath: String?

    /// Where named network namespaces are pinned, as `ip netns` does.
    public static let networkNamespaceDirectory = "/run/netns"

    /// An empty plan: nothing mounted, nothing confined.
    public init() {}

    /// One mount the plan makes.
    public enum Step: Equatable, Sendable {
        /// A fresh tmpfs.
        case temporary(TemporaryDirectory)
        /// A bind mount.
        case bind(Bind)
        /// An empty, mode-0 node over this path (`InaccessiblePaths=`).
        case inaccessible(String)
        /// A symlink made inside one of the plan's own tmpfs (`PrivateDevices=`'s /dev/fd …).
        case symlink(String, to: String)
        /// A fresh procfs instance (what systemd mounts on /proc for the kernel protections), so
        /// the service sees the kernel's own /proc, not overmounts made on the host's.
        case procfs(String)

        /// `steps` in the order they are mounted: parents before children (fewer path components
        /// first), then by path; each target's depth counted once, not at every comparison.
        static func inMountOrder(_ steps: [Step]) -> [Step] {
            let keyed = steps.map { (depth: $0.target.utf8.split(separator: UInt8(ascii: "/")).count, step: $0) }
            return keyed.sorted { a, b in a.depth != b.depth ? a.depth < b.depth : a.step.target < b.step.target }.map(\.step)
        }

        /// The same step at another target; a bind of the tree onto itself follows it.
        func moved(to target: String, root: String) -> Step {
            switch self {
            case .temporary(var tmp): tmp.path = target; return .temporary(tmp)
            case .inaccessible: return .inaccessible(target)
            case .procfs: return .procfs(target)
            case .symlink(_, let destination): return .symlink(target, to: destination)
            case .bind(var bind):
                if bind.source == (root == "/" ? bind.target : root + bind.target) { bind.source = root == "/" ? target : root + target }
                bind.target = target
                return .bind(bind)
            }
        }

        /// The path the step mounts on.
        public var target: String {
            switch self {
            case .temporary(let tmp): tmp.path
            case .bind(let bind): bind.target
            case .inaccessible(let path): path
            case .procfs(let path): path
            case .symlink(let path, _): path
            }
        }
    }

    /// The mounts in the order they are made: parents before children (fewer path components
    /// first), then by path, so a mount is never hidden by one made after it above it.
    ///
    /// `ProtectSystem=yes|full` and `ProtectHome=` become mounts as systemd makes them (read-only
    /// binds of /usr, /boot, /efi and /etc onto themselves; /home, /root, /run/user hidden or bound
    /// read-only), each only where the path exists
    /// (`optionalTargets`) and only where no setting of the plan names the same target.
    public var steps: [Step] {
        let explicit = temporaryDirectories.map(Step.temporary) + binds.map(Step.bind) + inaccessiblePaths.map(Step.inaccessible)
            + hiddenPaths.map(Step.inaccessible)
            + accessPaths.map { .bind(Bind(inRoot($0.path), to: $0.path, readOnly: !$0.writable, optional: $0.optional)) }
            + serviceDirectories.map { .bind(Bind(inRoot($0.path), to: $0.path, readOnly: false)) }
        let named = Set(explicit.map(\.target))
        return Step.inMountOrder(explicit + protectionSteps.filter { !named.contains($0.target) })
    }

    /// Every mount target, in the order they are applied.
    public var targets: [String] { steps.map(\.target) }

    /// The mounts `ProtectSystem=` and `ProtectHome=` add, before the plan's own settings.
    var protectionSteps: [Step] {
        let system: [Step] = switch protectSystem {
        case .no, .strict: []
        case .yes: ["/usr", "/boot", "/efi"].map { .bind(Bind(inRoot($0), to: $0, readOnly: true, optional: true)) }
        case .full: ["/usr", "/boot", "/efi", "/etc"].map { .bind(Bind(inRoot($0), to: $0, readOnly: true, optional: true)) }
        }
        let home: [Step] = switch protectHome {
        case .no: []
        case .yes: ProtectHome.paths.map(Step.inaccessible)
        case .readOnly: ProtectHome.paths.map { .bind(Bind(inRoot($0), to: $0, readOnly: true, optional: true)) }
        }
        return system + home + kernelSteps + deviceSteps
    }

    /// `PrivateDevices=`: a fresh /dev holding what systemd 252 puts there — the pseudo devices
    /// (bound from the host's), the host's pts, shm, mqueue and hugepages, and the usual links.
    var deviceSteps: [Step] {
        guard confinement.privateDevices else { return [] }
        let nodes = [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"), ("tty", "5:0")]
        var steps: [Step] = [.temporary(TemporaryDirectory("/dev", mode: 0o755, flags: [.noSetUID, .noExec]))]
        steps += nodes.map { .bind(Bind(inRoot("/dev/\($0.0)"), to: "/dev/\($0.0)", readOnly: false, recursive: false, optional: true, device: true)) }
        steps += nodes.map { .symlink("/dev/char/\($0.1)", to: "../\($0.0)") }
        steps += ["pts", "shm", "mqueue", "hugepages"].map { .bind(Bind(inRoot("/dev/\($0)"), to: "/dev/\($0)", readOnly: false, optional: true)) }
        steps += [.symlink("/dev/ptmx", to: "pts/ptmx"), .symlink("/dev/log", to: "/run/systemd/journal/dev-log"),
                  .symlink("/dev/fd", to: "/proc/self/fd"), .symlink("/dev/stdin", to: "/proc/self/fd/0"),
                  .symlink("/dev/stdout", to: "/proc/self/fd/1"), .symlink("/dev/stderr", to: "/proc/self/fd/2")]
        return steps
    }

    /// The mounts of `ProtectKernelTunables=`, `ProtectKernelModules=`, `ProtectKernelLogs=` and
    /// `ProtectControlGroups=`, as systemd 252 makes them: kernel tunables in /proc and /sys
    /// read-only (the cgroup tree keeps its own flags unless protected too), symbol tables, module
    /// folders and the kernel log hidden.
    var kernelSteps: [Step] {
        let readOnly = { (path: String) in Step.bind(Bind(self.inRoot(path), to: path, readOnly: true, optional: true)) }
        let writable = { (path: String) in Step.bind(Bind(self.inRoot(path), to: path, readOnly: false, optional: true)) }
        var steps: [Step] = []
        let kernel = confinement
        if kernel.protectKernelTunables || kernel.protectKernelModules || kernel.protectKernelLogs || kernel.protectControlGroups {
            steps.append(.procfs("/proc"))
        }
        if confinement.protectKernelTunables {
            steps += ["/proc/acpi", "/proc/apm", "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/latency_stats", "/proc/mtrr",
                      "/proc/scsi", "/proc/sys", "/proc/sysrq-trigger", "/proc/timer_list", "/sys", "/sys/fs/bpf", "/sys/kernel/debug",
                      "/sys/kernel/tracing"].map(readOnly)
            steps += ["/proc/kallsyms", "/proc/kcore"].map(Step.inaccessible)
            if !confinement.protectControlGroups { steps.append(writable("/sys/fs/cgroup")) }
        }
        if confinement.protectControlGroups { steps.append(readOnly("/sys/fs/cgroup")) }
        if confinement.protectKernelModules { steps += ["/usr/lib/modules", "/lib/modules"].map(Step.inaccessible) }
        if confinement.protectKernelLogs { steps += ["/proc/kmsg", "/dev/kmsg"].map(Step.inaccessible) }
        return steps
    }

    /// Targets skipped when they do not exist in the root (what `ProtectSystem=` and
    /// `ProtectHome=` cover exists on some systems only, and hidden paths), as systemd skips them.
    public var optionalTargets: Set<String> {
        Set(protectionSteps.map(\.target)).subtracting(deviceSteps.map(\.target)).union(hiddenPaths)
    }

    /// `path` of the plan's tree as a host path: the source of a bind of the tree onto itself.
    func inRoot(_ path: String) -> String { root == "/" ? path : root + path }

    /// Refuses what cannot be applied: relative targets, `..` components, the same target twice.
    public func validate() throws(ReplicaError) { try validate(targets: targets) }

    /// Whether a path component is `.` or `..` (compared as bytes: no grapheme breaking).
    static func isDotComponent(_ component: Substring.UTF8View) -> Bool {
        component.allSatisfy { $0 == UInt8(ascii: ".") } && component.count <= 2
    }

    /// `validate()` with the targets already worked out (`steps` builds them: the mounter builds
    /// them once for both).
    func validate(targets: [String]) throws(ReplicaError) {
        var seen: Set<String> = []
        for target in targets {
            guard target.hasPrefix("/"), !target.utf8.split(separator: UInt8(ascii: "/")).contains(where: Self.isDotComponent) else {
                throw ReplicaError("sandbox plan", [target], errno: .EINVAL, hint: "a target is an absolute path without . or ..")
            }
            guard target != "/" else {
                throw ReplicaError("sandbox plan", [target], errno: .EINVAL, hint: "nothing can be mounted over the root itself")
            }
            guard seen.insert(target).inserted else {
                throw ReplicaError("sandbox plan", [target], errno: .EEXIST, hint: "the same target appears twice")
            }
        }
        for directory in serviceDirectories {
            let parts = directory.name.split(separator: "/", omittingEmptySubsequences: false)
            guard !directory.name.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                throw ReplicaError("sandbox plan", [directory.name], errno: .EINVAL,
                                  hint: "\(directory.kind.rawValue)= takes names relative to \(directory.kind.base), without . or ..")
            }
        }
        for bind in binds where !bind.source.hasPrefix("/") {
            throw ReplicaError("sandbox plan", [bind.source], errno: .EINVAL, hint: "a bind source is an absolute path")
        }
    }
}

/// `ProtectSystem=` with systemd's meaning.
public enum ProtectSystem: String, Sendable, CaseIterable {
    /// Nothing made read-only.
    case no
    /// /usr, /boot and /efi read-only.
    case yes
    /// /usr, /boot, /efi and /etc read-only.
    case full
    /// The whole tree read-only (one recursive `mount_setattr`), except the API filesystems /dev,
    /// /proc and /sys, which keep their own flags.
    case strict
}

/// `ProtectHome=` with systemd's meaning, for /home, /root and /run/user. systemd's `tmpfs` is
/// refused: systemd 238 to 256 (Debian 12 has 252) mounts those tmpfs writable, not read-only as
/// documented (systemd issue 34825), so a profile asking for it would get less than it says.
public enum ProtectHome: String, Sendable, CaseIterable {
    /// Left as they are.
    case no
    /// Empty and inaccessible.
    case yes
    /// Read-only.
    case readOnly = "read-only"

    /// The directories it covers.
    public static let paths = ["/home", "/root", "/run/user"]
}

/// `ReadWritePaths=` / `ReadOnlyPaths=`: a path of the tree bound onto itself, writable or not.
public struct AccessPath: Equatable, Sendable {
    /// The absolute path.
    public var path: String
    /// True for `ReadWritePaths=`, false for `ReadOnlyPaths=`.
    public var writable: Bool
    /// A missing path is skipped instead of an error (systemd's `-` prefix).
    public var optional: Bool

    /// A path made writable or read-only.
    public init(_ path: String, writable: Bool, optional: Bool = false) { (self.path, self.writable, self.optional) = (path, writable, optional) }
}

/// `RuntimeDirectory=NAME` (/run/NAME), `LogsDirectory=` (/var/log/NAME), `CacheDirectory=`
/// (/var/cache/NAME): a directory the service owns, made if missing, always writable.
public struct ServiceDirectory: Equatable, Sendable {
    /// Which directive, and so which base folder.
    public enum Kind: String, Sendable, CaseIterable {
        /// `RuntimeDirectory=`: below /run.
        case runtime = "RuntimeDirectory"
        /// `LogsDirectory=`: below /var/log.
        case logs = "LogsDirectory"
        /// `CacheDirectory=`: below /var/cache.
        case cache = "CacheDirectory"

        /// Where its names are relative to.
        public var base: String {
            switch self {
            case .runtime: "/run"
            case .logs: "/var/log"
            case .cache: "/var/cache"
            }
        }

        /// The variable systemd sets to the directories' paths (`$RUNTIME_DIRECTORY`).
        public var environmentVariable: String {
            switch self {
            case .runtime: "RUNTIME_DIRECTORY"
            case .logs: "LOGS_DIRECTORY"
            case .cache: "CACHE_DIRECTORY"
            }
        }
    }

    /// Which directive.
    public var kind: Kind
    /// Relative to the kind's base: `nginx`, `app/sockets`.
    public var name: String
    /// The absolute path: `/run/nginx`.
    public var path: String { "\(kind.base)/\(name)" }

    /// The directory `name` of this kind.
    public init(_ kind: Kind, _ name: String) { (self.kind, self.name) = (kind, name) }
}

/// Mount flags a tmpfs or bind can carry (`MOUNT_ATTR_*`).
public struct MountFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// `nosuid`, `MOUNT_ATTR_NOSUID`.
    public static let noSetUID = MountFlags(rawValue: 1 << 0)
    /// `nodev`, `MOUNT_ATTR_NODEV`.
    public static let noDevices = MountFlags(rawValue: 1 << 1)
    /// `noexec`, `MOUNT_ATTR_NOEXEC`.
    public static let noExec = MountFlags(rawValue: 1 << 2)
    /// `ro`, `MOUNT_ATTR_RDONLY`.
    public static let readOnly = MountFlags(rawValue: 1 << 3)

    /// The systemd/mount(8) option words, in a fixed order.
    public var words: [String] {
        [(MountFlags.readOnly, "ro"), (.noSetUID, "nosuid"), (.noDevices, "nodev"), (.noExec, "noexec")]
            .filter { contains($0.0) }.map(\.1)
    }
}

/// A tmpfs mounted fresh at `path`.
public struct TemporaryDirectory: Equatable, Sendable {
    /// Where it is mounted.
    public var path: String
    /// The permission bits of its root (`mode=`).
    public var mode: UInt16
    /// Bytes, or nil for tmpfs's default (half of RAM).
    public var size: UInt64?
    /// Mount flags (`nosuid`, `nodev` by default).
    public var flags: MountFlags

    /// The tmpfs parameters (`mode=`, `size=`) for `fsconfig` or `mount(2)` data.
    public var options: [String: String?] {
        var options: [String: String?] = ["mode": String(mode, radix: 8)]
        if let size { options["size"] = String(size) }
        return options
    }

    /// A tmpfs at `path` (`TemporaryFileSystem=PATH:mode=…,size=…`).
    public init(_ path: String, mode: UInt16 = 0o755, size: UInt64? = nil, flags: MountFlags = [.noSetUID, .noDevices]) {
        self.path = path
        self.mode = mode
        self.size = size
        self.flags = flags
    }
}

/// A bind mount of `source` (a directory or file) onto `target`.
public struct Bind: Equatable, Sendable {
    /// What is bound, outside the sandbox's view.
    public var source: String
    /// Where it appears.
    public var target: String
    /// Read-only (`BindReadOnlyPaths=`) or writable (`BindPaths=`).
    public var readOnly: Bool
    /// Include mounts below the source (`rbind`), systemd's default.
    public var recursive: Bool
    /// A missing source is skipped instead of an error (systemd's `-` prefix).
    public var optional: Bool
    /// The source may be a device node (`PrivateDevices=`'s /dev/null …); other binds refuse them.
    public var device: Bool
    /// `nodev`: a device node in it opens nothing, even one made there by root with `CAP_MKNOD`.
    /// For the sandboxes Replica runs itself; systemd's `BindPaths=` has no such option.
    public var noDevices = false

    /// A bind of `source` onto `target` (`BindPaths=SOURCE:TARGET`).
    public init(_ source: String, to target: String, readOnly: Bool, recursive: Bool = true, optional: Bool = false, device: Bool = false) {
        self.device = device
        self.source = source
        self.target = target
        self.readOnly = readOnly
        self.recursive = recursive
        self.optional = optional
    }
}
