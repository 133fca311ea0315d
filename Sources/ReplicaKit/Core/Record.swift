/// The one format of the records Replica writes for itself — a network record under
/// `/run/replica/net`, a machine's credentials and network in extended attributes: `key=value`
/// lines in UTF-8, in order, a key repeated for a list. A key is letters, digits, `_` and `-`; a
/// value is one line without control characters. Encoding refuses what the format cannot hold
/// rather than escaping it, so a value can never add a line; decoding refuses a line without `=`.
public struct Record: Equatable, Sendable {
    /// The fields, in order.
    public private(set) var fields: [Field]

    /// One `key=value` line.
    public struct Field: Equatable, Sendable {
        /// The key.
        public var key: String
        /// The value.
        public var value: String
    }

    /// An empty record.
    public init() { fields = [] }

    /// Appends `key=value`, refused (reason `refused`) when the key or the value cannot be a line of
    /// the format as they are.
    public mutating func append(_ key: String, _ value: String) throws(ReplicaError) {
        guard !key.isEmpty, key.utf8.allSatisfy({ IdentityText.isLetterOrDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
            throw ReplicaError("record", [ControlCharacters.masked(key)], errno: .EINVAL, hint: "a key is letters, digits, '_' and '-'",
                               reason: .refused)
        }
        guard !ControlCharacters.appear(in: value) else {
            throw ReplicaError("record", [key], errno: .EINVAL, hint: "a value is one line without control characters", reason: .refused)
        }
        fields.append(Field(key: key, value: value))
    }

    /// Appends each of `values` under `key`.
    public mutating func append(_ key: String, each values: [String]) throws(ReplicaError) {
        for value in values { try append(key, value) }
    }

    /// The last value of `key`, or nil.
    public func value(_ key: String) -> String? { fields.last { $0.key == key }?.value }

    /// Every value of `key`, in order.
    public func values(_ key: String) -> [String] { fields.filter { $0.key == key }.map(\.value) }

    /// The text: one `key=value` line each, each ending in a newline.
    public var encoded: String { fields.map { "\($0.key)=\($0.value)\n" }.joined() }

    /// Reads `text`; blank lines are skipped, a line without `=` is refused, naming `source`.
    public init(decoding text: String, source: String) throws(ReplicaError) {
        fields = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            guard let equals = line.firstIndex(of: "=") else {
                throw ReplicaError("read record", [source], errno: .EINVAL, hint: "a line without '=': not a record Replica wrote",
                                   reason: .refused)
            }
            try append(String(line[..<equals]), String(line[line.index(after: equals)...]))
        }
    }
}
