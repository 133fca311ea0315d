/// A machine's name, which is also its hostname: what systemd takes as a hostname
/// (`hostname_is_valid`, checked by `systemd-nspawn --machine=`): 1 to 64 bytes of letters, digits
/// and `-`, in non-empty labels joined by `.`, not starting with `-`.
public struct MachineName: Identity {
    public static let kind = "machine"
    /// The longest hostname systemd takes (`HOST_NAME_MAX`).
    public static let maxLength = 64

    public let rawValue: String

    /// Refused unless systemd takes it as a hostname.
    public init(_ name: String) throws(ReplicaError) {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard name.utf8.count <= Self.maxLength, !name.hasPrefix("-"), labels.allSatisfy({ label in
            !label.isEmpty && label.utf8.allSatisfy { IdentityText.isLetterOrDigit($0) || $0 == UInt8(ascii: "-") }
        }) else {
            throw Self.refusal(name, "a machine name is its hostname: 1 to 64 letters, digits and '-', labels joined by '.' "
                               + "(no '_', not starting with '-' or '.'), e.g. web1 or web1.lab")
        }
        rawValue = name
    }
}
