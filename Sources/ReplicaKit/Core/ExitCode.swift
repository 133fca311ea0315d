/// Replica's process exit codes: never 200–243, which systemd uses for its own failures (systemd.exec(5)).
public enum ExitCode {
    /// 0: done.
    public static let ok: Int32 = 0
    /// 1: failed (the message says what, the rule and the fix).
    public static let failure: Int32 = 1
    /// 2: a usage error: the command line was wrong; nothing was done.
    public static let usage: Int32 = 2
    /// 3: another run holds the lock on the same subvolume or unit (or, for `check`, UNKNOWN).
    public static let lockHeld: Int32 = 3
    /// 6: not configured: no profile or policy for what was named.
    public static let notConfigured: Int32 = 6
    /// 10: partial failure: some of the objects named were done, some not.
    public static let partialFailure: Int32 = 10
}
