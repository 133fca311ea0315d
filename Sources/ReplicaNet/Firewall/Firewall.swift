import CReplicaShim
import Glibc
import ReplicaKit
import Synchronization

/// Replica's nftables table, `inet replica`: the rules of every bridge with a record
/// (`/run/replica/firewall/OWNER`), loaded in one `nft -f` transaction each time one changes (the
/// whole table, or only an owner's forward chains when nothing else changed), so the kernel never
/// holds half of a change, and deleted with the last record. Nothing outside the table is read or
/// touched. IPv4 forwarding is turned on for the bridges and the host's uplinks (the interfaces of
/// its default routes) only, never with the host-wide knob; IPv6, which has no per-interface
/// switch, host-wide only while the table confines it to our bridges (`Forwarding`). Either is
/// turned back off where Replica turned it on, with the last record.
public enum Firewall {
    /// The table's family and name.
    public static let table = "inet replica"
    /// Where records live: /run, so they go at reboot with the rules they describe.
    public static let recordDirectory = "/run/replica/firewall"

    /// The whole table for these bridges, as one `nft -f` batch that replaces every rule in it
    /// (the table and its chains made when missing, then flushed and filled: atomic, and
    /// idempotent); with none, one that deletes it. The chains stay between changes: deleting a
    /// chain on a hook makes the kernel wait for a grace period (about 20 ms here), a flush does not.
    /// Each owner's port forwards are in two chains of its own (`dnat-OWNER`, jumped to from
    /// prerouting and output; `snat-OWNER`, from postrouting), so a change of its forwards alone
    /// replaces only those (`forwardsScript`); the chains of `removed` owners are deleted.
    public static func script(_ bridges: [BridgeFirewall], confineIPv6: Bool = false, removed: [String] = []) -> String {
        guard !bridges.isEmpty else { return "table \(table)\ndelete table \(table)\n" }
        let sorted = bridges.sorted { $0.bridge < $1.bridge }
        var lines = ["table \(table) {"]
        for (name, hook) in chains { lines.append("  chain \(name) { \(hook) }") }
        for rules in sorted { lines += ["  chain \(dnatChain(rules.owner)) { }", "  chain \(snatChain(rules.owner)) { }"] }
        lines += ["}", "flush table \(table)"]
        lines += removed.flatMap { ["delete chain \(table) \(dnatChain($0))", "delete chain \(table) \(snatChain($0))"] }
        let ours = bridges.map(\.bridge)
        var forward = [
            "ct state invalid iifname \(set(ours)) drop",
            "ct state established,related oifname \(set(ours)) accept",
        ]
        // IPv6 forwarding has no per-interface switch: where Replica turned it on for the host,
        // nothing but what enters or leaves a bridge of ours is forwarded, as before.
        if confineIPv6 { forward.append("meta nfproto ipv6 iifname != \(set(ours)) oifname != \(set(ours)) drop") }
        var prerouting: [String] = [], output: [String] = [], postrouting: [String] = []
        var owned: [(String, [String])] = []
        // Each bridge's own traffic first, then what may enter each, then what may leave each: an
        // Allow= of one bridge is decided before the other's "never into a bridge".
        for rules in sorted {
            let bridge = quoted(rules.bridge)
            forward.append("iifname \(bridge) ip saddr != \(rules.subnet) drop")
            forward.append("iifname \(bridge) " + (rules.subnet6.map { "ip6 saddr != \($0) drop" } ?? "meta nfproto ipv6 drop"))
            forward.append("iifname \(bridge) oifname \(bridge) accept")
        }
        for rules in sorted {
            let bridge = quoted(rules.bridge)
            forward.append("oifname \(bridge) ct status dnat accept")
            for peer in rules.allow {
                switch peer {
                case .bridge(let name): forward.append("iifname \(quoted(name)) oifname \(bridge) accept")
                case .subnet(let prefix): forward.append("\(family(prefix)) saddr \(prefix) oifname \(bridge) accept")
                }
            }
            forward.append("oifname \(bridge) drop")
        }
        for rules in sorted {
            let bridge = quoted(rules.bridge)
            forward += ["iifname \(bridge) meta oifkind \"bridge\" drop", "iifname \(bridge) accept"]
            if rules.masquerade {
                for subnet in [rules.subnet] + (rules.subnet6.map { [$0] } ?? []) {
                    postrouting.append("\(family(subnet)) saddr \(subnet) oifname != \(set(ours)) masquerade")
                }
            }
            prerouting.append("jump \(dnatChain(rules.owner))")
            output.append("jump \(dnatChain(rules.owner))")
            postrouting.append("jump \(snatChain(rules.owner))")
            let (dnat, snat) = forwardRules(rules)
            owned += [(dnatChain(rules.owner), dnat), (snatChain(rules.owner), snat)]
        }
        lines.append("table \(table) {")
        for (name, body) in [("forward", forward), ("prerouting", prerouting), ("output", output), ("postrouting", postrouting)] + owned {
            lines.append("  chain \(name) {")
            lines += body.map { "    \($0)" }
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The batch that replaces one owner's port forwards and nothing else: its two chains flushed
    /// and refilled, in one transaction — or, with `adding` (forwards it did not have), only their
    /// rules appended: no rule is deleted, so the kernel has nothing to free (freeing rules waits
    /// for an RCU grace period when the socket closes, about 18 ms here). For a change of forwards
    /// alone (`update` falls back to the whole table when the chains are not there).
    public static func forwardsScript(_ rules: BridgeFirewall, adding: [PortForward]? = nil) -> String {
        var only = rules
        if let adding { only.forwards = adding }
        let (dnat, snat) = forwardRules(only)
        var lines = adding != nil ? [] : ["flush chain \(table) \(dnatChain(rules.owner))", "flush chain \(table) \(snatChain(rules.owner))"]
        lines.append("table \(table) {")
        for (name, body) in [(dnatChain(rules.owner), dnat), (snatChain(rules.owner), snat)] {
            lines.append("  chain \(name) {")
            lines += body.map { "    \($0)" }
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// An owner's chains of forwards: `dnat-OWNER`, `snat-OWNER` (nft 1.0 takes only an
    /// identifier there, so an owner with any other byte is written with `_` and a hash of it).
    static func dnatChain(_ owner: String) -> String { "dnat-" + identifier(owner) }
    static func snatChain(_ owner: String) -> String { "snat-" + identifier(owner) }

    static func identifier(_ owner: String) -> String {
        let plain = { (c: Unicode.Scalar) in c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "_.-".unicodeScalars.contains(c)) }
        if owner.unicodeScalars.allSatisfy(plain) { return owner }
        return String(owner.unicodeScalars.map { plain($0) ? Character($0) : "_" }) + "-" + String(FNV1a.hash32(owner), radix: 16)
    }

    /// The rules of the bridge's port forwards: the DNAT (taken in prerouting and output alike) and
    /// the masquerade of what reaches a machine from the host or its own bridge.
    static func forwardRules(_ rules: BridgeFirewall) -> (dnat: [String], snat: [String]) {
        var dnat: [String] = [], snat: [String] = []
        let bridge = quoted(rules.bridge)
        for forwardRule in rules.forwards {
            let family = family(forwardRule.target), target = forwardRule.target.addressText
            dnat.append((forwardRule.hostAddress.map { "\(family) daddr \($0.addressText) " }
                         ?? "meta nfproto \(family == "ip" ? "ipv4" : "ipv6") fib daddr type local ")
                + "\(forwardRule.transport.rawValue) dport \(forwardRule.hostPort) dnat \(family) to \(PortForward.written(forwardRule.target)):\(forwardRule.targetPort)")
            // The host's own connections to a forward, and a machine's of the same bridge (hairpin),
            // reach the machine from the bridge's gateway, so its answer comes back the same way;
            // from anywhere else the machine sees the client's own address.
            let reached = "ct status dnat \(family) daddr \(target) \(forwardRule.transport.rawValue) dport \(forwardRule.targetPort)"
            snat.append("oifname \(bridge) \(reached) fib saddr type local masquerade")
            if let subnet = family == "ip" ? rules.subnet : rules.subnet6 {
                snat.append("oifname \(bridge) \(reached) \(family) saddr \(subnet) masquerade")
            }
        }
        return (dnat, snat)
    }

    /// nft's word for an address's family: `ip` or `ip6`.
    static func family(_ prefix: IPPrefix) -> String { prefix.family == AF_INET6 ? "ip6" : "ip" }

    /// The table's chains and their hooks (nft 1.0 takes "dstnat" for prerouting only: -100 is the same).
    static let chains = [("forward", "type filter hook forward priority filter; policy accept;"),
                         ("prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
                         ("output", "type nat hook output priority -100; policy accept;"),
                         ("postrouting", "type nat hook postrouting priority srcnat; policy accept;")]

    static func quoted(_ name: String) -> String { "\"\(name)\"" }
    static func set(_ names: [String]) -> String { "{ " + names.sorted().map(quoted).joined(separator: ", ") + " }" }

    /// Loads a batch — in this process through libnftables (`nft_run_cmd_from_buffer`, what `nft -f`
    /// runs) where the library is installed, else `nft -f -` with it on standard input. The kernel
    /// takes all of it or none.
    public static func load(_ script: String) throws(ReplicaError) {
        if let failure = LibNftables.run(script) {
            guard let said = failure else { return }
            throw ReplicaError("nft_run_cmd_from_buffer", [table], errno: .EIO,
                               hint: said.split(separator: "\n").prefix(6).joined(separator: "; "), reason: .system)
        }
        try loadWithNft(script)
    }

    /// `nft -f -`, for a host without libnftables.
    static func loadWithNft(_ script: String) throws(ReplicaError) {
        let memory = OwnedFD(adopting: try syscall("memfd_create") { replica_memfd_cloexec("replica-nft") })
        try memory.writeAll(Array(script.utf8), name: "nft batch")
        _ = lseek(memory.rawValue, 0, SEEK_SET)
        let result = try Command.run(["nft", "-f", "-"], input: memory.rawValue)
        guard result.status.isSuccess else {
            throw ReplicaError("nft -f", [table], errno: .EIO, hint: "\(result.status): \(result.output.split(separator: "\n").prefix(6).joined(separator: "; "))",
                               reason: .system)
        }
    }

    /// Sets (`rules`) or removes (nil) the record of `owner`, then loads the table of all records —
    /// under an exclusive lock of the folder, so two changes never interleave. A failure to load
    /// puts the record back as it was. Refused before anything changes: a port another record
    /// forwards already, or one the host listens on.
    public static func update(_ owner: String, _ rules: BridgeFirewall?, records: String = recordDirectory) throws(ReplicaError) {
        _ = try LeaseOwner(owner)
        try createDirectories(records, mode: 0o755)
        let lock = try OwnedFD.open("\(records)/.lock", O_RDWR | O_CREAT, mode: 0o644)
        _ = try lock.lockExclusively(wait: nil, name: "\(records)/.lock")
        var all = try read(records)
        let before = all[owner]
        if let rules {
            try checkSubnet(owner: owner, bridge: rules.bridge, subnet: rules.subnet, among: all)
            for forward in rules.forwards {
                for (other, theirs) in all where other != owner {
                    if let taken = theirs.forwards.first(where: { $0.collides(with: forward) }) {
                        throw ReplicaError("port forward", [forward.description], errno: .EADDRINUSE,
                                           hint: "\(other) forwards \(taken.transport) port \(taken.hostPort) already; pick another host port",
                                           reason: .refused)
                    }
                }
                if before?.forwards.contains(where: { $0.collides(with: forward) }) != true, try isListening(forward) {
                    throw ReplicaError("port forward", [forward.description], errno: .EADDRINUSE,
                                       hint: "a program on this host listens on \(forward.transport) port \(forward.hostPort); pick another host port",
                                       reason: .refused)
                }
            }
            all[owner] = rules
        } else {
            guard before != nil else { return }
            all[owner] = nil
        }
        let folder = try RootDirectory(records)
        if let rules { try folder.writeFileAtomically(owner, contents: Array(encode(rules).utf8), mode: 0o644) } else { unlink("\(records)/\(owner)") }
        do throws(ReplicaError) {
            let bridges = all.keys.sorted().map { all[$0]! }
            let ipv6 = bridges.contains { $0.subnet6 != nil }
            // IPv6 forwarding turned on only once the table confines it, and off before the table
            // stops confining it.
            if !ipv6 { try Forwarding.followIPv6(false, records: records) }
            var rest = before
            rest?.forwards = rules?.forwards ?? []
            let kept = before?.forwards ?? []
            let adding = rules.map { Array($0.forwards.dropFirst(kept.count)) }
            if let rules, rest == rules, rules.forwards.starts(with: kept), (try? load(forwardsScript(rules, adding: adding))) != nil {
                // Its forwards alone grew, and its chains were there: only the new ones appended.
            } else if let rules, rest == rules, (try? load(forwardsScript(rules))) != nil {
                // Its forwards alone changed: only its own chains replaced.
            } else {
                try load(script(bridges, confineIPv6: ipv6 && Forwarding.willTurnOnIPv6(records: records),
                                removed: before != nil && rules == nil ? [owner] : []))
            }
            if ipv6 { try Forwarding.followIPv6(true, records: records) }
            try Forwarding.follow(bridges.map(\.bridge), records: records)
        } catch {
            if let before { try? folder.writeFileAtomically(owner, contents: Array(encode(before).utf8), mode: 0o644) } else { unlink("\(records)/\(owner)") }
            throw error
        }
    }

    /// Refuses a subnet that overlaps another owner's on another bridge: the two sets' addresses
    /// would collide, and neither could be told apart by its rules.
    public static func checkSubnet(owner: String, bridge: String, subnet: IPPrefix, among all: [String: BridgeFirewall]? = nil,
                                   records: String = recordDirectory) throws(ReplicaError) {
        var known = all ?? [:]
        if all == nil { known = try read(records) }
        for (other, theirs) in known.sorted(by: { $0.key < $1.key }) where other != owner && theirs.bridge != bridge {
            if theirs.subnet.contains(subnet) || subnet.contains(theirs.subnet) {
                throw ReplicaError("subnet", [subnet.description], errno: .EADDRINUSE,
                                   hint: "overlaps \(other)'s \(theirs.subnet) on \(theirs.bridge); give each set a subnet of its own", reason: .refused)
            }
        }
    }

    /// Every record in the folder, by owner.
    public static func read(_ records: String = recordDirectory) throws(ReplicaError) -> [String: BridgeFirewall] {
        var all: [String: BridgeFirewall] = [:]
        guard let folder = try? OwnedFD.open(records, O_RDONLY | O_DIRECTORY) else { return all }
        for name in try DirectoryEntries.names(in: folder) where !name.hasPrefix(".") {
            let text = String(decoding: try folder.openat(name, O_RDONLY | O_NOFOLLOW).readAll(limit: 1 << 20, name: "\(records)/\(name)"), as: UTF8.self)
            all[name] = try decode(text, path: "\(records)/\(name)")
        }
        return all
    }

    /// Whether something on the host listens on the forward's port (`bind` to it, in the target's
    /// family, fails with EADDRINUSE).
    static func isListening(_ forward: PortForward) throws(ReplicaError) -> Bool {
        let family = forward.target.family
        let fd = OwnedFD(adopting: try syscall("socket") { socket(family, forward.transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue), 0) })
        var storage = sockaddr_storage()
        let size: Int
        if family == AF_INET6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = forward.hostPort.bigEndian
            if let host = forward.hostAddress { withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: host.address) } }
            var only: Int32 = 1
            setsockopt(fd.rawValue, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &only, socklen_t(MemoryLayout<Int32>.size))
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: withUnsafeBytes(of: address) { $0 }) }
            size = MemoryLayout<sockaddr_in6>.size
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = forward.hostPort.bigEndian
            if let host = forward.hostAddress { withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: host.address) } }
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: withUnsafeBytes(of: address) { $0 }) }
            size = MemoryLayout<sockaddr_in>.size
        }
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.rawValue, $0, socklen_t(size)) }
        }
        if result == 0 { return false }
        return errno == EADDRINUSE  // EADDRNOTAVAIL (an address not of this host yet) and the like: nothing listens
    }

    /// A record: `key=value` lines.
    static func encode(_ rules: BridgeFirewall) throws(ReplicaError) -> String {
        var record = Record()
        try record.append("owner", rules.owner)
        try record.append("bridge", rules.bridge)
        try record.append("subnet", rules.subnet.description)
        if let subnet6 = rules.subnet6 { try record.append("subnet6", subnet6.description) }
        try record.append("masquerade", rules.masquerade ? "yes" : "no")
        for peer in rules.allow { try record.append("allow", peer.description) }
        for forward in rules.forwards { try record.append("forward", forward.description) }
        return record.encoded
    }

    static func decode(_ text: String, path: String) throws(ReplicaError) -> BridgeFirewall {
        let record = try Record(decoding: text, source: path)
        guard let owner = record.value("owner"), let bridge = record.value("bridge"), let subnet = record.value("subnet") else {
            throw ReplicaError("read firewall record", [path], errno: .EINVAL, hint: "not a record Replica wrote; remove it by hand")
        }
        var rules = try BridgeFirewall(owner: owner, bridge: bridge, subnet: try IPPrefix(subnet))
        rules.subnet6 = try record.value("subnet6").map { (text) throws(ReplicaError) in try IPPrefix(text) }
        rules.masquerade = record.value("masquerade") != "no"
        rules.allow = try record.values("allow").map { (text) throws(ReplicaError) in try BridgeFirewall.Peer(text) }
        rules.forwards = try record.values("forward").map { (text) throws(ReplicaError) in try PortForward(parsing: text) }
        return rules
    }
}

/// libnftables, opened with `dlopen("libnftables.so.1")` the first time (it is not linked: hosts
/// without nftables still run everything else). Nil functions when it is absent.
enum LibNftables {
    typealias New = @convention(c) (UInt32) -> OpaquePointer?
    typealias Free = @convention(c) (OpaquePointer?) -> Void
    typealias Buffer = @convention(c) (OpaquePointer?) -> Int32
    typealias Run = @convention(c) (OpaquePointer?, UnsafePointer<CChar>) -> Int32
    typealias Read = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?

    nonisolated(unsafe) private static let handle: UnsafeMutableRawPointer? = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL)
    static let new: New? = symbol("nft_ctx_new")
    static let free: Free? = symbol("nft_ctx_free")
    static let bufferOutput: Buffer? = symbol("nft_ctx_buffer_output")
    static let bufferError: Buffer? = symbol("nft_ctx_buffer_error")
    static let runBuffer: Run? = symbol("nft_run_cmd_from_buffer")
    static let errorBuffer: Read? = symbol("nft_ctx_get_error_buffer")
    static let outputBuffer: Read? = symbol("nft_ctx_get_output_buffer")

    private static func symbol<Function>(_ name: String) -> Function? {
        guard let handle, let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: Function.self)
    }

    /// One context for the process (`nft_ctx_new(NFT_CTX_DEFAULT)`, output and errors kept in
    /// buffers), made on first use and kept, as libnftables means it to be: its netlink socket is
    /// closed only at exit, and closing one after a transaction waits for the kernel to free the
    /// transaction (an RCU grace period, about 10 ms here) — cleanup after the rules took effect.
    /// Its socket talks to the network namespace it was made in: a call from a thread in another
    /// one (`ip netns exec`, a thread that joined one) gets a context of its own namespace.
    nonisolated(unsafe) private static var shared: (context: OpaquePointer, namespace: UInt64)?
    private static let lock = Mutex(())

    /// Runs a batch: nil when the library is missing, `.some(nil)` on success, `.some(message)` on failure.
    static func run(_ script: String) -> String?? {
        guard let new, let free, let bufferOutput, let bufferError, let runBuffer, let errorBuffer, let outputBuffer else { return nil }
        var status = stat()
        guard stat("/proc/thread-self/ns/net", &status) == 0 else { return nil }
        let namespace = UInt64(status.st_ino)
        return lock.withLock { _ -> String?? in
            if shared?.namespace != namespace, let context = new(0) {
                _ = bufferOutput(context)
                _ = bufferError(context)
                if let old = shared?.context { free(old) }  // it would keep its namespace alive
                shared = (context, namespace)
            }
            guard let context = shared?.context, shared?.namespace == namespace else { return nil }
            let status = runBuffer(context, script)
            _ = outputBuffer(context)  // each read rewinds its buffer
            let said = errorBuffer(context).map { String(cString: $0) } ?? ""
            return status == 0 ? .some(nil) : .some(said.isEmpty ? "failed" : said)
        }
    }
}
