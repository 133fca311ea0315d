import Glibc
import ReplicaKit

/// What one bridge's machines may reach and what reaches them — a set's way out, in and apart, as
/// CNI's `bridge` (ipMasq), `portmap` and `firewall` plugins and LXD's managed bridges do it:
///
/// - out: to anything that is not a bridge, masqueraded when it leaves through something other
///   than a bridge of ours (`NAT=`), from the bridge's subnet only (no spoofed source);
/// - in: only replies, port forwards, and what `Allow=` lets in from another bridge or a subnet;
/// - apart: never to another bridge (other sets', the host's own) unless that one allows it.
public struct BridgeFirewall: Equatable, Sendable {
    /// Who the rules are for (a set's name): one record each.
    public var owner: String
    /// The bridge the machines are ports of.
    public var bridge: String
    /// Its IPv4 subnet: the only source it may send from, and what is masqueraded.
    public var subnet: IPPrefix
    /// Its IPv6 /64 (`UniqueLocal.prefix`), the same for IPv6; nil: no IPv6 leaves or enters it.
    public var subnet6: IPPrefix?
    /// Whether what leaves for the world is masqueraded (`NAT=yes`, the default).
    public var masquerade = true
    /// Bridges (`br-lab`) and subnets (`10.0.0.0/8`) whose traffic may enter this bridge.
    public var allow: [Peer] = []
    /// Host ports forwarded to machines of the bridge.
    public var forwards: [PortForward] = []

    /// A source allowed in: a bridge of the host, or a subnet.
    public enum Peer: Equatable, Sendable, CustomStringConvertible {
        /// A bridge of the host, by name.
        case bridge(String)
        /// Any source in a subnet.
        case subnet(IPPrefix)

        /// A bridge's name, or an address/length.
        public init(_ text: String) throws(ReplicaError) {
            if text.contains("/") { self = .subnet(try IPPrefix(text).network) } else { _ = try LinkName(text); self = .bridge(text) }
        }

        /// As written.
        public var description: String {
            switch self {
            case .bridge(let name): name
            case .subnet(let prefix): prefix.description
            }
        }
    }

    /// The rules of a bridge, checked: names are link names, the subnet IPv4.
    public init(owner: String, bridge: String, subnet: IPPrefix) throws(ReplicaError) {
        _ = try LeaseOwner(owner)
        _ = try LinkName(bridge)
        guard subnet.family == AF_INET else {
            throw ReplicaError("firewall", [subnet.description], errno: .EINVAL, hint: "the bridge's subnet is IPv4 (IPv6 addresses are derived)")
        }
        (self.owner, self.bridge, self.subnet) = (owner, bridge, subnet.network)
    }
}

/// A host port forwarded to a machine: `PROTO:[HOSTADDRESS:]HOSTPORT:TARGET:PORT`, what `-p` says to
/// docker and `portmap` to CNI. The target is an address here; a set names machines and resolves them.
public struct PortForward: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// `tcp` or `udp`.
    public enum Transport: String, Sendable, CaseIterable {
        /// TCP.
        case tcp
        /// UDP.
        case udp
    }

    /// The transport.
    public var transport: Transport
    /// The host address it listens on; nil: every address of the host.
    public var hostAddress: IPPrefix?
    /// The host port.
    public var hostPort: UInt16
    /// The machine's address.
    public var target: IPPrefix
    /// The machine's port.
    public var targetPort: UInt16

    /// A forward, every part given.
    public init(_ transport: Transport, hostAddress: IPPrefix? = nil, hostPort: UInt16, target: IPPrefix, targetPort: UInt16) {
        (self.transport, self.hostAddress, self.hostPort, self.target, self.targetPort) = (transport, hostAddress, hostPort, target, targetPort)
    }

    /// The words of `PROTO:[HOSTADDRESS:]HOSTPORT:TARGET:PORT`, the target left as written (a
    /// machine's name or an address): checked except for what the target names. An IPv6 address is
    /// written in brackets (`tcp:[2001:db8::1]:8080:web1:80`).
    public static func words(_ text: String) throws(ReplicaError) -> (transport: Transport, hostAddress: IPPrefix?, hostPort: UInt16, target: String, port: UInt16) {
        func refuse(_ why: String) -> ReplicaError {
            ReplicaError("port forward", [text], errno: .EINVAL, hint: why + "; write tcp:8080:web1:80 or udp:192.0.2.1:5353:db:53", reason: .usage)
        }
        var parts: [String] = [""], bracketed = false
        for character in text {
            switch character {
            case "[" where parts[parts.count - 1].isEmpty && !bracketed: bracketed = true
            case "]" where bracketed: bracketed = false
            case ":" where !bracketed: parts.append("")
            default: parts[parts.count - 1].append(character)
            }
        }
        guard !bracketed, parts.count == 4 || parts.count == 5, let transport = Transport(rawValue: parts[0]) else {
            throw refuse("PROTO is tcp or udp, then [HOSTADDRESS:]HOSTPORT:MACHINE:PORT")
        }
        func port(_ text: String) throws(ReplicaError) -> UInt16 {
            guard let value = UInt16(text), value > 0 else { throw refuse("\"\(text)\" is not a port from 1 to 65535") }
            return value
        }
        var hostAddress: IPPrefix?
        if parts.count == 5 {
            do throws(ReplicaError) { hostAddress = try IPPrefix(parts[1]) } catch { throw refuse("\"\(parts[1])\" is not an address") }
            hostAddress = hostAddress.map { IPPrefix(address: $0.address, length: $0.address.count * 8) }
        }
        let rest = parts.suffix(3).map { $0 }
        guard !rest[1].isEmpty else { throw refuse("no machine named") }
        return (transport, hostAddress, try port(rest[0]), rest[1], try port(rest[2]))
    }

    /// `PROTO:[HOSTADDRESS:]HOSTPORT:ADDRESS:PORT`, the target an address of the host address's family.
    public init(parsing text: String) throws(ReplicaError) {
        let words = try Self.words(text)
        let target = try IPPrefix(words.target)
        guard words.hostAddress == nil || words.hostAddress?.family == target.family else {
            throw ReplicaError("port forward", [text], errno: .EINVAL, hint: "the host address and the target are of one family (IPv4 or IPv6)", reason: .usage)
        }
        self.init(words.transport, hostAddress: words.hostAddress, hostPort: words.hostPort,
                  target: IPPrefix(address: target.address, length: target.address.count * 8), targetPort: words.port)
    }

    /// `PROTO:[HOSTADDRESS:]HOSTPORT:TARGET:PORT`.
    public var description: String {
        "\(transport):" + (hostAddress.map { "\(Self.written($0)):" } ?? "") + "\(hostPort):\(Self.written(target)):\(targetPort)"
    }

    /// An address as a forward writes it: IPv6 in brackets.
    static func written(_ address: IPPrefix) -> String { address.family == AF_INET6 ? "[\(address.addressText)]" : address.addressText }

    /// Whether the two would take the same host port: same transport, port and family (its target's),
    /// on the same host address or on every one.
    public func collides(with other: PortForward) -> Bool {
        transport == other.transport && hostPort == other.hostPort && target.family == other.target.family
            && (hostAddress == nil || other.hostAddress == nil || hostAddress?.address == other.hostAddress?.address)
    }
}
