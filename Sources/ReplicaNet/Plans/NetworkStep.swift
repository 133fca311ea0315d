import Glibc
import ReplicaKit

/// One step of a `NetworkPlan`, one `ip` command each: what `--dry-run` prints, what `apply` does
/// (undoing every step made when a later one fails) and what `check` compares with the kernel are
/// the same list (`NetworkPlan.steps`). Host steps come first, then the steps inside the namespace.
public enum NetworkStep: Equatable, Sendable {
    /// `ip netns add NS`.
    case addNamespace
    /// `ip link add BRIDGE type bridge`, when missing; an existing bridge is used as it is.
    case addBridge(String)
    /// `ip addr add PREFIX dev BRIDGE`, on a bridge this plan made.
    case addBridgeAddress(IPPrefix, bridge: String)
    /// `ip link set BRIDGE up`, on a bridge this plan made.
    case bridgeUp(String)
    /// `ip link add link PARENT name LINK netns NS type macvlan mode MODE`.
    case addMacvlan(parent: String, mode: RouteRequest.MacvlanMode)
    /// `ip link add HOST type veth peer name LINK netns NS`.
    case addVeth
    /// `ip link set HOST [master BRIDGE] up`.
    case hostLinkUp
    /// `ip -n NS link set lo up`.
    case loopbackUp
    /// `ip -n NS link set LINK [mtu N] up`.
    case innerLinkUp
    /// `ip -n NS addr add PREFIX dev LINK`.
    case addAddress(IPPrefix)
    /// `ip -n NS route add DESTINATION [via GATEWAY] dev LINK`.
    case addRoute(NetworkPlan.RouteSpec)
    /// `ip -n NS link add BRIDGE type bridge; ip -n NS link set LINK master BRIDGE; ip -n NS link
    /// set BRIDGE up`: a VM's wire (`NetworkPlan.guestBridge`).
    case addGuestBridge(String)

    /// Whether it acts inside the namespace (on a netlink socket opened there).
    public var isInside: Bool {
        switch self {
        case .loopbackUp, .innerLinkUp, .addAddress, .addRoute, .addGuestBridge: return true
        default: return false
        }
    }
}

extension NetworkPlan {
    /// The plan as steps, in the order `apply` takes them.
    public var steps: [NetworkStep] {
        var steps: [NetworkStep] = [.addNamespace]
        if let macvlanParent {
            steps.append(.addMacvlan(parent: macvlanParent, mode: macvlanMode))
        } else {
            if let bridge {
                steps.append(.addBridge(bridge))
                for address in [bridgeAddress, bridgeAddress6].compactMap(\.self) { steps.append(.addBridgeAddress(address, bridge: bridge)) }
                steps.append(.bridgeUp(bridge))
            }
            steps += [.addVeth, .hostLinkUp]
        }
        steps += [.loopbackUp, .innerLinkUp]
        if let guestBridge { return steps + [.addGuestBridge(guestBridge)] }  // the addresses are the guest's to set
        return steps + addresses.map(NetworkStep.addAddress) + routes.map(NetworkStep.addRoute)
    }

    /// The plan as `ip` commands, for `--dry-run` and the docs: one per step.
    public var commands: [String] { steps.map(command) }

    /// The `ip` command that does `step` of this plan.
    public func command(_ step: NetworkStep) -> String {
        switch step {
        case .addNamespace: return "ip netns add \(namespace)"
        case .addBridge(let bridge):
            return "ip link add \(bridge) type bridge" + (bridgeAddress6 == nil ? "" : "; sysctl -qw net.ipv6.conf.\(bridge).accept_dad=0") + "   # when missing"
        case .addBridgeAddress(let address, let bridge): return "ip addr add \(address) dev \(bridge)\(address.family == AF_INET6 ? " nodad" : "")"
        case .bridgeUp(let bridge): return "ip link set \(bridge) address 02:… alias '\(Self.madeMark)' up"
        case .addMacvlan(let parent, let mode): return "ip link add link \(parent) name \(innerLink) netns \(namespace) type macvlan mode \(mode)"
        case .addVeth: return "ip link add \(hostLink) type veth peer name \(innerLink) netns \(namespace)"
        case .hostLinkUp: return "ip link set \(hostLink)\(bridge.map { " master \($0)" } ?? "") up"
        case .loopbackUp: return "ip -n \(namespace) link set lo up"
        case .innerLinkUp: return "ip -n \(namespace) link set \(innerLink)\(mtu.map { " mtu \($0)" } ?? "") up"
        case .addAddress(let address): return "ip -n \(namespace) addr add \(address) dev \(innerLink)\(address.family == AF_INET6 ? " nodad" : "")"
        case .addRoute(let route): return "ip -n \(namespace) route add \(route.name)\(route.gateway.map { " via \($0.addressText)" } ?? "") dev \(innerLink)"
        case .addGuestBridge(let bridge):
            return "ip -n \(namespace) link add \(bridge) type bridge; ip -n \(namespace) link set \(innerLink) master \(bridge); ip -n \(namespace) link set \(bridge) up"
        }
    }
}

extension NetworkPlan.RouteSpec {
    /// `default` for the default route, else the destination.
    var name: String { destination.length == 0 ? "default" : destination.description }
}
