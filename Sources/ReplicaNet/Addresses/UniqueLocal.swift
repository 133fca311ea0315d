import Glibc
import ReplicaKit

/// Deterministic IPv6 on a bridge, as RFC 4193 draws unique local addresses: a /64 per bridge —
/// `fd`, then 56 bits of a hash of the host's machine id and the bridge's name, so the same bridge
/// on the same host always has the same prefix and two hosts' rarely meet — its gateway `PREFIX::1`
/// (the bridge's own), and each machine's address that prefix with an interface identifier derived
/// from the machine's id (a service's: from its unit), stable across restarts, stops and starts.
public enum UniqueLocal {
    /// The bridge's /64 (`fd3a:9c…:…::/64`).
    public static func prefix(bridge: String, host: String = hostIdentity) -> IPPrefix {
        let hash = FNV1a.hash64("\(host) \(bridge)")
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes[0] = 0xfd
        for index in 1..<8 { bytes[index] = UInt8(truncatingIfNeeded: hash >> (8 * (7 - index))) }
        return IPPrefix(address: bytes, length: 64)
    }

    /// The address in `prefix` (a /64) whose last 64 bits are `interface`, as a /64.
    public static func address(_ prefix: IPPrefix, interface: UInt64) -> IPPrefix {
        var bytes = Array(prefix.network.address.prefix(8))
        for index in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: interface >> (8 * (7 - index)))) }
        return IPPrefix(address: bytes, length: 64)
    }

    /// The bridge's own address in `prefix`: `PREFIX::1/64`.
    public static func gateway(_ prefix: IPPrefix) -> IPPrefix { address(prefix, interface: 1) }

    /// The interface identifier a machine id (or a unit's name) gives: 64 bits of its FNV-1a hash,
    /// never 0 (the subnet-router anycast) or 1 (the gateway).
    public static func interfaceID(_ seed: String) -> UInt64 {
        let hash = FNV1a.hash64("replica-ipv6 \(seed)")
        return hash < 2 ? hash + 2 : hash
    }

    /// An identifier written `::1a:2b:3c:4d` (what `IPv6Token=` takes, systemd.network's spelling):
    /// the last 64 bits of that address; refused when the first 64 are not zero.
    public static func interfaceID(parsing text: String) throws(ReplicaError) -> UInt64 {
        let parsed = try IPPrefix(text)
        guard parsed.family == AF_INET6, parsed.address.prefix(8).allSatisfy({ $0 == 0 }) else {
            throw ReplicaError("IPv6Token", [text], errno: .EINVAL, hint: "an interface identifier: the last 64 bits only, as ::1a:2b:3c:4d")
        }
        let value = parsed.address.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard value > 1 else { throw ReplicaError("IPv6Token", [text], errno: .EINVAL, hint: "::0 and ::1 are the subnet's and its gateway's") }
        return value
    }

    /// The host's machine id (`/etc/machine-id`), or its hostname where it has none.
    public static let hostIdentity: String = {
        if let line = try? OwnedFD.open("/etc/machine-id", O_RDONLY).readLine(), !line.isEmpty { return line }
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count)
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// The reverse zone of a /64: its 16 nibbles backwards under `ip6.arpa`.
    public static func reverseZone(_ prefix: IPPrefix) -> String {
        prefix.address.prefix(8).flatMap { [$0 >> 4, $0 & 0xf] }.reversed().map { String($0, radix: 16) }.joined(separator: ".") + ".ip6.arpa"
    }
}
