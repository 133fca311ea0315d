/// Replica's process exit codes (DESIGN: never 200–243, which are systemd's).
public enum ExitCode {
    public static let ok: Int32 = 0
    public static let failure: Int32 = 1
    public static let usage: Int32 = 2
    public static let lockHeld: Int32 = 3
    public static let notConfigured: Int32 = 6
    public static let partialFailure: Int32 = 10
}
