import ReplicaKit
import Glibc

/// An IPv4 or IPv6 address with a prefix length, `10.88.0.5/24` or `fd00::5/64` (`inet_pton`).
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    /// `AF_INET` or `AF_INET6`.
    public let family: Int32
    /// The address in network byte order (4 or 16 bytes).
    public let address: [UInt8]
    /// The prefix length in bits.
    public let length: Int

    /// A prefix of `address` (4 bytes for IPv4, 16 for IPv6) and `length`.
    public init(address: [UInt8], length: Int) {
        self.family = address.count == 4 ? AF_INET : AF_INET6
        self.address = address
        self.length = length
    }

    /// Parses `ADDRESS[/LENGTH]`; without a length, a host prefix (/32 or /128).
    public init(_ text: String) throws(ReplicaError) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let address = Self.parseAddress(first) else {
            throw ReplicaError("parse address", [text], errno: .EINVAL, hint: "not an IPv4 or IPv6 address (10.88.0.5/24, fd00::5/64)")
        }
        let maximum = address.count * 8
        var length = maximum
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maximum).contains(value) else {
                throw ReplicaError("parse address", [text], errno: .EINVAL, hint: "the prefix length is 0 to \(maximum)")
            }
            length = value
        }
        self.init(address: address, length: length)
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        return nil
    }

    /// The address alone, as `inet_ntop` writes it.
    public var addressText: String {
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        address.withUnsafeBytes { _ = inet_ntop(family, $0.baseAddress, &out, socklen_t(out.count)) }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { "\(addressText)/\(length)" }

    /// The network: the address with the host bits cleared.
    public var network: IPPrefix {
        var bytes = address
        for i in 0..<bytes.count {
            let keep = max(0, min(8, length - i * 8))
            bytes[i] &= keep == 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - keep))
        }
        return IPPrefix(address: bytes, length: length)
    }

    /// Whether `other`'s address lies in this prefix's network.
    public func contains(_ other: IPPrefix) -> Bool {
        other.family == family && IPPrefix(address: other.address, length: length).network == network
    }
}
