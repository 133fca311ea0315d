/// A name Replica takes from outside — a profile, a command line, a job's parameters — checked once,
/// when the value is made: a value of an identity type is valid by construction, so code that takes
/// one never checks it again and no two places can disagree about the rule. Each type names the
/// rule's owner (systemd, the kernel, btrfs) and refuses with `ReplicaError.Reason.refused`, saying
/// what the rule is.
public protocol Identity: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The name as the system takes it.
    var rawValue: String { get }
    /// What kind of object it names, for messages: "unit", "machine".
    static var kind: String { get }
}

extension Identity {
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The refusal every identity throws: `kind`, the name as given (control characters shown as
    /// `?`, so a message cannot be forged), and the rule with its fix.
    static func refusal(_ name: String, _ rule: String) -> ReplicaError {
        ReplicaError(kind, [ControlCharacters.masked(name)], errno: .EINVAL, hint: rule, reason: .refused)
    }
}

/// Byte classes the identity rules are written in.
enum IdentityText {
    static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A)
    }
}
