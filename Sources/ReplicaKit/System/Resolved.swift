import CReplicaShim
import Glibc

/// systemd-resolved's per-link DNS, over D-Bus (`org.freedesktop.resolve1.Manager` on the system
/// bus): a link's servers and routing domains, so the host resolves a zone through the server on
/// that link and nothing else goes there — what `resolvectl dns LINK SERVER…`, `resolvectl domain
/// LINK ~DOMAIN…` and `resolvectl revert LINK` do.
public enum Resolved {
    /// Whether systemd-resolved runs: something listens on its varlink socket
    /// (`/run/systemd/resolve/io.systemd.Resolve` accepts a connection). The file alone is not
    /// enough — it stays after resolved stops — and a D-Bus call to a resolved that is not running
    /// would start it (bus activation), or fail where it is masked.
    public static var isRunning: Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return replica_connect_unix(fd, "/run/systemd/resolve/io.systemd.Resolve") == 0
    }

    /// `SetLinkDNS` and `SetLinkDomains` of link `index`: `servers` (family and address bytes:
    /// `AF_INET`, 4; `AF_INET6`, 16) answer for `routingDomains` (`~lab.replica`) only.
    public static func setLink(_ index: Int32, name: String, servers: [(family: Int32, address: [UInt8])],
                               routingDomains: [String]) throws(ReplicaError) {
        let dns = BusConnection.Call(path: path, interface: interface, member: "SetLinkDNS", signature: "ia(iay)") { body in
            body.uint32(UInt32(bitPattern: index))
            body.array(alignment: 8) { array in
                for server in servers {
                    array.structure { field in
                        field.uint32(UInt32(bitPattern: server.family))
                        field.array(alignment: 1) { bytes in for byte in server.address { bytes.byte(byte) } }
                    }
                }
            }
        }
        let domains = BusConnection.Call(path: path, interface: interface, member: "SetLinkDomains", signature: "ia(sb)") { body in
            body.uint32(UInt32(bitPattern: index))
            body.array(alignment: 8) { array in
                for domain in routingDomains { array.structure { $0.string(domain.hasPrefix("~") ? String(domain.dropFirst()) : domain); $0.bool(true) } }
            }
        }
        try call([dns, domains], name)
    }

    /// `RevertLink`: the link's DNS back to what its network manager gives (none, for a bridge of ours).
    public static func revertLink(_ index: Int32, name: String) throws(ReplicaError) {
        try call([BusConnection.Call(path: path, interface: interface, member: "RevertLink", signature: "i") { $0.uint32(UInt32(bitPattern: index)) }], name)
    }

    static let path = "/org/freedesktop/resolve1"
    static let interface = "org.freedesktop.resolve1.Manager"

    private static func call(_ calls: [BusConnection.Call], _ name: String) throws(ReplicaError) {
        let replies: [BusConnection.Reply]
        do throws(ReplicaError) {
            replies = try BusConnection(path: BusConnection.systemBusSocket, destination: "org.freedesktop.resolve1").call(calls)
        } catch {
            throw ReplicaError("systemd-resolved", [name], errno: error.errno, detail: error.description, hint: "is dbus-daemon running?")
        }
        for (reply, call) in zip(replies, calls) {
            _ = try reply.values("resolved \(call.member)", [name], hint: "resolvectl status \(name) shows the link")
        }
    }
}
