import Glibc

/// How a child process ended, decoded from a `waitpid(2)` status.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    /// It called `exit` with this code.
    case exited(Int32)
    /// A signal with this number ended it.
    case signaled(Int32)

    /// Decodes `WIFEXITED`/`WEXITSTATUS`/`WTERMSIG` (function-like macros Swift does not import).
    public init(waitStatus: Int32) {
        let signal = waitStatus & 0x7f
        self = signal == 0 ? .exited((waitStatus >> 8) & 0xff) : .signaled(signal)
    }

    /// Whether it exited with 0.
    public var isSuccess: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }

    /// `waitpid(2)` for one child, retrying on EINTR.
    public static func wait(for pid: pid_t) throws(ReplicaError) -> ExitStatus {
        var status: Int32 = 0
        _ = try syscall("waitpid", "\(pid)") { waitpid(pid, &status, 0) }
        return ExitStatus(waitStatus: status)
    }
}
