import CSeccomp

/// libseccomp facts; filters themselves come with the sandbox plans.
public enum Seccomp {
    /// The libseccomp version in use, `seccomp_version(3)`, e.g. `2.5.4`.
    public static var libraryVersion: String {
        guard let version = seccomp_version() else { return "unknown" }
        return "\(version.pointee.major).\(version.pointee.minor).\(version.pointee.micro)"
    }

    /// The kernel API level libseccomp detected, `seccomp_api_get(3)` (0 when seccomp is unusable).
    public static var apiLevel: UInt32 { seccomp_api_get() }
}
