/// A JSON value for `--json` output, serialized without Foundation (RFC 8259). Object keys keep
/// their order, so output is stable and diffable. Not `indirect`: arrays and objects already hold
/// their elements in storage of their own, so a value needs no box of its own (a list of 100,000
/// snapshots is 700,000 values).
public enum JSON: Equatable, Sendable {
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

    /// Compact when `indent` is nil; otherwise pretty-printed with that many spaces. Written as
    /// UTF-8 bytes into one buffer (a list of a thousand snapshots is a few hundred kilobytes).
    public func serialized(indent: Int? = 2) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        write(to: &out, indent: indent, depth: 0)
        return String(decoding: out, as: UTF8.self)
    }

    private func write(to out: inout [UInt8], indent: Int?, depth: Int) {
        switch self {
        case .null: out += "null".utf8
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .int(let i): out += String(i).utf8
        case .double(let d): out += (d.isFinite ? String(d) : "null").utf8
        case .string(let s): JSON.escape(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.newline(into: &out, indent: indent, depth: depth + 1)
                item.write(to: &out, indent: indent, depth: depth + 1)
            }
            if !items.isEmpty { JSON.newline(into: &out, indent: indent, depth: depth) }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.newline(into: &out, indent: indent, depth: depth + 1)
                JSON.escape(key, into: &out)
                out += (indent == nil ? ":" : ": ").utf8
                value.write(to: &out, indent: indent, depth: depth + 1)
            }
            if !members.isEmpty { JSON.newline(into: &out, indent: indent, depth: depth) }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A line break and the indentation of `depth`; nothing when compact.
    private static func newline(into out: inout [UInt8], indent: Int?, depth: Int) {
        guard let indent else { return }
        out.append(UInt8(ascii: "\n"))
        out += repeatElement(UInt8(ascii: " "), count: indent * depth)
    }

    /// A string in quotes, escaped as RFC 8259 asks; other bytes (valid UTF-8, a String's) as they are.
    /// A string with nothing to escape (nearly every one: names, uuids, times) is copied whole.
    static func escape(_ s: String, into out: inout [UInt8]) {
        var s = s
        s.withUTF8 { bytes in
            out.append(UInt8(ascii: "\""))
            if bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                for byte in bytes {
                    switch byte {
                    case UInt8(ascii: "\""): out += #"\""#.utf8
                    case UInt8(ascii: "\\"): out += #"\\"#.utf8
                    case UInt8(ascii: "\n"): out += #"\n"#.utf8
                    case UInt8(ascii: "\r"): out += #"\r"#.utf8
                    case UInt8(ascii: "\t"): out += #"\t"#.utf8
                    case ..<0x20:
                        let digits = Array("0123456789abcdef".utf8)
                        out += #"\u00"#.utf8
                        out += [digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]]
                    default: out.append(byte)
                    }
                }
            } else {
                out.append(contentsOf: bytes)
            }
            out.append(UInt8(ascii: "\""))
        }
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
