import CReplicaShim
import Glibc

/// The end of an external command: how it exited and what it printed (stdout and stderr together).
public struct CommandResult: Sendable {
    /// How it ended.
    public var status: ExitStatus
    /// What it wrote to standard output and standard error, interleaved.
    public var output: String
}

/// Runs external programs with `posix_spawnp(3)`: stdin from `/dev/null`, stdout and stderr captured
/// (or discarded), every other descriptor closed in the child. Used where a library step is a
/// program (`mkfs.btrfs`) and by benchmarks to time the command a user would run instead.
public enum Command {
    /// Runs `arguments` (the first is looked up in `PATH`) and waits; standard input from `input`
    /// (nil: `/dev/null`). Output is read until every writer closes it (a daemon the program starts
    /// must close it too).
    public static func run(_ arguments: [String], input: Int32? = nil, captureOutput: Bool = true) throws(ReplicaError) -> CommandResult {
        guard captureOutput else {
            return CommandResult(status: try ExitStatus.wait(for: try spawn(arguments, input: input, output: nil)), output: "")
        }
        var pipe: [Int32] = [-1, -1]
        _ = try syscall("pipe2") { replica_pipe_cloexec(&pipe) }
        let reader = OwnedFD(adopting: pipe[0])
        let pid: pid_t
        do {
            let writer = OwnedFD(adopting: pipe[1])  // closed at the end of this scope, so EOF arrives
            pid = try spawn(arguments, input: input, output: writer.rawValue)
        }
        let bytes = (try? reader.readAll(limit: 16 << 20, name: arguments[0])) ?? []
        let status = try ExitStatus.wait(for: pid)
        return CommandResult(status: status, output: String(decoding: bytes, as: UTF8.self))
    }

    /// Runs and requires exit status 0; otherwise the error names the command and quotes its output.
    @discardableResult
    public static func check(_ arguments: [String]) throws(ReplicaError) -> String {
        let result = try run(arguments)
        guard result.status.isSuccess else {
            let tail = result.output.split(separator: "\n").suffix(5).joined(separator: "; ")
            throw ReplicaError(arguments[0], Array(arguments.dropFirst()), errno: .EIO,
                              hint: "\(result.status)" + (tail.isEmpty ? "" : ": \(tail)"))
        }
        return result.output
    }

    /// Starts the program and returns its pid: standard input from `input` (nil: `/dev/null`),
    /// standard output to `output` and standard error to `errors`, or to `output` too when `errors`
    /// is nil (nil for both: `/dev/null`); `environment` added to ours (`env NAME=VALUE …`), and
    /// with `newSession` in a session of its own (`setsid`, `POSIX_SPAWN_SETSID`) — no extra programs.
    /// The child's signal mask is empty and every signal at its default (`POSIX_SPAWN_SETSIGMASK |
    /// POSIX_SPAWN_SETSIGDEF`). `passing`: descriptors the child gets as 3, 4 … (every other one
    /// is closed), as systemd passes sockets.
    public static func spawn(_ arguments: [String], input: Int32? = nil, output: Int32? = nil,
                             errors: Int32? = nil, environment: [(String, String)] = [],
                             newSession: Bool = false, passing: [Int32] = []) throws(ReplicaError) -> pid_t {
        precondition(!arguments.isEmpty, "a command needs a program name")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input { posix_spawn_file_actions_adddup2(&actions, input, 0) } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if let output { posix_spawn_file_actions_adddup2(&actions, output, 1) } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        if let stderr = errors ?? output { posix_spawn_file_actions_adddup2(&actions, stderr, 2) } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        for (index, fd) in passing.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(index)) }
        _ = withUnsafeMutablePointer(to: &actions) { replica_spawn_addclosefrom($0, 3 + Int32(passing.count)) }
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A program starts as from a fresh login: no signal blocked (a caller's thread may block
        // SIGTERM, which would make a daemon unstoppable), SIGPIPE and the other signals at their
        // defaults (ours ignores SIGPIPE).
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigfillset(&defaults)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | (newSession ? replica_POSIX_SPAWN_SETSID : 0))
        var variables: [UnsafeMutablePointer<CChar>?] = []
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if !environment.contains(where: { text.hasPrefix("\($0.0)=") }) { variables.append(strdup(entry)) }
            index += 1
        }
        variables += environment.map { strdup("\($0.0)=\($0.1)") } + [nil]
        defer { for pointer in variables { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, variables)
        guard result == 0 else {
            throw ReplicaError("posix_spawnp", [arguments[0]], errno: Errno(rawValue: result),
                              hint: result == ENOENT ? "install it or add it to PATH" : nil)
        }
        return pid
    }
}
