import Glibc
import ReplicaKit

extension NetworkPlan {
    /// What `apply` did, one line per step.
    public typealias Report = [String]

    /// Makes the plan, all or nothing, by taking its `steps` in order: each step that creates
    /// something records how to remove it, and a failure at any step removes everything made so
    /// far, in reverse, before the error is thrown. Nothing that existed before is modified: a
    /// namespace or veth name already taken is refused up front, and an existing bridge only gains
    /// our veth as a port. `injectingFailureAt` (tests) fails the run just before that step (0-based).
    /// `adoptingNamespace`: the namespace exists already (a running machine's, loopback only) and
    /// the plan's links and addresses are made in it instead of a new one; it is refused missing.
    @discardableResult
    public func apply(injectingFailureAt failure: Int? = nil, adoptingNamespace: Bool = false) throws(ReplicaError) -> Report {
        try validate()
        var host = try NetlinkSocket()
        if macvlanParent == nil, try host.link(named: hostLink) != nil {
            throw ReplicaError("network plan", [hostLink], errno: .EEXIST,
                           hint: "a link of that name exists and is left untouched; choose another name or run replica-net down")
        }
        if NetworkNamespace.list().contains(namespace) != adoptingNamespace {
            throw adoptingNamespace
                ? ReplicaError("network plan", ["\(NetworkNamespace.directory)/\(namespace)"], errno: .ENOENT, hint: "no namespace of that name to make the network in")
                : ReplicaError("network plan", ["\(NetworkNamespace.directory)/\(namespace)"], errno: .EEXIST,
                               hint: "the namespace exists and is left untouched; run replica-net down \(namespace) first")
        }
        var run = Run()
        let steps = adoptingNamespace ? steps.filter { $0 != .addNamespace } : steps
        do throws(ReplicaError) {
            // Host steps on the host's socket, then the namespace's own steps on one opened inside it.
            for (index, step) in steps.enumerated() where !step.isInside { try perform(step, index, failure, &host, &run) }
            var inside = try NetlinkSocket(namespace: namespace)
            for (index, step) in steps.enumerated() where step.isInside { try perform(step, index, failure, &inside, &run) }
        } catch {
            for action in run.undo.reversed() { action() }
            throw error
        }
        return run.report
    }

    /// What a run of the steps knows so far: how to undo what it made, what it reports, and the
    /// kernel's indices later steps act on.
    private struct Run {
        var undo: [() -> Void] = []
        var report: Report = []
        var bridgeIndex: Int32?
        /// The bridge was made by this run: its address and state are ours to set.
        var madeBridge = false
        var innerIndex: Int32?
    }

    /// Takes one step on `socket` (the host's, or the namespace's for an inside step).
    private func perform(_ step: NetworkStep, _ index: Int, _ failure: Int?, _ socket: inout NetlinkSocket, _ run: inout Run) throws(ReplicaError) {
        if index == failure { throw ReplicaError("network plan", [command(step)], errno: .ECANCELED, hint: "failure injected before step \(index)") }
        switch step {
        case .addNamespace:
            try NetworkNamespace.create(namespace)
            run.undo.append { [namespace] in try? NetworkNamespace.delete(namespace) }
            run.report.append("namespace \(namespace) (\(NetworkNamespace.directory)/\(namespace))")
        case .addBridge(let bridge):
            if let existing = try socket.link(named: bridge) {
                guard existing.kind == "bridge" else {
                    throw ReplicaError("network plan", [bridge], errno: .EINVAL, hint: "exists but is a \(existing.kind ?? "device"), not a bridge")
                }
                run.bridgeIndex = existing.index
                run.report.append("bridge \(bridge) exists; used as it is")
                return
            }
            do throws(ReplicaError) {
                try socket.perform(RouteRequest.addBridge(bridge), "add bridge", [bridge])
            } catch where error.errno == .EEXIST {
                // Another plan made it meanwhile (two services or machines started at once on a new
                // bridge): theirs, used as it is, never removed by our undo.
                guard let theirs = try socket.link(named: bridge), theirs.kind == "bridge" else { throw error }
                run.bridgeIndex = theirs.index
                run.report.append("bridge \(bridge) made meanwhile by another; used as it is")
                return
            }
            run.undo.append { try? Self.deleteLinks([bridge]) }
            guard let made = try socket.link(named: bridge) else { throw ReplicaError("add bridge", [bridge], errno: .ENODEV) }
            (run.bridgeIndex, run.madeBridge) = (made.index, true)
            if bridgeAddress6 != nil {
                // No duplicate address detection on a bridge of ours: while its link-local address
                // is tentative (a second or two) the host cannot ask its machines' IPv6 addresses,
                // and the first packets it forwards to them are lost.
                try? OwnedFD.open("/proc/sys/net/ipv6/conf/\(bridge)/accept_dad", O_WRONLY).writeAll(Array("0".utf8), name: "accept_dad")
            }
            run.report.append("bridge \(bridge) made")
        case .addBridgeAddress(let address, let bridge):
            guard run.madeBridge, let index = run.bridgeIndex else { return }
            try socket.perform(RouteRequest.addAddress(address, index: index), "add address", [address.description, bridge])
            run.report.append("bridge \(bridge) \(address)")
        case .bridgeUp(let bridge):
            guard run.madeBridge, let index = run.bridgeIndex else { return }
            // A MAC address of its own, set (a locally administered one): a bridge whose address was
            // never set takes its lowest port's, so a machine joining would change the gateway's MAC
            // under the others, who lose it for seconds until they ask again.
            var mac = (0..<6).map { _ in UInt8.random(in: .min ... .max) }
            mac[0] = mac[0] & 0xfc | 0x02
            try socket.perform(RouteRequest.setLink(index: index, up: true, alias: Self.madeMark, address: mac), "set link up", [bridge])
            run.report.append("bridge \(bridge) up")
        case .addMacvlan(let parentName, let mode):
            // Born inside the namespace: it goes with the namespace on undo and teardown.
            guard let parent = try socket.link(named: parentName) else {
                throw ReplicaError("network plan", [parentName], errno: .ENODEV, hint: "no such interface to put a macvlan on")
            }
            let namespaceFD = try OwnedFD.open("\(NetworkNamespace.directory)/\(namespace)", O_RDONLY)
            try socket.perform(RouteRequest.addMacvlan(innerLink, parentIndex: parent.index, mode: mode, namespaceFD: namespaceFD.rawValue),
                               "add macvlan", ["\(namespace):\(innerLink)", parentName])
            run.report.append("macvlan \(namespace):\(innerLink) on \(parentName), mode \(mode)")
        case .addVeth:
            let namespaceFD = try OwnedFD.open("\(NetworkNamespace.directory)/\(namespace)", O_RDONLY)
            try socket.perform(RouteRequest.addVeth(hostLink, peer: innerLink, peerNamespaceFD: namespaceFD.rawValue),
                               "add veth", [hostLink, "\(namespace):\(innerLink)"])
            run.undo.append { [hostLink] in try? Self.deleteLinks([hostLink]) }
            run.report.append("veth \(hostLink) ↔ \(namespace):\(innerLink)")
        case .hostLinkUp:
            guard let veth = try socket.link(named: hostLink) else { throw ReplicaError("add veth", [hostLink], errno: .ENODEV) }
            try socket.perform(RouteRequest.setLink(index: veth.index, up: true, mtu: mtu, master: run.bridgeIndex,
                                                    noIPv6LinkLocal: run.bridgeIndex != nil), "set link", [hostLink])
            run.report.append("\(hostLink)\(bridge.map { " in \($0)" } ?? ""), up")
        case .loopbackUp:
            guard let loopback = try socket.link(named: "lo") else { throw ReplicaError("network plan", ["\(namespace):lo"], errno: .ENODEV) }
            try socket.perform(RouteRequest.setLink(index: loopback.index, up: true), "set link up", ["\(namespace):lo"])
        case .innerLinkUp:
            guard let inner = try socket.link(named: innerLink) else {
                throw ReplicaError("network plan", ["\(namespace):\(innerLink)"], errno: .ENODEV, hint: "the link is not in the namespace")
            }
            run.innerIndex = inner.index
            try socket.perform(RouteRequest.setLink(index: inner.index, up: true, mtu: mtu), "set link up", ["\(namespace):\(innerLink)"])
        case .addAddress(let address):
            try socket.perform(RouteRequest.addAddress(address, index: run.innerIndex ?? 0), "add address", [address.description, "\(namespace):\(innerLink)"])
            run.report.append("\(namespace):\(innerLink) \(address)")
        case .addRoute(let route):
            try socket.perform(RouteRequest.addRoute(to: route.destination, via: route.gateway, index: run.innerIndex ?? 0), "add route",
                               [route.destination.description, route.gateway?.addressText ?? innerLink])
            run.report.append("\(namespace): route \(route.name)" + (route.gateway.map { " via \($0.addressText)" } ?? ""))
        case .addGuestBridge(let bridge):
            // Inside the namespace: it goes with the namespace on undo and teardown.
            try socket.perform(RouteRequest.addBridge(bridge), "add bridge", ["\(namespace):\(bridge)"])
            guard let made = try socket.link(named: bridge) else { throw ReplicaError("add bridge", ["\(namespace):\(bridge)"], errno: .ENODEV) }
            try socket.perform(RouteRequest.setLink(index: run.innerIndex ?? 0, master: made.index), "set link master", ["\(namespace):\(innerLink)", bridge])
            try socket.perform(RouteRequest.setLink(index: made.index, up: true), "set link up", ["\(namespace):\(bridge)"])
            run.report.append("\(namespace):\(bridge) with \(innerLink), up: the guest's wire")
        }
    }

    /// The alias a bridge Replica made carries (`ip link set BRIDGE alias …`): the mark that it is
    /// Replica's to remove once nothing is plugged into it (`removeBridgeIfUnused`).
    public static let madeMark = "made by replica"

    /// Deletes `bridge` if Replica made it (its alias is `madeMark`) and no port is left on it
    /// (`ip link del BRIDGE` once `ip link show master BRIDGE` is empty); a bridge of the
    /// operator's, or one still in use, is left as it is. Returns whether it was deleted.
    @discardableResult
    public static func removeBridgeIfUnused(_ bridge: String) throws(ReplicaError) -> Bool {
        _ = try LinkName(bridge)
        var socket = try NetlinkSocket()
        let links = try socket.links()
        guard let made = links.first(where: { $0.name == bridge }), made.kind == "bridge", made.alias == madeMark,
              !links.contains(where: { $0.masterIndex == made.index }) else { return false }
        try socket.perform(RouteRequest.deleteLink(index: made.index), "delete link", [bridge])
        return true
    }

    /// Removes what `apply` made for this service — the namespace and the host veth — and keeps
    /// the bridge, which other services share. Idempotent: what is already gone is fine.
    public func teardown() throws(ReplicaError) { try Self.teardown([self]) }

    /// Tears several plans down together, off any start path: every host veth (its peer goes with
    /// it) in one `deleteLinks` group deletion, then every namespace unpinned — the kernel frees a
    /// namespace once nothing holds it.
    public static func teardown(_ plans: [NetworkPlan]) throws(ReplicaError) {
        for plan in plans { try plan.validate() }
        try deleteLinks(plans.filter { $0.macvlanParent == nil }.map(\.hostLink))
        for plan in plans { try NetworkNamespace.delete(plan.namespace) }
    }

    /// `ip link del NAME…`; links that do not exist are fine. Several links go in one netlink
    /// batch that moves them into a fresh link group, then one `ip link del group`: the kernel
    /// then unregisters them together and waits for RCU once, not once per link.
    public static func deleteLinks(_ names: [String]) throws(ReplicaError) {
        for name in names { _ = try LinkName(name) }
        guard !names.isEmpty else { return }
        var socket = try NetlinkSocket()
        guard names.count > 1 else {
            let failures = try socket.batch(names.map { BatchRequest(RouteRequest.deleteLink(named: $0), "delete link", [$0]) })
            if let failure = failures.values.first(where: { $0.errno != .ENODEV }) { throw failure }
            return
        }
        // A group no one uses: 0 is the default, small numbers are the operator's.
        let group = UInt32.random(in: 0x4000_0000...0x7fff_fffe)
        let failures = try socket.batch(names.map { BatchRequest(RouteRequest.setGroup(named: $0, group: group), "set link group", [$0]) })
        if let failure = failures.values.first(where: { $0.errno != .ENODEV }) { throw failure }
        if failures.count < names.count {
            try socket.perform(RouteRequest.deleteGroup(group), "delete links", names)
        }
    }

    /// Where the kernel differs from the plan, one line each, step by step; empty when it matches.
    /// Changes nothing. A missing namespace or inner link ends the comparison (nothing after it
    /// can be there); an existing bridge's own address and state are not the plan's.
    public func check() throws(ReplicaError) -> [String] {
        try validate()
        guard NetworkNamespace.list().contains(namespace) else { return ["namespace \(namespace) is missing"] }
        var host = try NetlinkSocket()
        var drift: [String] = []
        var inner: Link?
        var present: [IPPrefix]?, table: [Route]?  // read once, at the first address and route
        var inside = try NetlinkSocket(namespace: namespace)
        for step in steps {
            switch step {
            case .addNamespace, .addBridgeAddress, .bridgeUp, .loopbackUp:
                continue
            case .addBridge(let bridge):
                if try host.link(named: bridge) == nil { drift.append("bridge \(bridge) is missing") }
            case .addMacvlan(let parent, _):
                if try host.link(named: parent) == nil { drift.append("\(parent), the macvlan's parent, is missing") }
            case .addVeth:
                if try host.link(named: hostLink) == nil { drift.append("veth \(hostLink) is missing") }
            case .hostLinkUp:
                guard let link = try host.link(named: hostLink) else { continue }
                if !link.isUp { drift.append("\(hostLink) is down") }
                if let bridge, let master = try host.link(named: bridge), link.masterIndex != master.index {
                    drift.append("\(hostLink) is not a port of \(bridge)")
                }
            case .innerLinkUp:
                guard let link = try inside.link(named: innerLink) else { return drift + ["\(namespace):\(innerLink) is missing"] }
                if !link.isUp { drift.append("\(namespace):\(innerLink) is down") }
                inner = link
            case .addAddress(let address):
                if present == nil { present = try inside.addresses().filter { $0.index == inner?.index }.map(\.prefix) }
                if present?.contains(address) != true {
                    drift.append("\(namespace):\(innerLink) lacks \(address)")
                }
            case .addRoute(let route):
                if table == nil { table = try inside.routes() }
                if !(table ?? []).contains(where: {
                    $0.destination == route.destination && $0.gateway?.address == route.gateway?.address && $0.index == inner?.index
                }) {
                    drift.append("\(namespace): route \(route.destination)\(route.gateway.map { " via \($0.addressText)" } ?? "") is missing")
                }
            case .addGuestBridge(let bridge):
                guard let made = try inside.link(named: bridge) else { drift.append("\(namespace):\(bridge) is missing"); continue }
                if !made.isUp { drift.append("\(namespace):\(bridge) is down") }
                if inner?.masterIndex != made.index { drift.append("\(namespace):\(innerLink) is not a port of \(bridge)") }
            }
        }
        return drift
    }
}
