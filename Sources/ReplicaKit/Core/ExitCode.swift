/// Replica's process exit codes, one table for every tool: never 200–243, which systemd uses for
/// its own failures (systemd.exec(5)). A monitoring check (`replica-snap check`) answers in
/// Nagios's codes instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN for anything that keeps it from
/// judging. `replica-run` exits with its command's own code once the command runs.
public enum ExitCode {
    /// 0: done.
    public static let ok: Int32 = 0
    /// 1: failed (the message says what, the rule and the fix); also drift found by a check.
    public static let failure: Int32 = 1
    /// 2: a usage error: the command line, or a profile, set or policy it names, cannot be
    /// understood; nothing was done.
    public static let usage: Int32 = 2
    /// 3: another run holds the lock on the same subvolume or unit.
    public static let lockHeld: Int32 = 3
    /// 3 from a monitoring check: UNKNOWN, it could not judge.
    public static let unknown: Int32 = 3
    /// 6: not configured: no profile, policy, set, machine or template of that name.
    public static let notConfigured: Int32 = 6
    /// 10: partial failure: some of the objects named were done, some not.
    public static let partialFailure: Int32 = 10

    /// The code of a command over several objects (subvolumes, snapshots, names): 0 when nothing
    /// failed; 10 when some were done and some not; 3 when none was done and every failure was a
    /// held lock; 1 otherwise.
    public static func of(done: Int, failures: [ReplicaError]) -> Int32 {
        if failures.isEmpty { return ok }
        if done > 0 { return partialFailure }
        return failures.allSatisfy { $0.reason == .lockHeld } ? lockHeld : failure
    }

    /// The code a tool exits with for `error`: by its reason, and 2 for an error about what was
    /// written (a profile's line, a flag).
    public static func of(_ error: ReplicaError) -> Int32 {
        switch error.reason {
        case .usage: return usage
        case .notConfigured: return notConfigured
        case .lockHeld: return lockHeld
        default: return error.location == nil ? failure : usage
        }
    }
}
