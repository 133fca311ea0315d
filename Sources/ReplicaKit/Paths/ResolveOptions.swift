/// What `RootDirectory.open` accepts on the way to, and at, the end of a path.
public struct ResolveOptions: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Refuse any symlink in any component, with ELOOP (`RESOLVE_NO_SYMLINKS`).
    public static let noSymlinks = ResolveOptions(rawValue: 1 << 0)
    /// The result must be a directory, else ENOTDIR.
    public static let directory = ResolveOptions(rawValue: 1 << 1)
    /// The result must be a regular file, else EISDIR / EINVAL.
    public static let regularFile = ResolveOptions(rawValue: 1 << 2)
    /// Refuse FIFOs, sockets and devices (they are only stat'ed through `O_PATH`, never opened for I/O).
    public static let noSpecialFiles = ResolveOptions(rawValue: 1 << 3)
    /// Do not follow a symlink in the last component: return the link itself (`O_NOFOLLOW`).
    public static let noFollowLast = ResolveOptions(rawValue: 1 << 4)
}

/// How a path is resolved inside a root.
public enum ResolveMethod: Sendable, Equatable {
    /// `openat2` when the kernel has it (Linux 5.6), else the component walk.
    case automatic
    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` only.
    case openat2
    /// A per-component `openat(O_PATH | O_NOFOLLOW)` walk with the same semantics.
    case componentWalk
}

/// The kernel's limit on symlinks followed in one lookup (`MAXSYMLINKS`), which the walk applies too.
public let maxSymlinkHops = 40
