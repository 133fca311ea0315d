/// Replica's version, printed by every tool's `--version` and used for the package's.
public enum ReplicaVersion {
    /// The version, `MAJOR.MINOR.PATCH`.
    public static let string = "0.7.0"
}
