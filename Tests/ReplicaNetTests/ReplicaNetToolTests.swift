import Foundation
import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Testing

/// replica-net as an operator runs it: a separate process, its exit code, its output and its
/// `--json`, checked against what `ip` and `/run/netns` show. Names, bridge, subnet and lease
/// folder are the test's own.
@Suite(.requiresRoot, .serialized) struct ReplicaNetToolTests {
    static func net(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-net")] + arguments)
    }

    static func json(_ result: CommandResult) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any], "\(result.output)")
    }

    /// Runs `body` with flags standing in for a [Network] section, the lease and record folders
    /// (`state`) and a tag for names, then removes whatever is left: the namespaces, their veths and
    /// the bridge.
    static func withNetwork(_ body: (_ flags: [String], _ state: [String], _ tag: String) throws -> Void) throws {
        let tag = "t\(getpid() % 100_000)"
        let subnet = 100 + Int(getpid() % 50)
        let bridge = "rbt\(tag)"
        try withTemporaryDirectory { dir in
            defer {
                for suffix in ["a", "b", "longname-a", "longname-b"] { try? NetworkPlan(namespace: "\(tag)\(suffix)").teardown() }
                try? NetworkPlan.deleteLinks([bridge])
            }
            let state = ["--leases", "\(dir)/leases", "--records", "\(dir)/records"]
            try body(["--bridge", bridge, "--subnet", "10.\(subnet).0.0/24", "--leases", "\(dir)/leases"], state, tag)
        }
    }

    static func owners(_ state: [String]) throws -> [String] {
        let list = try json(try net(["list", "--json"] + state.prefix(2)))
        return (list["leases"] as? [[String: Any]])?.compactMap { $0["owner"] as? String } ?? ["?"]
    }

    @Test func upCheckDownAsAnOperatorRunsThem() throws {
        try Self.withNetwork { flags, state, tag in
            let up = try Self.net(["up", "--json"] + flags + state.suffix(2) + ["\(tag)a"])
            #expect(up.status == .exited(0), "\(up.output)")
            let made = try Self.json(up)
            #expect(made["schema"] as? String == "replica.v1" && made["tool"] as? String == "replica-net")
            #expect(made["directive"] as? String == "NetworkNamespacePath=/run/netns/\(tag)a")
            let plan = try #require(made["plan"] as? [String: Any])
            let address = try #require((plan["addresses"] as? [String])?.first)
            #expect(address.hasSuffix(".0.2/24"), "the first lease after the gateway")
            #expect(try Command.check(["ip", "-n", "\(tag)a", "-o", "addr", "show", "dev", "eth0"]).contains(address))
            #expect(try Self.net(["up"] + flags + state.suffix(2) + ["\(tag)b"]).status == .exited(0))

            let check = try Self.net(["check", "--json"] + flags + ["\(tag)a"])
            let checked = try Self.json(check)
            #expect(check.status == .exited(0) && checked["matches"] as? Bool == true, "\(check.output)")
            _ = try Command.check(["ip", "link", "set", "rv-\(tag)a", "down"])
            let drifted = try Self.net(["check", "--json"] + flags + ["\(tag)a"])
            #expect(drifted.status == .exited(1))
            #expect((try Self.json(drifted))["drift"] as? [String] == ["rv-\(tag)a is down"])
            #expect(try Self.owners(state) == ["\(tag)a.service", "\(tag)b.service"])

            // Both in one batch, by name alone: no flags, what up recorded is what goes. A second
            // down finds nothing recorded and is still fine.
            let down = try Self.net(["down", "--json"] + state + ["\(tag)a", "\(tag)b.service"])
            #expect(down.status == .exited(0), "\(down.output)")
            #expect((try Self.json(down)["removed"] as? [[String: Any]])?.count == 2)
            #expect(!NetworkNamespace.list().contains { $0.hasPrefix(tag) })
            #expect(!(try Command.check(["ip", "-o", "link", "show"])).contains("rv-\(tag)"))
            #expect(try Self.owners(state).isEmpty, "every address given back")
            let again = try Self.net(["down"] + state + ["\(tag)a", "\(tag)b"])
            #expect(again.status == .exited(0) && again.output.contains("nothing recorded as made by up"), "\(again.output)")
        }
    }

    @Test func aTakenNameOrABadNameChangesNothing() throws {
        try Self.withNetwork { flags, state, tag in
            #expect(try Self.net(["up"] + flags + state.suffix(2) + ["\(tag)a"]).status == .exited(0))
            let before = try Command.check(["ip", "-o", "-n", "\(tag)a", "addr", "show"])

            let again = try Self.net(["up"] + flags + state.suffix(2) + ["\(tag)a"])
            #expect(again.status == .exited(1))
            #expect(again.output.contains("left untouched"), "\(again.output)")
            #expect(try Self.owners(state) == ["\(tag)a.service"], "the failed up kept the running one's address")

            // A batch with one name that cannot be a unit: refused before anything goes.
            let bad = try Self.net(["down"] + state + ["\(tag)a", "no/such"])
            #expect(bad.status == .exited(2))
            #expect(bad.output.contains("no/such.service: not a unit name"), "\(bad.output)")

            #expect(NetworkNamespace.list().contains("\(tag)a"))
            #expect(try Command.check(["ip", "-o", "-n", "\(tag)a", "addr", "show"]) == before)
            #expect(try Self.net(["check"] + flags + ["\(tag)a"]).status == .exited(0))
        }
    }

    /// Refused ups never keep a lease: 300 of them (more than the /24 holds) leave the pool as it was.
    @Test func refusedUpsNeverDrainThePool() throws {
        try Self.withNetwork { flags, state, tag in
            let outside = flags + ["--gateway", "192.0.2.1"]
            for attempt in 0..<300 {
                let refused = try Self.net(["up"] + outside + state.suffix(2) + ["\(tag)a"])
                guard refused.status == .exited(2) else { Issue.record("attempt \(attempt): \(refused.output)"); return }
                if attempt == 0 { #expect(refused.output.contains("the gateway is not in the network"), "\(refused.output)") }
            }
            let badName = try Self.net(["up"] + flags + state.suffix(2) + ["\(tag)a/x"])
            #expect(badName.status == .exited(2), "\(badName.output)")
            // The namespace is taken by someone else: apply fails, the new lease goes back.
            try NetworkNamespace.create("\(tag)b")
            let taken = try Self.net(["up"] + flags + state.suffix(2) + ["\(tag)b"])
            #expect(taken.status == .exited(1) && taken.output.contains("left untouched"), "\(taken.output)")
            try NetworkNamespace.delete("\(tag)b")
            #expect(try Self.owners(state).isEmpty)
            #expect(try Self.net(["up"] + flags + state.suffix(2) + ["\(tag)a"]).status == .exited(0), "the pool still has room")
        }
    }

    /// Two services whose names share their first 12 bytes get two links; the teardown of one that
    /// never came up, or of one whose link name someone else took since, removes nothing of another's.
    @Test func cutNamesDoNotCollideAndDownRemovesOnlyWhatUpMade() throws {
        try Self.withNetwork { flags, state, tag in
            let (first, second) = ("\(tag)longname-a", "\(tag)longname-b")
            #expect(NetworkPlan.hostLinkName(for: first) != NetworkPlan.hostLinkName(for: second))
            #expect(try Self.net(["up"] + flags + state.suffix(2) + [first]).status == .exited(0))
            let downNever = try Self.net(["down"] + state + [second])
            #expect(downNever.status == .exited(0) && downNever.output.contains("nothing recorded"), "\(downNever.output)")
            #expect(try Command.run(["ip", "link", "show", NetworkPlan.hostLinkName(for: first)]).status == .exited(0),
                    "the running one's veth is still there")
            // The namespace replaced behind our back (another inode): left alone.
            _ = try Command.check(["ip", "netns", "del", first])
            try NetworkNamespace.create(first)
            let down = try Self.net(["down"] + state + [first])
            #expect(down.status == .exited(0) && down.output.contains("namespace \(first) is not the one up made (inode ") && down.output.contains("left alone"), "\(down.output)")
            #expect(NetworkNamespace.list().contains(first))
            try NetworkNamespace.delete(first)
        }
    }
}
