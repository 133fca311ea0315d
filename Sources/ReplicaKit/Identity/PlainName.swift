/// A name Replica gives a folder of its own on the store from outside input — a template, a Nomad
/// namespace or volume id: one path component of 1 to 64 ASCII letters, digits, `-`, `_` or `.`,
/// not starting with `.` (so never `.`, `..` or a staging name). `kind` says which in messages.
public struct PlainName: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The longest plain name, unless a caller's rule allows more (Nomad's namespaces: 128).
    public static let maxLength = 64

    /// The name as given.
    public let rawValue: String

    /// Refused, naming `kind` ("template", "volume id"), unless it is a plain name of at most
    /// `maxLength` bytes.
    public init(_ name: String, kind: String, maxLength: Int = PlainName.maxLength) throws(ReplicaError) {
        guard !name.isEmpty, name.utf8.count <= maxLength, !name.hasPrefix("."), name.utf8.allSatisfy({
            IdentityText.isLetterOrDigit($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
        }) else {
            throw ReplicaError(kind, [ControlCharacters.masked(name)], errno: .EINVAL,
                               hint: "takes 1 to \(maxLength) letters, digits, '-', '_' or '.', not starting with '.'",
                               reason: .refused)
        }
        rawValue = name
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}
