import CReplicaShim
import Glibc

/// Runs a command as a child and stays beside it, as a supervisor does: SIGTERM, SIGINT and SIGHUP
/// sent to this process go to the child, and the call returns how the child ended — so the
/// caller can undo what it made for the child (`replica-run --standalone` takes the network down).
public enum Supervisor {
    /// Forks; the child unblocks the signals and runs `child`, which must replace itself
    /// (`execvp`) or exit — an error it returns is printed after `name` and exits 1. The parent
    /// reads SIGTERM, SIGINT, SIGHUP and SIGCHLD from a signalfd(2), passes the first three on, and
    /// returns when the child has ended (`waitpid(2)`).
    public static func run(name: String, _ child: () throws(ReplicaError) -> Never) throws(ReplicaError) -> ExitStatus {
        let signals = OwnedFD(adopting: try syscall("signalfd(SIGTERM, SIGINT, SIGHUP, SIGCHLD)") { replica_supervisor_signalfd() })
        let pid = fork()
        if pid == 0 {
            do throws(ReplicaError) {
                _ = try syscall("pthread_sigmask") { replica_unblock_supervisor_signals() }
                try child()
            } catch {
                printError("\(name): \(error)")
                _exit(ExitCode.failure)
            }
        }
        guard pid > 0 else { throw .current("fork") }
        var status: Int32 = 0
        while true {
            let ended = waitpid(pid, &status, WNOHANG)
            if ended == pid { return ExitStatus(waitStatus: status) }
            var info = [UInt8](repeating: 0, count: 128)  // struct signalfd_siginfo; ssi_signo comes first
            let n = read(signals.rawValue, &info, info.count)
            if n < 0 && Errno.current != .EINTR { throw .current("read signalfd") }
            let signal = Int32(info.withUnsafeBytes { $0.load(as: UInt32.self) })
            if n > 0, signal != SIGCHLD { kill(pid, signal) }
        }
    }
}

extension ExitStatus {
    /// The code a shell gives it: the exit code, or 128 + the signal's number.
    public var shellCode: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }
}
