import CSystemd
import Glibc

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

    /// Reads one complete value from a message (`sd_bus_message_peek_type`, `_enter_container`,
    /// `_read_basic`), variants unwrapped.
    static func read(_ message: OpaquePointer) throws(ReplicaError) -> BusValue {
        guard let peek = LibSystemd.busPeekType, let enter = LibSystemd.busEnterContainer, let exit = LibSystemd.busExitContainer,
              let basic = LibSystemd.busReadBasic, let atEnd = LibSystemd.busAtEnd else {
            throw ReplicaError("sd_bus_message_read", errno: .ENOSYS, hint: "libsystemd.so.0 cannot be loaded; install libsystemd0")
        }
        var type: CChar = 0
        var contents: UnsafePointer<CChar>?
        let peeked = peek(message, &type, &contents)
        guard peeked > 0 else { throw ReplicaError("sd_bus_message_peek_type", errno: Errno(rawValue: peeked < 0 ? -peeked : EBADMSG)) }
        func check(_ result: Int32, _ call: String) throws(ReplicaError) {
            if result < 0 { throw ReplicaError(call, errno: Errno(rawValue: -result)) }
        }
        let kind = UInt8(bitPattern: type)
        switch kind {
        case UInt8(ascii: "a"), UInt8(ascii: "r"), UInt8(ascii: "e"), UInt8(ascii: "v"):
            try check(enter(message, type, contents), "sd_bus_message_enter_container")
            var items: [BusValue] = []
            while atEnd(message, 0) == 0 { items.append(try read(message)) }
            try check(exit(message), "sd_bus_message_exit_container")
            switch kind {
            case UInt8(ascii: "v"): return items.first ?? .list([])
            case UInt8(ascii: "a"): return .list(items)
            default: return .record(items)
            }
        case UInt8(ascii: "s"), UInt8(ascii: "o"), UInt8(ascii: "g"):
            var text: UnsafePointer<CChar>?
            try check(basic(message, type, &text), "sd_bus_message_read_basic")
            return .string(text.map { String(cString: $0) } ?? "")
        default:
            var raw: UInt64 = 0
            try check(basic(message, type, &raw), "sd_bus_message_read_basic")
            switch kind {
            case UInt8(ascii: "b"): return .bool(UInt32(truncatingIfNeeded: raw) != 0)
            case UInt8(ascii: "y"): return .unsigned(raw & 0xff)
            case UInt8(ascii: "q"): return .unsigned(raw & 0xffff)
            case UInt8(ascii: "u"): return .unsigned(raw & 0xffff_ffff)
            case UInt8(ascii: "t"): return .unsigned(raw)
            case UInt8(ascii: "n"): return .integer(Int64(Int16(truncatingIfNeeded: raw)))
            case UInt8(ascii: "i"), UInt8(ascii: "h"): return .integer(Int64(Int32(truncatingIfNeeded: raw)))
            case UInt8(ascii: "x"): return .integer(Int64(bitPattern: raw))
            default: return .unsigned(raw)  // "d": the bits, compared as they are
            }
        }
    }
}

extension SystemdManager {
    /// A loaded unit's service properties and its invocation id (`busctl get-property` of every
    /// property of `org.freedesktop.systemd1.Service`, one `GetAll`, and the unit's `InvocationID`,
    /// hex as in `$INVOCATION_ID`). Asks PID 1, which has the unit as it read its files.
    public static func serviceProperties(of unit: String) throws(ReplicaError) -> (invocation: String, properties: [String: BusValue]) {
        guard let encode = LibSystemd.busPathEncode else {
            throw ReplicaError("systemd GetAll", [unit], errno: .ENOSYS, hint: "libsystemd.so.0 cannot be loaded; install libsystemd0")
        }
        var encoded: UnsafeMutablePointer<CChar>?
        guard encode("/org/freedesktop/systemd1/unit", unit, &encoded) >= 0, let encoded else {
            throw ReplicaError("sd_bus_path_encode", [unit], errno: .EINVAL)
        }
        let object = String(cString: encoded)
        LibSystemd.release(encoded)
        var properties: [String: BusValue] = [:]
        var invocation = ""
        let hint = "is \(unit) loaded (systemctl status \(unit))?"
        try withBus([unit]) { (bus) throws(ReplicaError) in
            try call(on: bus, "GetAll", [unit], hint: hint, object: object, interface: "org.freedesktop.DBus.Properties", { (message) throws(ReplicaError) in
                try append(message, "s", "org.freedesktop.systemd1.Service")
            }, read: { (reply) throws(ReplicaError) in
                guard case .list(let entries) = try BusValue.read(reply) else { return }
                for case .record(let pair) in entries where pair.count == 2 {
                    if case .string(let name) = pair[0] { properties[name] = pair[1] }
                }
            })
            try call(on: bus, "Get", [unit], hint: hint, object: object, interface: "org.freedesktop.DBus.Properties", { (message) throws(ReplicaError) in
                try append(message, "s", "org.freedesktop.systemd1.Unit")
                try append(message, "s", "InvocationID")
            }, read: { (reply) throws(ReplicaError) in
                guard case .list(let bytes) = try BusValue.read(reply) else { return }
                invocation = bytes.map { if case .unsigned(let byte) = $0 { String(byte, radix: 16).leftPadded(2) } else { "" } }.joined()
            })
        }
        return (invocation, properties)
    }
}
