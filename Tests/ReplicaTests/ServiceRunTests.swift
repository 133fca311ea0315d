import Glibc
import Replica
import ReplicaKit
import ReplicaNet
import ReplicaStore
import ReplicaTestSupport
import Testing

/// `replica-run --standalone`, as an operator without systemd runs it: the state prepared on the
/// store, the network made, the command run in the sandbox with the command's own exit code, a
/// SIGTERM passed on, and afterwards nothing of the network left — namespace, veth, lease.
@Suite(.requiresBtrfs, .serialized) struct ServiceRunTests {
    static func run(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-run")] + arguments)
    }

    /// A profile `rrNNNN` with state on the image's store and a network of its own, in `body`;
    /// everything removed afterwards.
    static func withService(_ body: (_ profiles: String, _ unit: String, _ state: String, _ store: String) throws -> Void) throws {
        let unit = "rr\(getpid() % 100_000)", bridge = "rrb\(getpid() % 100_000)"
        let state = "/var/lib/\(unit)"
        try withBtrfsImage { image in
            try withTemporaryDirectory { profiles in
                defer {
                    _ = try? ServiceNetwork.down(["\(unit).service"])
                    try? NetworkPlan.deleteLinks([bridge])
                    removeTree(state)
                }
                _ = try Command.check(["mkdir", "-p", state])
                let fd = try OwnedFD.open("\(profiles)/\(unit).service.conf", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
                try fd.writeAll(Array("""
                    [State]
                    Path=\(state)
                    Store=\(image.mountPoint)
                    [Network]
                    Bridge=\(bridge)
                    Subnet=10.196.\(getpid() % 200).0/24
                    """.utf8))
                try body(profiles, unit, state, image.mountPoint)
            }
        }
    }

    @Test func theWholeJobRunsAndLeavesNoNetwork() throws {
        try Self.withService { profiles, unit, state, store in
            // The control: without --standalone nothing is made, so the sandbox cannot be built.
            let bare = try Self.run(["--profiles", profiles, unit, "--", "true"])
            #expect(bare.status != .exited(0), "\(bare.output)")

            let script = "echo kept > \(state)/file; ip -o -4 addr show dev eth0; exit 7"
            let ran = try Self.run(["--standalone", "--profiles", profiles, unit, "--", "sh", "-c", script])
            #expect(ran.status == .exited(7), "the command's own code: \(ran.output)")
            #expect(ran.output.contains("10.196.\(getpid() % 200).2/24"), "the leased address, inside: \(ran.output)")
            let kept = try OwnedFD.open("\(store)/\(unit)/file", O_RDONLY).readAll(limit: 64, name: "file")
            #expect(String(decoding: kept, as: UTF8.self) == "kept\n", "the state is the store's subvolume")
            #expect(!NetworkNamespace.list().contains(unit), "the namespace is gone")
            #expect(!(try Command.run(["ip", "link", "show", "rv-\(unit)"]).status.isSuccess), "the veth is gone")
            #expect(try AddressPool.all().flatMap { try $0.leases() }.allSatisfy { $0.owner != "\(unit).service" }, "the lease is given back")
        }
    }

    @Test func aSigtermReachesTheCommandAndTheNetworkStillGoes() throws {
        try Self.withService { profiles, unit, _, _ in
            let pid = try Command.spawn([try builtTool("replica-run"), "--standalone", "--profiles", profiles, unit, "--", "sleep", "30"])
            for _ in 0..<500 where !NetworkNamespace.list().contains(unit) { usleep(10_000) }
            #expect(NetworkNamespace.list().contains(unit), "the network is there while it runs")
            usleep(200_000)  // the command is sleeping
            kill(pid, SIGTERM)
            let ended = try ExitStatus.wait(for: pid)
            #expect(ended == .exited(128 + SIGTERM), "sleep killed by SIGTERM: \(ended)")
            #expect(!NetworkNamespace.list().contains(unit), "the namespace is gone")
        }
    }
}

/// Each service reaches its own state only: from inside service A (its own process, as root, under
/// `replica-run`), service B's subvolume, the store, its lock files and Replica's folders are all
/// out of reach, while A's own state is at its path. The same command run outside the sandbox
/// reaches B's state: the control that the probe would see a leak.
@Suite(.requiresBtrfs, .serialized) struct ServiceIsolationTests {
    static func withTwoServices(_ body: (_ profiles: String, _ a: String, _ b: String, _ store: String) throws -> Void) throws {
        let (a, b) = ("isa\(getpid() % 100_000)", "isb\(getpid() % 100_000)")
        try withBtrfsImage { image in
            try withTemporaryDirectory { profiles in
                defer { removeTree("/var/lib/\(a)"); removeTree("/var/lib/\(b)") }
                for unit in [a, b] {
                    let fd = try OwnedFD.open("\(profiles)/\(unit).service.conf", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
                    try fd.writeAll(Array("[State]\nPath=/var/lib/\(unit)\nStore=\(image.mountPoint)\n[Sandbox]\nHardening=service\nUser=root\n".utf8))
                }
                try body(profiles, a, b, image.mountPoint)
            }
        }
    }

    @Test func aServiceReachesNothingOfAnother() throws {
        try Self.withTwoServices { profiles, a, b, store in
            let secret = "\(store)/\(b)/secret"
            let made = try ServiceRunTests.run(["--standalone", "--profiles", profiles, b, "--", "sh", "-c",
                                                "echo b-secret > /var/lib/\(b)/secret; chmod 600 /var/lib/\(b)/secret"])
            #expect(made.status == .exited(0), "\(made.output)")
            #expect(try Command.run(["cat", secret]).output == "b-secret\n", "the control: outside a sandbox B's state is readable")
            let probe = """
                echo own > /var/lib/\(a)/mine && echo own=ok
                cat \(secret) 2>/dev/null || echo peer=refused
                ls \(store) 2>/dev/null | grep -q . && echo store=listed || echo store=hidden
                for dir in /run/replica /var/lib/replica /etc/replica; do ls -A $dir 2>/dev/null | grep -q . && echo $dir=listed; done
                touch /dev/replica-probe 2>/dev/null && echo dev=written || echo dev=read-only
                touch /dev/shm/replica-probe && rm /dev/shm/replica-probe && echo shm=written
                """
            let ran = try ServiceRunTests.run(["--standalone", "--profiles", profiles, a, "--", "sh", "-c", probe])
            #expect(ran.status == .exited(0), "\(ran.output)")
            #expect(ran.output == "own=ok\npeer=refused\nstore=hidden\ndev=read-only\nshm=written\n", "\(ran.output)")
            #expect(try Command.run(["cat", "\(store)/\(a)/mine"]).output == "own\n", "A's own state is its subvolume")
        }
    }
}
