/// Replica's one error type, for every module: the call or operation that failed, the objects it
/// acted on, the `errno`, what the kernel or library said beyond it, the rule broken with its fix,
/// and a `reason` callers switch on instead of reading errno.
///
/// Reads like `mount("/src" → "/dst"): Operation not permitted (EPERM)`.
public struct ReplicaError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What went wrong, as a caller acts on it.
    public enum Reason: String, Equatable, Sendable {
        /// The command line was wrong, or a file it names cannot be understood; nothing was done.
        case usage
        /// Nothing of that name is configured: no profile, policy, set, machine or template.
        case notConfigured
        /// Another run holds the lock (a prepare, a snapshot run): wait or retry; exit 3.
        case lockHeld
        /// The object exists already (a snapshot of this second, a namespace or link name).
        case exists
        /// The object is missing.
        case notFound
        /// Refused by one of Replica's rules before anything changed (the hint names rule and fix).
        case refused
        /// The filesystem is full.
        case noSpace
        /// The object is in use (a mounted subvolume, a busy mount point).
        case busy
        /// Any other failure of a call; `errno` says which.
        case system

        /// The reason an errno means when the code that threw named none. `fromCall` is true for
        /// an errno a kernel or library call returned (`syscall`): its EINVAL is the call's, not a
        /// rule of ours; ELOOP still is (symlinks are refused by the flags Replica passes).
        public init(_ errno: Errno, fromCall: Bool = false) {
            switch errno {
            case .EEXIST: self = .exists
            case .ENOENT, .ENODEV: self = .notFound
            case .ENOSPC: self = .noSpace
            case .EBUSY: self = .busy
            case .ELOOP: self = .refused
            case .EINVAL, .EXDEV, .EMLINK, .ENAMETOOLONG, .EFBIG, .E2BIG, .EPERM: self = fromCall ? .system : .refused
            default: self = .system
            }
        }
    }

    /// The call or operation, e.g. `openat2`, `mount`, `create snapshot`.
    public var operation: String
    /// The objects acted on, in call order (source before target).
    public var objects: [String]
    /// The error number reported by the kernel or library.
    public var errno: Errno
    /// What the kernel or library said beyond errno: netlink's extended ack, libbtrfsutil's message.
    public var detail: String?
    /// The rule broken and how to fix it, when the errno alone does not say.
    public var hint: String?
    /// What kind of failure this is, for callers that act on it (wait on `lockHeld`, skip `notFound`).
    public var reason: Reason
    /// Where in a text the error is — a profile, a set file, a retention policy, a command-line
    /// flag — for errors about what was written rather than what was done.
    public var location: Location?

    /// A place in a text: the file (or `command line`), the line (0: the file as a whole) and the key.
    public struct Location: Equatable, Sendable {
        /// The file, or `command line` for a flag.
        public var file: String
        /// The line, from 1; 0 when the error is about the file as a whole.
        public var line: Int
        /// The key (`Preserve`, or a flag as `--preserve`), when the error is about one.
        public var key: String?

        /// A place in `file`.
        public init(file: String, line: Int, key: String?) { (self.file, self.line, self.key) = (file, line, key) }
    }

    /// An error of `operation` on `objects` with `errno`; `reason` defaults to what the errno means
    /// (`EEXIST` is `exists`, `EINVAL` is `refused`).
    public init(_ operation: String, _ objects: [String] = [], errno: Errno, detail: String? = nil, hint: String? = nil,
                reason: Reason? = nil, location: Location? = nil) {
        self.operation = operation
        self.objects = objects
        self.errno = errno
        self.detail = detail
        self.hint = hint
        self.reason = reason ?? Reason(errno)
        self.location = location
    }

    /// What was written cannot be understood or cannot take effect: `rule` says what is wrong and
    /// how to fix it, `file`, `line` and `key` where (a profile's error; reason `refused`).
    public init(file: String, line: Int, key: String?, rule: String) {
        self.init("read \(file)", [file], errno: .EINVAL, hint: rule, reason: .refused,
                  location: Location(file: file, line: line, key: key))
    }

    /// The command line cannot be understood: `message` says what and how to write it (reason
    /// `usage`, exit 2). Reads as the message alone.
    public static func usage(_ message: String) -> ReplicaError {
        ReplicaError("", errno: .EINVAL, hint: message, reason: .usage)
    }

    /// Nothing named `name` is configured: `message` says where it was looked for and how to
    /// configure it (reason `notConfigured`, exit 6). Reads as the message alone.
    public static func notConfigured(_ message: String) -> ReplicaError {
        ReplicaError("", errno: .ENOENT, hint: message, reason: .notConfigured)
    }

    /// The same error with another reason (a lookup's `notFound` that, for the tool, means
    /// nothing of that name is configured).
    public func because(_ reason: Reason) -> ReplicaError {
        var error = self
        error.reason = reason
        return error
    }

    /// The rule broken, as the hint says it (for an error with a location, the whole message after
    /// the place), or the description when there is no hint.
    public var rule: String { hint ?? description }

    /// An error carrying the calling thread's current `errno`, as a failed call set it.
    public static func current(_ operation: String, _ objects: [String] = [], hint: String? = nil) -> ReplicaError {
        let errno = Errno.current
        return ReplicaError(operation, objects, errno: errno, hint: hint, reason: Reason(errno, fromCall: true))
    }

    /// `web.service.conf:12: Preserve=: the rule` for an error with a location (`command line:
    /// --preserve: the rule` for a flag); `call("object" → "object"): ERRNO: detail: hint` otherwise.
    public var description: String {
        if operation.isEmpty { return hint ?? "\(errno)" }
        if let location {
            let place = location.line > 0 ? "\(location.file):\(location.line)" : location.file
            let what = location.key.map { $0.hasPrefix("-") ? "\($0): " : "\($0)=: " } ?? ""
            return (place.isEmpty ? "" : "\(place): ") + what + (hint ?? "\(errno)")
        }
        var text = "\(operation)(\(objects.map { "\"\($0)\"" }.joined(separator: " → "))): \(errno)"
        if let detail { text += ": \(detail)" }
        if let hint { text += ": \(hint)" }
        return text
    }
}

/// Runs a C call that reports failure as -1 + errno, retrying on EINTR, and turns failure into a
/// `ReplicaError` naming the call and paths.
@inline(__always)
public func syscall<T: FixedWidthInteger>(
    _ call: String, _ paths: String..., hint: String? = nil, _ body: () -> T
) throws(ReplicaError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let errno = Errno.current
        if errno == .EINTR { continue }
        throw ReplicaError(call, paths, errno: errno, hint: hint, reason: ReplicaError.Reason(errno, fromCall: true))
    }
}
