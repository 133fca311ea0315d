/// What a sandboxed service sees, as a value: printed, compared and tested without root, rendered
/// as systemd directives (`systemdDirectives`), or applied in a child's mount namespace
/// (`SandboxMounter`). The same plan gives the same view either way.
public struct SandboxPlan: Equatable, Sendable {
    /// The directory targets are resolved in: `/` for a service, a container's tree otherwise.
    /// No target is ever followed outside it.
    public var root = "/"
    /// `ProtectSystem=strict`: the whole tree read-only (one recursive `mount_setattr`), except the
    /// API filesystems /dev, /proc and /sys, which keep their own flags.
    public var readOnlyRoot = true
    /// `TemporaryFileSystem=`: fresh tmpfs mounts, empty at every start.
    public var temporaryDirectories: [TemporaryDirectory] = []
    /// `BindPaths=` / `BindReadOnlyPaths=`: directories or files from elsewhere, including state
    /// subvolumes on the store.
    public var binds: [Bind] = []
    /// `InaccessiblePaths=`: replaced by an empty, mode-0000, read-only directory or file.
    public var inaccessiblePaths: [String] = []
    /// `NetworkNamespacePath=`: a pinned network namespace the service joins (`/run/netns/NAME`,
    /// made by `replica-net up`); nil to keep the caller's network.
    public var networkNamespacePath: String?

    /// Where named network namespaces are pinned, as `ip netns` does.
    public static let networkNamespaceDirectory = "/run/netns"

    public init() {}

    /// One mount the plan makes.
    public enum Step: Equatable, Sendable {
        case temporary(TemporaryDirectory)
        case bind(Bind)
        case inaccessible(String)

        public var target: String {
            switch self {
            case .temporary(let tmp): tmp.path
            case .bind(let bind): bind.target
            case .inaccessible(let path): path
            }
        }
    }

    /// The mounts in the order they are made: parents before children (fewer path components
    /// first), then by path, so a mount is never hidden by one made after it above it.
    public var steps: [Step] {
        let all = temporaryDirectories.map(Step.temporary) + binds.map(Step.bind) + inaccessiblePaths.map(Step.inaccessible)
        return all.sorted { a, b in
            let (da, db) = (a.target.split(separator: "/").count, b.target.split(separator: "/").count)
            return da != db ? da < db : a.target < b.target
        }
    }

    /// Every mount target, in the order they are applied.
    public var targets: [String] { steps.map(\.target) }

    /// Refuses what cannot be applied: relative targets, `..` components, the same target twice.
    public func validate() throws(SystemError) {
        var seen: Set<String> = []
        for target in targets {
            guard target.hasPrefix("/"), !target.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
                throw SystemError("sandbox plan", [target], errno: .EINVAL, hint: "a target is an absolute path without . or ..")
            }
            guard target != "/" else {
                throw SystemError("sandbox plan", [target], errno: .EINVAL, hint: "nothing can be mounted over the root itself")
            }
            guard seen.insert(target).inserted else {
                throw SystemError("sandbox plan", [target], errno: .EEXIST, hint: "the same target appears twice")
            }
        }
        for bind in binds where !bind.source.hasPrefix("/") {
            throw SystemError("sandbox plan", [bind.source], errno: .EINVAL, hint: "a bind source is an absolute path")
        }
    }
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
    public var path: String
    public var mode: UInt16
    /// Bytes, or nil for tmpfs's default (half of RAM).
    public var size: UInt64?
    public var flags: MountFlags

    /// The tmpfs parameters (`mode=`, `size=`) for `fsconfig` or `mount(2)` data.
    public var options: [String: String?] {
        var options: [String: String?] = ["mode": String(mode, radix: 8)]
        if let size { options["size"] = String(size) }
        return options
    }

    public init(_ path: String, mode: UInt16 = 0o755, size: UInt64? = nil, flags: MountFlags = [.noSetUID, .noDevices]) {
        self.path = path
        self.mode = mode
        self.size = size
        self.flags = flags
    }
}

/// A bind mount of `source` (a directory or file) onto `target`.
public struct Bind: Equatable, Sendable {
    public var source: String
    public var target: String
    public var readOnly: Bool
    /// Include mounts below the source (`rbind`), systemd's default.
    public var recursive: Bool
    /// A missing source is skipped instead of an error (systemd's `-` prefix).
    public var optional: Bool

    public init(_ source: String, to target: String, readOnly: Bool, recursive: Bool = true, optional: Bool = false) {
        self.source = source
        self.target = target
        self.readOnly = readOnly
        self.recursive = recursive
        self.optional = optional
    }
}
