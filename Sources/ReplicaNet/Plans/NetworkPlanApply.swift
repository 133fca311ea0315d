import Glibc
import ReplicaKit

extension NetworkPlan {
    /// What `apply` did, one line per step.
    public typealias Report = [String]

    /// Makes the plan, all or nothing: each step that creates something records how to remove it,
    /// and a failure at any step removes everything made so far, in reverse, before the error is
    /// thrown. Nothing that existed before is modified: a namespace or veth name already taken is
    /// refused up front, and an existing bridge only gains our veth as a port.
    /// `injectingFailureAt` (tests) fails the run just before that step (0-based).
    @discardableResult
    public func apply(injectingFailureAt failure: Int? = nil) throws(ReplicaError) -> Report {
        try validate()
        var host = try NetlinkSocket()
        if macvlanParent == nil, try host.link(named: hostLink) != nil {
            throw ReplicaError("network plan", [hostLink], errno: .EEXIST,
                           hint: "a link of that name exists and is left untouched; choose another name or run replica-net down")
        }
        if NetworkNamespace.list().contains(namespace) {
            throw ReplicaError("network plan", ["\(NetworkNamespace.directory)/\(namespace)"], errno: .EEXIST,
                           hint: "the namespace exists and is left untouched; run replica-net down \(namespace) first")
        }
        var undo: [() -> Void] = []
        var report: Report = []
        var step = 0
        func next(_ what: String) throws(ReplicaError) {
            if step == failure { throw ReplicaError("network plan", [what], errno: .ECANCELED, hint: "failure injected before step \(step)") }
            step += 1
        }
        do throws(ReplicaError) {
            try next("netns")
            try NetworkNamespace.create(namespace)
            undo.append { [namespace] in try? NetworkNamespace.delete(namespace) }
            report.append("namespace \(namespace) (\(NetworkNamespace.directory)/\(namespace))")

            var bridgeIndex: Int32?
            if let bridge {
                if let existing = try host.link(named: bridge) {
                    guard existing.kind == "bridge" else {
                        throw ReplicaError("network plan", [bridge], errno: .EINVAL, hint: "exists but is a \(existing.kind ?? "device"), not a bridge")
                    }
                    bridgeIndex = existing.index
                    report.append("bridge \(bridge) exists; used as it is")
                } else {
                    try next("bridge")
                    do throws(ReplicaError) {
                        try host.perform(RouteRequest.addBridge(bridge), "add bridge", [bridge])
                    } catch where error.errno == .EEXIST {
                        // Another plan made it meanwhile (two services or machines started at once
                        // on a new bridge): theirs, used as it is, never removed by our undo.
                        guard let theirs = try host.link(named: bridge), theirs.kind == "bridge" else { throw error }
                        bridgeIndex = theirs.index
                        report.append("bridge \(bridge) made meanwhile by another; used as it is")
                    }
                }
                if bridgeIndex == nil {
                    undo.append { try? Self.deleteLinks([bridge]) }
                    guard let made = try host.link(named: bridge) else { throw ReplicaError("add bridge", [bridge], errno: .ENODEV) }
                    bridgeIndex = made.index
                    if let bridgeAddress {
                        try next("bridge address")
                        try host.perform(RouteRequest.addAddress(bridgeAddress, index: made.index), "add address", [bridgeAddress.description, bridge])
                    }
                    try next("bridge up")
                    try host.perform(RouteRequest.setLink(index: made.index, up: true), "set link up", [bridge])
                    report.append("bridge \(bridge)\(bridgeAddress.map { " \($0)" } ?? "") made and up")
                }
            }

            let namespacePath = "\(NetworkNamespace.directory)/\(namespace)"
            let namespaceFD = try OwnedFD.open(namespacePath, O_RDONLY)
            if let macvlanParent {
                // Born inside the namespace: it goes with the namespace on undo and teardown.
                try next("macvlan")
                guard let parent = try host.link(named: macvlanParent) else {
                    throw ReplicaError("network plan", [macvlanParent], errno: .ENODEV, hint: "no such interface to put a macvlan on")
                }
                try host.perform(RouteRequest.addMacvlan(innerLink, parentIndex: parent.index, mode: macvlanMode, namespaceFD: namespaceFD.rawValue),
                                 "add macvlan", ["\(namespace):\(innerLink)", macvlanParent])
                report.append("macvlan \(namespace):\(innerLink) on \(macvlanParent), mode \(macvlanMode)")
            } else {
                try next("veth")
                try host.perform(RouteRequest.addVeth(hostLink, peer: innerLink, peerNamespaceFD: namespaceFD.rawValue),
                                 "add veth", [hostLink, "\(namespace):\(innerLink)"])
                undo.append { [hostLink] in try? Self.deleteLinks([hostLink]) }
                guard let veth = try host.link(named: hostLink) else { throw ReplicaError("add veth", [hostLink], errno: .ENODEV) }
                try next("veth up")
                try host.perform(RouteRequest.setLink(index: veth.index, up: true, mtu: mtu, master: bridgeIndex,
                                                      noIPv6LinkLocal: bridgeIndex != nil), "set link", [hostLink])
                report.append("veth \(hostLink)\(bridge.map { " in \($0)" } ?? "") ↔ \(namespace):\(innerLink), up")
            }

            var inside = try NetlinkSocket(namespace: namespace)
            guard let inner = try inside.link(named: innerLink), let loopback = try inside.link(named: "lo") else {
                throw ReplicaError("network plan", ["\(namespace):\(innerLink)"], errno: .ENODEV, hint: "the link is not in the namespace")
            }
            try next("inside up")
            try inside.perform(RouteRequest.setLink(index: loopback.index, up: true), "set link up", ["\(namespace):lo"])
            try inside.perform(RouteRequest.setLink(index: inner.index, up: true, mtu: mtu), "set link up", ["\(namespace):\(innerLink)"])
            for address in addresses {
                try next("address \(address)")
                try inside.perform(RouteRequest.addAddress(address, index: inner.index), "add address", [address.description, "\(namespace):\(innerLink)"])
                report.append("\(namespace):\(innerLink) \(address)")
            }
            for route in routes {
                try next("route \(route.destination)")
                try inside.perform(RouteRequest.addRoute(to: route.destination, via: route.gateway, index: inner.index), "add route",
                                   [route.destination.description, route.gateway?.addressText ?? innerLink])
                report.append("\(namespace): route \(route.destination.length == 0 ? "default" : route.destination.description)"
                              + (route.gateway.map { " via \($0.addressText)" } ?? ""))
            }
        } catch {
            for action in undo.reversed() { action() }
            throw error
        }
        return report
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

    /// Where the kernel differs from the plan, one line each; empty when it matches. Changes nothing.
    public func check() throws(ReplicaError) -> [String] {
        try validate()
        var drift: [String] = []
        var host = try NetlinkSocket()
        guard NetworkNamespace.list().contains(namespace) else { return ["namespace \(namespace) is missing"] }
        if let macvlanParent {
            if try host.link(named: macvlanParent) == nil { drift.append("\(macvlanParent), the macvlan's parent, is missing") }
        } else if let link = try host.link(named: hostLink) {
            if !link.isUp { drift.append("\(hostLink) is down") }
            if let bridge {
                let master = try host.link(named: bridge)
                if master == nil { drift.append("bridge \(bridge) is missing") }
                else if link.masterIndex != master?.index { drift.append("\(hostLink) is not a port of \(bridge)") }
            }
        } else {
            drift.append("veth \(hostLink) is missing")
        }
        var inside = try NetlinkSocket(namespace: namespace)
        guard let inner = try inside.link(named: innerLink) else { return drift + ["\(namespace):\(innerLink) is missing"] }
        if !inner.isUp { drift.append("\(namespace):\(innerLink) is down") }
        let present = try inside.addresses().filter { $0.index == inner.index }.map(\.prefix)
        for address in addresses where !present.contains(address) { drift.append("\(namespace):\(innerLink) lacks \(address)") }
        let table = try inside.routes()
        for route in routes where !table.contains(where: {
            $0.destination == route.destination && $0.gateway?.address == route.gateway?.address && $0.index == inner.index
        }) {
            drift.append("\(namespace): route \(route.destination)\(route.gateway.map { " via \($0.addressText)" } ?? "") is missing")
        }
        return drift
    }
}
