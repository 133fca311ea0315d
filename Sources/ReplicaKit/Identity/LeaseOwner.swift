/// Who holds an address lease or a network record: a service's unit or a namespace's name. One line
/// of 1 to 255 bytes, no `/`, no control characters, not starting with `.` (the pool's own files).
public struct LeaseOwner: Identity {
    public static let kind = "lease owner"

    public let rawValue: String

    /// Refused unless it can name a lease file and a record line as it is.
    public init(_ name: String) throws(ReplicaError) {
        guard !name.isEmpty, name.utf8.count <= 255, !name.hasPrefix("."), !name.contains("/"),
              !ControlCharacters.appear(in: name) else {
            throw Self.refusal(name, "an owner is a service or namespace name: 1 to 255 bytes, no '/', no control characters, "
                               + "not starting with '.'")
        }
        rawValue = name
    }
}
