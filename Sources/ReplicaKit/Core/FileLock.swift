import Glibc

extension OwnedFD {
    /// Takes an exclusive `flock(2)` on this open lock file, retrying on EINTR: with `wait` nil, as
    /// long as it takes (`flock -x FILE`); otherwise until `wait` has passed (`flock -w SECONDS`),
    /// returning false if another holder still has it (`.zero`: one try, `flock -n`). The lock goes
    /// with the descriptor, so a holder killed with SIGKILL blocks nobody. Lock files are created
    /// once and never deleted: deleting one lets two holders lock two different inodes.
    public borrowing func lockExclusively(wait: Duration?, name: String) throws(ReplicaError) -> Bool {
        let fd = rawValue
        guard let wait else {
            _ = try syscall("flock", name) { flock(fd, LOCK_EX) }
            return true
        }
        let deadline = ContinuousClock.now + wait
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let errno = Errno.current
            if errno == .EINTR { continue }
            guard errno == .EWOULDBLOCK else { throw ReplicaError("flock", [name], errno: errno, reason: .init(errno, fromCall: true)) }
            if ContinuousClock.now >= deadline { return false }
            usleep(20_000)
        }
        return true
    }
}
