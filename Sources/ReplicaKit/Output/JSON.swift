/// A JSON value for `--json` output, serialized without Foundation (RFC 8259). Object keys keep
/// their order, so output is stable and diffable.
public indirect enum JSON: Equatable, Sendable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// An integer.
    case int(Int64)
    /// A number; not finite ones are written as `null`.
    case double(Double)
    /// A string, escaped as RFC 8259 asks.
    case string(String)
    /// An array.
    case array([JSON])
    /// An object whose members keep their order.
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.serialized() == b.serialized() }

    /// Compact when `indent` is nil; otherwise pretty-printed with that many spaces.
    public func serialized(indent: Int? = 2) -> String {
        var out = ""
        write(to: &out, indent: indent, depth: 0)
        return out
    }

    private func write(to out: inout String, indent: Int?, depth: Int) {
        let newline = indent == nil ? "" : "\n"
        let pad = { (d: Int) in indent.map { String(repeating: " ", count: $0 * d) } ?? "" }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .string(let s): JSON.escape(s, into: &out)
        case .array(let items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "[" + newline
            for (i, item) in items.enumerated() {
                out += pad(depth + 1)
                item.write(to: &out, indent: indent, depth: depth + 1)
                out += (i < items.count - 1 ? "," : "") + newline
            }
            out += pad(depth) + "]"
        case .object(let members):
            guard !members.isEmpty else { out += "{}"; return }
            out += "{" + newline
            for (i, (key, value)) in members.enumerated() {
                out += pad(depth + 1)
                JSON.escape(key, into: &out)
                out += indent == nil ? ":" : ": "
                value.write(to: &out, indent: indent, depth: depth + 1)
                out += (i < members.count - 1 ? "," : "") + newline
            }
            out += pad(depth) + "}"
        }
    }

    static func escape(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

extension JSON {
    /// An object with `members` added after its own (for a value that is not an object: itself).
    public func merging(_ members: [(String, JSON)]) -> JSON {
        guard case .object(let own) = self else { return self }
        return .object(own + members)
    }
}

/// The one JSON envelope of every tool's `--json` output, schema `replica.v1` (described by
/// Docs/replica.schema.json, installed as /usr/share/doc/replica/replica.schema.json): which tool,
/// which version and which command made it, then the command's own members.
public enum JSONEnvelope {
    /// Bumped when a member is removed or changes meaning; new members do not bump it.
    public static let schema = "replica.v1"

    /// `{"schema": "replica.v1", "tool": …, "version": …, "action": …, members…}`.
    public static func make(tool: String, action: String, _ members: [(String, JSON)]) -> JSON {
        .object([("schema", .string(schema)), ("tool", .string(tool)), ("version", .string(ReplicaVersion.string)),
                 ("action", .string(action))] + members)
    }

    /// Prints `make(…)` as one pretty-printed document on standard output.
    public static func print(tool: String, action: String, _ members: [(String, JSON)]) {
        Swift.print(make(tool: tool, action: action, members).serialized())
    }
}
