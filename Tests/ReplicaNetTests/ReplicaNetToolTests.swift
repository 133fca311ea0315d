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

    /// Runs `body` with flags standing in for a [Network] section and a tag for names, then removes
    /// whatever is left: the namespaces, their veths and the bridge.
    static func withNetwork(_ body: (_ flags: [String], _ tag: String) throws -> Void) throws {
        let tag = "t\(getpid() % 100_000)"
        let subnet = 100 + Int(getpid() % 50)
        let bridge = "rbt\(tag)"
        try withTemporaryDirectory { leases in
            defer {
                for suffix in ["a", "b"] { try? NetworkPlan(namespace: "\(tag)\(suffix)").teardown() }
                try? NetworkPlan.deleteLinks([bridge])
            }
            try body(["--bridge", bridge, "--subnet", "10.\(subnet).0.0/24", "--leases", leases], tag)
        }
    }

    @Test func upCheckDownAsAnOperatorRunsThem() throws {
        try Self.withNetwork { flags, tag in
            let up = try Self.net(["up", "--json"] + flags + ["\(tag)a"])
            #expect(up.status == .exited(0), "\(up.output)")
            let made = try Self.json(up)
            #expect(made["schema"] as? String == "replica.net.v1")
            #expect(made["directive"] as? String == "NetworkNamespacePath=/run/netns/\(tag)a")
            let plan = try #require(made["plan"] as? [String: Any])
            let address = try #require((plan["addresses"] as? [String])?.first)
            #expect(address.hasSuffix(".0.2/24"), "the first lease after the gateway")
            #expect(try Command.check(["ip", "-n", "\(tag)a", "-o", "addr", "show", "dev", "eth0"]).contains(address))
            #expect(try Self.net(["up"] + flags + ["\(tag)b"]).status == .exited(0))

            let check = try Self.net(["check", "--json"] + flags + ["\(tag)a"])
            let checked = try Self.json(check)
            #expect(check.status == .exited(0) && checked["matches"] as? Bool == true, "\(check.output)")
            _ = try Command.check(["ip", "link", "set", "rv-\(tag)a", "down"])
            let drifted = try Self.net(["check", "--json"] + flags + ["\(tag)a"])
            #expect(drifted.status == .exited(1))
            #expect((try Self.json(drifted))["drift"] as? [String] == ["rv-\(tag)a is down"])

            let list = try Self.json(try Self.net(["list", "--json"] + flags.suffix(2)))
            #expect((list["leases"] as? [[String: Any]])?.compactMap { $0["owner"] as? String } == ["\(tag)a", "\(tag)b"])

            // Both in one batch; a second down finds nothing and is still fine.
            let down = try Self.net(["down", "--json"] + flags + ["\(tag)a", "\(tag)b"])
            #expect(down.status == .exited(0), "\(down.output)")
            #expect((try Self.json(down)["removed"] as? [[String: Any]])?.count == 2)
            #expect(!NetworkNamespace.list().contains { $0.hasPrefix(tag) })
            #expect(!(try Command.check(["ip", "-o", "link", "show"])).contains("rv-\(tag)"))
            let after = try Self.json(try Self.net(["list", "--json"] + flags.suffix(2)))
            #expect((after["leases"] as? [Any])?.isEmpty == true, "every address given back")
            #expect(try Self.net(["down"] + flags + ["\(tag)a", "\(tag)b"]).status == .exited(0))
        }
    }

    @Test func aTakenNameOrABadNameChangesNothing() throws {
        try Self.withNetwork { flags, tag in
            #expect(try Self.net(["up"] + flags + ["\(tag)a"]).status == .exited(0))
            let before = try Command.check(["ip", "-o", "-n", "\(tag)a", "addr", "show"])

            let again = try Self.net(["up"] + flags + ["\(tag)a"])
            #expect(again.status == .exited(1))
            #expect(again.output.contains("left untouched"), "\(again.output)")
            let leases = try Self.json(try Self.net(["list", "--json"] + flags.suffix(2)))["leases"] as? [[String: Any]]
            #expect(leases?.compactMap { $0["owner"] as? String } == ["\(tag)a"], "the failed up kept the running one's address")

            // A batch with one name that cannot be a namespace: refused before anything goes.
            let bad = try Self.net(["down"] + flags + ["\(tag)a", "no/such"])
            #expect(bad.status != .exited(0))
            #expect(bad.output.contains("no/such.service: not a unit name"), "\(bad.output)")

            #expect(NetworkNamespace.list().contains("\(tag)a"))
            #expect(try Command.check(["ip", "-o", "-n", "\(tag)a", "addr", "show"]) == before)
            #expect(try Self.net(["check"] + flags + ["\(tag)a"]).status == .exited(0))
        }
    }
}
