/// A systemd unit's name, as systemd takes it (`unit_name_is_valid`): at most 255 bytes of ASCII
/// letters, digits and `: - _ . \ @`, a type suffix, not starting with `.` or `@`. `web` is read as
/// `web.service`. Safe as it is in a path component and in unit-file text (no `/`, `%`, spaces or
/// controls).
public struct UnitName: Identity {
    public static let kind = "unit"
    /// The unit types a name may end in; a name without one is a service.
    public static let types = ["service", "socket", "timer", "target", "mount", "path"]

    public let rawValue: String

    /// `web` and `web.service` both name `web.service`; refused unless systemd would take it.
    public init(_ name: String) throws(ReplicaError) {
        let unit = Self.types.contains { name.hasSuffix(".\($0)") } ? name : name + ".service"
        guard !name.isEmpty, unit.utf8.count <= 255, !unit.hasPrefix("."), !unit.hasPrefix("@"),
              unit.utf8.allSatisfy({ IdentityText.isLetterOrDigit($0) || ":-_.\\@".utf8.contains($0) }) else {
            throw Self.refusal(unit, "not a unit name: letters, digits and : - _ . \\ @ only, at most 255 bytes, "
                               + "not starting with . or @")
        }
        rawValue = unit
    }

    /// The name without its type: `web` for `web.service`.
    public var prefix: String { String(rawValue[..<rawValue.lastIndex(of: ".")!]) }

    /// Its type: `service` for `web.service`.
    public var type: String { String(rawValue[rawValue.index(after: rawValue.lastIndex(of: ".")!)...]) }

    /// Whether it is a template (`postgresql@.service`), which names no instance.
    public var isTemplate: Bool { prefix.hasSuffix("@") }

    /// The instance of a template's instance (`15-main` of `postgresql@15-main.service`), or nil.
    public var instance: String? {
        guard let at = prefix.firstIndex(of: "@"), !isTemplate else { return nil }
        return String(prefix[prefix.index(after: at)...])
    }
}
