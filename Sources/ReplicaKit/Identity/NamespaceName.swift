/// A named network namespace, pinned as `/run/netns/NAME` (what `ip netns` takes): 1 to 255
/// bytes, one path component (no `/`, not `.` or `..`), no control characters.
public struct NamespaceName: Identity {
    public static let kind = "network namespace"

    public let rawValue: String

    /// Refused unless it is one path component `ip netns` would take.
    public init(_ name: String) throws(ReplicaError) {
        let why: String? =
            name.isEmpty ? "a namespace name cannot be empty"
            : (name == "." || name == "..") ? "\"\(name)\" is not a name"
            : name.contains("/") ? "a namespace name cannot contain \"/\""
            : ControlCharacters.appear(in: name) ? "a namespace name cannot contain control characters"
            : name.utf8.count > 255 ? "\(name.utf8.count) bytes; the limit is 255"
            : nil
        if let why { throw Self.refusal(name, why) }
        rawValue = name
    }
}
