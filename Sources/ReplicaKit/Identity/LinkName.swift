/// A network interface's name as the kernel takes it (`dev_valid_name`), checked before any netlink
/// call: 1 to 15 bytes (`IFNAMSIZ` is 16 with the NUL), not `.` or `..`, no `/`, `:` or whitespace,
/// and no `%` (the kernel would take `%d` as a template and pick a name itself).
public struct LinkName: Identity {
    public static let kind = "interface name"
    /// `IFNAMSIZ` less the terminating NUL.
    public static let maxLength = 15

    public let rawValue: String

    /// Refused, naming the rule broken, unless the kernel would take `name` as it is.
    public init(_ name: String) throws(ReplicaError) {
        let bytes = Array(name.utf8)
        let why: String? =
            bytes.isEmpty ? "an interface name cannot be empty"
            : bytes.count > Self.maxLength ? "\(bytes.count) bytes; an interface name has at most \(Self.maxLength)"
            : (name == "." || name == "..") ? "\"\(name)\" is not a name"
            : bytes.contains(UInt8(ascii: "/")) ? "an interface name cannot contain \"/\""
            : bytes.contains(UInt8(ascii: ":")) ? "an interface name cannot contain \":\" (that is alias syntax)"
            : bytes.contains(where: { $0 <= 0x20 || $0 == 0x7f }) ? "an interface name cannot contain spaces or control characters"
            : bytes.contains(UInt8(ascii: "%")) ? "an interface name cannot contain \"%\" (the kernel reads %d as a template)"
            : nil
        if let why { throw Self.refusal(name, why) }
        rawValue = name
    }
}
