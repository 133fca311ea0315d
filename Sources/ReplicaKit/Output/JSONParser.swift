/// Reading JSON (RFC 8259) without Foundation: for input that arrives as JSON, such as the
/// parameters Nomad passes a host-volume plugin. Strict: one value and nothing after it, no
/// trailing commas, no comments, strings of valid escapes only; objects keep their order and
/// duplicate keys are refused (so a value cannot be shadowed by a second one).
extension JSON {
    /// Parses `text` as one JSON value; the error names the byte offset and what was expected.
    public static func parse(_ text: String) throws(ReplicaError) -> JSON {
        var reader = JSONReader(bytes: Array(text.utf8))
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.offset == reader.bytes.count else { throw reader.error("nothing after the value") }
        return value
    }

    /// A member of an object; nil for a missing one or another kind of value.
    public subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// An item of an array; nil out of range or for another kind of value.
    public subscript(index: Int) -> JSON? {
        guard case .array(let items) = self, items.indices.contains(index) else { return nil }
        return items[index]
    }

    /// The string, for a string value.
    public var string: String? { if case .string(let value) = self { value } else { nil } }
    /// The items, for an array.
    public var array: [JSON]? { if case .array(let items) = self { items } else { nil } }

    /// The members of an object whose every value is a string (`{"key": "value", …}`), in order;
    /// nil for any other value.
    public var stringMembers: [(String, String)]? {
        guard case .object(let members) = self else { return nil }
        var strings: [(String, String)] = []
        for (key, value) in members {
            guard case .string(let string) = value else { return nil }
            strings.append((key, string))
        }
        return strings
    }
}

/// A cursor over the bytes of one JSON text.
private struct JSONReader {
    let bytes: [UInt8]
    var offset = 0
    /// Deeper nesting is refused rather than recursed into.
    static let maximumDepth = 64

    func error(_ expected: String) -> ReplicaError {
        ReplicaError("parse JSON", [], errno: .EINVAL, hint: "at byte \(offset): expected \(expected)", reason: .refused)
    }

    mutating func skipSpace() {
        while offset < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
    }

    mutating func expect(_ literal: String, _ value: JSON) throws(ReplicaError) -> JSON {
        let wanted = Array(literal.utf8)
        guard bytes.count - offset >= wanted.count, Array(bytes[offset..<offset + wanted.count]) == wanted else {
            throw error("a value")
        }
        offset += wanted.count
        return value
    }

    mutating func value(depth: Int) throws(ReplicaError) -> JSON {
        guard depth < Self.maximumDepth else { throw error("at most \(Self.maximumDepth) levels of nesting") }
        guard offset < bytes.count else { throw error("a value") }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        default: return try number()
        }
    }

    mutating func object(depth: Int) throws(ReplicaError) -> JSON {
        offset += 1
        var members: [(String, JSON)] = []
        var keys: Set<String> = []
        skipSpace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object([]) }
        while true {
            skipSpace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw error("a member name in quotes") }
            let key = try string()
            guard keys.insert(key).inserted else { throw error("each member name once (\"\(key)\" is repeated)") }
            skipSpace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw error("':' after a member name") }
            offset += 1
            skipSpace()
            members.append((key, try value(depth: depth + 1)))
            skipSpace()
            guard offset < bytes.count else { throw error("',' or '}'") }
            if bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(members) }
            guard bytes[offset] == UInt8(ascii: ",") else { throw error("',' or '}'") }
            offset += 1
        }
    }

    mutating func array(depth: Int) throws(ReplicaError) -> JSON {
        offset += 1
        var items: [JSON] = []
        skipSpace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array([]) }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard offset < bytes.count else { throw error("',' or ']'") }
            if bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(items) }
            guard bytes[offset] == UInt8(ascii: ",") else { throw error("',' or ']'") }
            offset += 1
        }
    }

    mutating func hexQuad() throws(ReplicaError) -> UInt32 {
        guard bytes.count - offset >= 4 else { throw error("four hex digits after \\u") }
        var value: UInt32 = 0
        for byte in bytes[offset..<offset + 4] {
            guard let digit = UInt32(String(UnicodeScalar(byte)), radix: 16) else { throw error("four hex digits after \\u") }
            value = value << 4 | digit
        }
        offset += 4
        return value
    }

    mutating func string() throws(ReplicaError) -> String {
        offset += 1
        var scalars = String.UnicodeScalarView()
        var start = offset
        func flush(_ end: Int) throws(ReplicaError) {
            guard let text = String(validating: bytes[start..<end], as: UTF8.self) else { throw error("valid UTF-8") }
            scalars.append(contentsOf: text.unicodeScalars)
        }
        while true {
            guard offset < bytes.count else { throw error("the closing quote") }
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") {
                try flush(offset)
                offset += 1
                return String(scalars)
            }
            guard byte >= 0x20 else { throw error("no control character inside a string (escape it)") }
            guard byte == UInt8(ascii: "\\") else { offset += 1; continue }
            try flush(offset)
            offset += 1
            guard offset < bytes.count else { throw error("an escape") }
            let escape = bytes[offset]
            offset += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hexQuad()
                if (0xD800..<0xDC00).contains(code) {
                    guard bytes.count - offset >= 2, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") else {
                        throw error("a low surrogate after a high one")
                    }
                    offset += 2
                    let low = try hexQuad()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("a low surrogate after a high one") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw error("a Unicode scalar, not a lone surrogate") }
                scalars.append(scalar)
            default: throw error("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)")
            }
            start = offset
        }
    }

    mutating func number() throws(ReplicaError) -> JSON {
        let start = offset
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        func digits() -> Int {
            let from = offset
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
            return offset - from
        }
        let integerStart = offset
        guard digits() > 0 else { throw error("a value") }
        guard bytes[integerStart] != UInt8(ascii: "0") || offset - integerStart == 1 else { throw error("no leading zero") }
        var isInteger = true
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            isInteger = false
            guard digits() > 0 else { throw error("digits after the decimal point") }
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
            offset += 1
            isInteger = false
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            guard digits() > 0 else { throw error("digits in the exponent") }
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        if isInteger, let integer = Int64(text) { return .int(integer) }
        guard let double = Double(text) else { throw error("a number") }
        return .double(double)
    }
}
