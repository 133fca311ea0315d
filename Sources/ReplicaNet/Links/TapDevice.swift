import CReplicaShim
import Glibc
import ReplicaKit

/// A virtual machine's tap device: made in a network namespace and joined to a bridge there
/// (`ip -n NS tuntap add NAME mode tap; ip -n NS link set NAME master BRIDGE up`), not persistent:
/// it lives as long as a descriptor of it is open — the one handed to QEMU (`-netdev tap,fd=N`) —
/// so nothing of it is left once the VM has ended, however it ended.
public enum TapDevice {
    /// Makes tap `name` in namespace `namespace` (`/run/netns/NAME`), a port of `bridge` there, up,
    /// and returns its descriptor. Refused when a link of that name is there already.
    public static func open(_ name: String, in namespace: String, bridge: String) throws(ReplicaError) -> OwnedFD {
        _ = try LinkName(name)
        _ = try NamespaceName(namespace)
        let raw = try DedicatedThread.run { () throws(ReplicaError) -> Int32 in
            try SandboxMounter.joinNetworkNamespace("\(NetworkNamespace.directory)/\(namespace)")
            return try syscall("open /dev/net/tun (TUNSETIFF)", "\(namespace):\(name)") { replica_tap_open(name) }
        }
        let tap = OwnedFD(adopting: raw)
        var inside = try NetlinkSocket(namespace: namespace)
        guard let link = try inside.link(named: name), let master = try inside.link(named: bridge) else {
            throw ReplicaError("tap device", ["\(namespace):\(name)", bridge], errno: .ENODEV, hint: "the tap or its bridge is not in the namespace")
        }
        try inside.perform(RouteRequest.setLink(index: link.index, up: true, master: master.index), "set link", ["\(namespace):\(name)", bridge])
        return tap
    }
}
