/// ReplicaKit's one error type: the C call (or operation) that failed, the paths it acted on, the
/// `errno`, and where useful a hint naming the rule that was broken and the fix.
///
/// Reads like `mount("/src" → "/dst"): Operation not permitted (EPERM)`.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call or operation, e.g. `openat2`, `mount`, `mountinfo`.
    public var call: String
    /// The objects acted on, in call order (source before target).
    public var paths: [String]
    /// The error number reported by the kernel or library.
    public var errno: Errno
    /// The rule broken and how to fix it, when the errno alone does not say.
    public var hint: String?

    public init(_ call: String, _ paths: [String] = [], errno: Errno, hint: String? = nil) {
        self.call = call
        self.paths = paths
        self.errno = errno
        self.hint = hint
    }

    /// An error carrying the calling thread's current `errno`.
    public static func current(_ call: String, _ paths: [String] = [], hint: String? = nil) -> SystemError {
        SystemError(call, paths, errno: .current, hint: hint)
    }

    public var description: String {
        let objects = paths.map { "\"\($0)\"" }.joined(separator: " → ")
        let head = "\(call)(\(objects)): \(errno)"
        guard let hint else { return head }
        return "\(head): \(hint)"
    }
}

/// Runs a C call that reports failure as -1 + errno, retrying on EINTR, and turns failure into a
/// `SystemError` naming the call and paths.
@inline(__always)
public func syscall<T: FixedWidthInteger>(
    _ call: String, _ paths: String..., hint: String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let errno = Errno.current
        if errno == .EINTR { continue }
        throw SystemError(call, paths, errno: errno, hint: hint)
    }
}
