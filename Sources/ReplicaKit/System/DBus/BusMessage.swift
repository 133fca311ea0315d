/// A D-Bus value as the service manager sends it, typed but not tied to a signature: what
/// `busctl get-property` prints. Arrays are lists, structs and dict entries are records.
public indirect enum BusValue: Equatable, Sendable, CustomStringConvertible {
    /// `s`, `o`, `g`: text, an object path, a signature.
    case string(String)
    /// `b`.
    case bool(Bool)
    /// `n`, `i`, `x`, `h`: signed numbers.
    case integer(Int64)
    /// `y`, `q`, `u`, `t`: unsigned numbers.
    case unsigned(UInt64)
    /// `a…`: an array (a dictionary is a list of two-field records).
    case list([BusValue])
    /// `(…)`, `{…}`: a struct or a dictionary entry.
    case record([BusValue])

    /// As `busctl` writes values: strings quoted, lists in brackets, records in parentheses.
    public var description: String {
        switch self {
        case .string(let text): "\"\(text)\""
        case .bool(let value): value ? "true" : "false"
        case .integer(let value): "\(value)"
        case .unsigned(let value): "\(value)"
        case .list(let items): "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .record(let fields): "(" + fields.map(\.description).joined(separator: " ") + ")"
        }
    }
}

/// Lays out a message body in D-Bus's wire format, little-endian (what `sd_bus_message_append`
/// does): each value aligned to its size, counted from the start of the body, which a message
/// places at a multiple of 8.
struct BusWriter {
    /// The body so far.
    private(set) var bytes: [UInt8] = []

    /// Zero bytes up to the next multiple of `alignment`.
    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    /// `y`.
    mutating func byte(_ value: UInt8) { bytes.append(value) }

    /// `u`.
    mutating func uint32(_ value: UInt32) {
        pad(to: 4)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// `t`.
    mutating func uint64(_ value: UInt64) {
        pad(to: 8)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// `b`.
    mutating func bool(_ value: Bool) { uint32(value ? 1 : 0) }

    /// `s` and `o`: the length, the UTF-8 bytes, a NUL.
    mutating func string(_ value: String) {
        uint32(UInt32(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
        bytes.append(0)
    }

    /// `g`: a signature, its length in one byte.
    mutating func signature(_ value: String) {
        bytes.append(UInt8(truncatingIfNeeded: value.utf8.count))
        bytes.append(contentsOf: value.utf8)
        bytes.append(0)
    }

    /// `a…`: the length in bytes, then the elements `body` writes, the first aligned to
    /// `alignment` (8 for structs and dict entries: `BusSignature.alignment`).
    mutating func array(alignment: Int, _ body: (inout BusWriter) -> Void) {
        uint32(0)
        let lengthAt = bytes.count - 4
        pad(to: alignment)
        let start = bytes.count
        body(&self)
        withUnsafeBytes(of: UInt32(bytes.count - start).littleEndian) { bytes.replaceSubrange(lengthAt..<lengthAt + 4, with: $0) }
    }

    /// `(…)`: the fields `body` writes, aligned to 8.
    mutating func structure(_ body: (inout BusWriter) -> Void) {
        pad(to: 8)
        body(&self)
    }

    /// `v`: the signature of one value, then the value `body` writes.
    mutating func variant(_ signature: String, _ body: (inout BusWriter) -> Void) {
        self.signature(signature)
        body(&self)
    }
}

/// D-Bus type signatures: where one complete type ends, and how its values are aligned.
enum BusSignature {
    /// The alignment of values of the type starting with `code`.
    static func alignment(_ code: UInt8) -> Int {
        switch code {
        case UInt8(ascii: "y"), UInt8(ascii: "g"), UInt8(ascii: "v"): 1
        case UInt8(ascii: "n"), UInt8(ascii: "q"): 2
        case UInt8(ascii: "x"), UInt8(ascii: "t"), UInt8(ascii: "d"), UInt8(ascii: "("), UInt8(ascii: "{"): 8
        default: 4  // b, i, u, h, s, o, a
        }
    }

    /// The index just past the one complete type starting at `index` of `signature`.
    static func end(of signature: [UInt8], at index: Int, depth: Int = 0) throws(ReplicaError) -> Int {
        guard index < signature.count, depth < 64 else { throw BusReader.malformed("signature \(String(decoding: signature, as: UTF8.self))") }
        switch signature[index] {
        case UInt8(ascii: "a"): return try end(of: signature, at: index + 1, depth: depth + 1)
        case UInt8(ascii: "("), UInt8(ascii: "{"):
            let close = signature[index] == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "}")
            var next = index + 1
            while next < signature.count, signature[next] != close { next = try end(of: signature, at: next, depth: depth + 1) }
            guard next < signature.count, next > index + 1 else { throw BusReader.malformed("signature \(String(decoding: signature, as: UTF8.self))") }
            return next + 1
        default: return index + 1
        }
    }
}

/// Reads values in D-Bus's wire format from a received message (what `sd_bus_message_read`
/// does), in the byte order the sender marked; every length and offset is checked against the
/// bytes there are.
struct BusReader {
    private let bytes: [UInt8]
    private let bigEndian: Bool
    /// The next byte to read, counted from the start of the message (alignment is relative to it).
    private(set) var offset: Int
    /// Where reading must stop.
    private let limit: Int

    init(_ bytes: [UInt8], from offset: Int = 0, to limit: Int? = nil, bigEndian: Bool) {
        (self.bytes, self.offset, self.limit, self.bigEndian) = (bytes, offset, limit ?? bytes.count, bigEndian)
    }

    /// What a message that does not follow the wire format is refused with.
    static func malformed(_ what: String) -> ReplicaError {
        ReplicaError("read D-Bus message", errno: .EBADMSG, detail: "malformed \(what)")
    }

    /// Whether every byte up to the limit has been read.
    var atEnd: Bool { offset >= limit }

    /// Skips the padding up to the next multiple of `alignment`.
    mutating func align(_ alignment: Int) throws(ReplicaError) {
        let aligned = (offset + alignment - 1) / alignment * alignment
        guard aligned <= limit else { throw Self.malformed("padding") }
        offset = aligned
    }

    private mutating func take(_ count: Int) throws(ReplicaError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= limit - offset else { throw Self.malformed("length \(count)") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// An unsigned number of `size` bytes, aligned to its size.
    mutating func unsigned(_ size: Int) throws(ReplicaError) -> UInt64 {
        try align(size)
        let raw = try take(size)
        return (bigEndian ? Array(raw) : raw.reversed()).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// `s`, `o`: a length, the text, a NUL.
    mutating func string() throws(ReplicaError) -> String {
        let count = Int(try unsigned(4))
        let text = try take(count)
        guard try take(1).first == 0 else { throw Self.malformed("string") }
        return String(decoding: text, as: UTF8.self)
    }

    /// `g`: a length in one byte, the signature, a NUL.
    mutating func signature() throws(ReplicaError) -> String {
        let count = Int(try unsigned(1))
        let text = try take(count)
        guard try take(1).first == 0 else { throw Self.malformed("signature") }
        return String(decoding: text, as: UTF8.self)
    }

    /// Every value of `signature`, in order (a message body).
    mutating func values(_ signature: String) throws(ReplicaError) -> [BusValue] {
        let codes = Array(signature.utf8)
        var index = 0, values: [BusValue] = []
        while index < codes.count { values.append(try value(codes, &index)) }
        return values
    }

    /// One value of the complete type at `index` of `signature` (advanced past it), variants unwrapped.
    mutating func value(_ signature: [UInt8], _ index: inout Int, depth: Int = 0) throws(ReplicaError) -> BusValue {
        guard index < signature.count, depth < 64 else { throw Self.malformed("nesting") }
        let code = signature[index]
        switch code {
        case UInt8(ascii: "a"):
            let length = Int(try unsigned(4))
            guard length <= 64 << 20 else { throw Self.malformed("array of \(length) bytes") }
            let element = index + 1
            var after = try BusSignature.end(of: signature, at: element)
            try align(BusSignature.alignment(signature[element]))
            let end = offset + length
            guard end <= limit else { throw Self.malformed("array of \(length) bytes") }
            var items: [BusValue] = []
            while offset < end {
                var next = element
                let start = offset
                items.append(try value(signature, &next, depth: depth + 1))
                guard offset > start else { throw Self.malformed("array of empty elements") }
                after = next
            }
            guard offset == end else { throw Self.malformed("array end") }
            index = after
            return .list(items)
        case UInt8(ascii: "("), UInt8(ascii: "{"):
            try align(8)
            let close = code == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "}")
            var fields: [BusValue] = []
            index += 1
            while index < signature.count, signature[index] != close { fields.append(try value(signature, &index, depth: depth + 1)) }
            guard index < signature.count, !fields.isEmpty else { throw Self.malformed("struct") }
            index += 1
            return .record(fields)
        case UInt8(ascii: "v"):
            let inner = Array(try self.signature().utf8)
            var innerIndex = 0
            let value = try value(inner, &innerIndex, depth: depth + 1)
            guard innerIndex == inner.count else { throw Self.malformed("variant") }
            index += 1
            return value
        case UInt8(ascii: "s"), UInt8(ascii: "o"):
            index += 1
            return .string(try string())
        case UInt8(ascii: "g"):
            index += 1
            return .string(try self.signature())
        case UInt8(ascii: "b"):
            index += 1
            let raw = try unsigned(4)
            guard raw <= 1 else { throw Self.malformed("boolean \(raw)") }
            return .bool(raw == 1)
        case UInt8(ascii: "y"): index += 1; return .unsigned(try unsigned(1))
        case UInt8(ascii: "q"): index += 1; return .unsigned(try unsigned(2))
        case UInt8(ascii: "u"): index += 1; return .unsigned(try unsigned(4))
        case UInt8(ascii: "t"), UInt8(ascii: "d"): index += 1; return .unsigned(try unsigned(8))  // "d": the bits, compared as they are
        case UInt8(ascii: "n"): index += 1; return .integer(Int64(Int16(truncatingIfNeeded: try unsigned(2))))
        case UInt8(ascii: "i"), UInt8(ascii: "h"): index += 1; return .integer(Int64(Int32(truncatingIfNeeded: try unsigned(4))))
        case UInt8(ascii: "x"): index += 1; return .integer(Int64(bitPattern: try unsigned(8)))
        default: throw Self.malformed("type code \(Character(Unicode.Scalar(code)))")
        }
    }
}

/// One D-Bus message as the wire protocol frames it (the specification's "Message Format"):
/// a 12-byte fixed header, the header fields `a(yv)`, padding to 8, the body.
struct BusMessage {
    /// The message type, the header's second byte.
    enum Kind: UInt8 {
        case methodCall = 1, methodReturn = 2, error = 3, signal = 4
    }

    var kind: Kind
    var serial: UInt32
    /// The serial of the call this answers (header field 5).
    var replySerial: UInt32?
    /// An error reply's name, `org.freedesktop.DBus.Error.AccessDenied` (header field 4).
    var errorName: String?
    /// The body's values.
    var body: [BusValue]

    /// A method call, laid out for sending: `destination`, object `path`, `interface`, `member`,
    /// and a body of `signature` that `arguments` writes.
    static func methodCall(serial: UInt32, destination: String?, path: String, interface: String, member: String,
                           signature: String = "", _ arguments: (inout BusWriter) -> Void = { _ in }) -> [UInt8] {
        var body = BusWriter()
        arguments(&body)
        var header = BusWriter()
        for byte in [UInt8(ascii: "l"), Kind.methodCall.rawValue, 0, 1] { header.byte(byte) }
        header.uint32(UInt32(body.bytes.count))
        header.uint32(serial)
        header.array(alignment: 8) { fields in
            func field(_ code: UInt8, _ type: String, _ write: (inout BusWriter) -> Void) {
                fields.structure { $0.byte(code); $0.variant(type, write) }
            }
            field(1, "o") { $0.string(path) }
            field(2, "s") { $0.string(interface) }
            field(3, "s") { $0.string(member) }
            if let destination { field(6, "s") { $0.string(destination) } }
            if !signature.isEmpty { field(8, "g") { $0.signature(signature) } }
        }
        header.pad(to: 8)
        return header.bytes + body.bytes
    }

    /// The size of the whole message whose first 16 bytes are `start`, or nil when they are not
    /// a D-Bus message's.
    static func size(_ start: ArraySlice<UInt8>) -> Int? {
        guard start.count >= 16, let order = start.first, order == UInt8(ascii: "l") || order == UInt8(ascii: "B") else { return nil }
        var header = BusReader(Array(start.prefix(16)), from: 4, bigEndian: order == UInt8(ascii: "B"))
        guard let body = try? header.unsigned(4), (try? header.unsigned(4)) != nil, let fields = try? header.unsigned(4),
              body <= 128 << 20, fields <= 128 << 20 else { return nil }
        return (16 + Int(fields) + 7) / 8 * 8 + Int(body)
    }

    /// Reads a whole received message (`bytes`, exactly `size` long).
    init(_ bytes: [UInt8]) throws(ReplicaError) {
        guard let size = Self.size(bytes[...]), size == bytes.count, let kind = Kind(rawValue: bytes[1]) else {
            throw BusReader.malformed("header")
        }
        var reader = BusReader(bytes, from: 4, bigEndian: bytes[0] == UInt8(ascii: "B"))
        let bodyLength = Int(try reader.unsigned(4))
        serial = UInt32(try reader.unsigned(4))
        self.kind = kind
        var signature = ""
        let fieldsSignature = Array("a(yv)".utf8)
        var index = 0
        guard case .list(let fields) = try reader.value(fieldsSignature, &index) else { throw BusReader.malformed("header fields") }
        for case .record(let field) in fields where field.count == 2 {
            switch (field[0], field[1]) {
            case (.unsigned(4), .string(let name)): errorName = name
            case (.unsigned(5), .unsigned(let serial)): replySerial = UInt32(truncatingIfNeeded: serial)
            case (.unsigned(8), .string(let types)): signature = types
            default: break
            }
        }
        try reader.align(8)
        guard bytes.count - reader.offset == bodyLength else { throw BusReader.malformed("body length") }
        var bodyReader = BusReader(bytes, from: reader.offset, bigEndian: bytes[0] == UInt8(ascii: "B"))
        body = try bodyReader.values(signature)
        guard bodyReader.atEnd else { throw BusReader.malformed("body") }
    }
}
