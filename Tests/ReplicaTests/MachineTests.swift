import Glibc
@testable import Replica
import ReplicaKit
import ReplicaNet
import ReplicaStore
import ReplicaTestSupport
import Testing

/// `replica-machine` with the reference template: the end-to-end suite's debootstrap'd Debian 12
/// (Tests/EndToEnd/rootfs makes it once and caches it), imported onto a loop-mounted store, forked
/// twice, booted with systemd-nspawn until each one's systemd is ready, and checked from inside.
/// The named network namespaces (`ip netns list`), read from /run/netns.
enum NetworkNamespaceNames {
    static func current() -> [String] {
        (try? DirectoryEntries.names(in: try OwnedFD.open("/run/netns", O_RDONLY | O_DIRECTORY))) ?? []
    }
}

@Suite(.requiresBtrfs, .serialized) struct MachineTests {
    static func machine(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-machine")] + arguments)
    }

    /// The cached Debian 12 rootfs (built by the recipe the first time: about a minute).
    static func rootfs() throws -> String {
        let output = try Command.check(["sh", "-c", "'\(repositoryRoot)Tests/EndToEnd/rootfs' 2>/dev/null"])
        return String(output.split(separator: "\n").last ?? "")
    }

    /// The pid of machine `machine`'s systemd.
    static func leader(_ machine: String) throws -> Int32? { MachineProcess.leader(machine) }

    /// What is in a store's machines folder but the index of user ranges (`.users`).
    static func machineEntries(_ folder: String) throws -> [String] {
        try DirectoryEntries.names(in: try OwnedFD.open(folder, O_RDONLY | O_DIRECTORY)).filter { $0 != ".users" }.sorted()
    }

    /// Imports `rootfs` as template `base`, and as `debian12` with an sshd configuration, so that
    /// every fork of it gets a host key of its own: the operator's workflow for a template of their
    /// own (fork the base, change it, import the fork).
    static func importTemplateWithSSHD(_ rootfs: String, store mountPoint: String) throws {
        let store = ["--store", mountPoint]
        #expect(try machine(["template", "import", "base", rootfs] + store).status == .exited(0))
        #expect(try machine(["fork", "custom", "--template", "base"] + store).status == .exited(0))
        _ = try Command.check(["mkdir", "-p", "\(mountPoint)/machines/custom/etc/ssh"])
        _ = try Command.check(["touch", "\(mountPoint)/machines/custom/etc/ssh/sshd_config"])
        #expect(try machine(["template", "import", "debian12", "\(mountPoint)/machines/custom"] + store).status == .exited(0))
        #expect(try machine(["remove", "custom"] + store).status == .exited(0))
    }

    static func inside(_ machine: String, _ command: [String]) throws -> String {
        let leader = try #require(try leader(machine))
        return try Command.check(["nsenter", "--target", "\(leader)", "--all", "--"] + command)
    }

    @Test func forksBootWithIdentitiesOfTheirOwnAndTheTemplateStaysUntilTheyGo() throws {
        let rootfs = try Self.rootfs()
        let templateID = String(decoding: try OwnedFD.open("\(rootfs)/etc/machine-id", O_RDONLY).readAll(), as: UTF8.self)
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            let again = try Self.machine(["template", "import", "debian12", rootfs] + store)
            #expect(again.status == .exited(1) && again.output.contains("a template of that name exists"))
            let template = try OwnedFD.open("\(image.mountPoint)/templates/debian12", O_RDONLY | O_DIRECTORY)
            let info = try Btrfs.info(template, path: "debian12")
            #expect(info.isReadOnly)

            var forkTimes: [Duration] = []
            for name in ["web1", "web2"] {
                let began = ContinuousClock.now
                let forked = try Self.machine(["fork", name, "--template", "debian12"] + store)
                forkTimes.append(ContinuousClock.now - began)
                #expect(forked.status == .exited(0), "\(forked.output)")
                let root = "\(image.mountPoint)/machines/\(name)"
                #expect(try OwnedFD.open("\(root)/etc/machine-id", O_RDONLY).readAll().isEmpty)
                #expect(access("\(root)/var/lib/dbus/machine-id", F_OK) != 0)
                #expect(try OwnedFD.open("\(root)/etc/hostname", O_RDONLY).readLine() == name)
                let metaData = String(decoding: try OwnedFD.open("\(root)/var/lib/cloud/seed/nocloud/meta-data", O_RDONLY).readAll(), as: UTF8.self)
                #expect(metaData.contains("local-hostname: \(name)") && metaData.contains("instance-id: replica-"))
            }
            #expect(forkTimes.allSatisfy { $0 < .seconds(1) }, "\(forkTimes)")
            let seeds = try ["web1", "web2"].map { name in
                try OwnedFD.open("\(image.mountPoint)/machines/\(name)/var/lib/cloud/seed/nocloud/meta-data", O_RDONLY).readLine()
            }
            #expect(seeds[0] != seeds[1], "two forks share an instance-id")
            // Each has a user range of its own; one another machine holds is refused, leaving nothing.
            let ranges = try JSON.parse(try Self.machine(["list", "--json"] + store).output)["machines"]?.array?.compactMap { $0["users"]?.string } ?? []
            #expect(ranges.count == 2 && Set(ranges).count == 2 && ranges.allSatisfy { (UInt32($0) ?? 0) >= MachineUsers.pool.lowerBound }, "\(ranges)")
            let held = try Self.machine(["fork", "web3", "--template", "debian12", "--private-users", ranges[0]] + store)
            #expect(held.status == .exited(1) && held.output.contains("is machine web1's"), "\(held.output)")
            #expect(access("\(image.mountPoint)/machines/web3", F_OK) != 0 && access("\(image.mountPoint)/machines/.forking-web3", F_OK) != 0)

            let busy = try Self.machine(["template", "remove", "debian12"] + store)
            #expect(busy.status == .exited(1) && busy.output.contains("web1, web2"))

            defer { for name in ["web1", "web2"] { _ = try? Self.machine(["stop", name]) } }
            var ids: [String] = []
            for name in ["web1", "web2"] {
                let started = try Self.machine(["start", name, "--wait", "60"] + store)
                #expect(started.status == .exited(0) && started.output.contains("ready in"), "\(started.output)")
                #expect(try Self.inside(name, ["hostname"]) == "\(name)\n")
                ids.append(try Self.inside(name, ["cat", "/etc/machine-id"]))
            }
            #expect(ids[0] != ids[1] && !ids.contains(templateID) && ids.allSatisfy { $0.count == 33 }, "\(ids) vs \(templateID)")
            // Each guest's root is a host range of its own, none of them the host's root.
            let maps = try ["web1", "web2"].map { try Self.inside($0, ["cat", "/proc/1/uid_map"]).split(whereSeparator: \.isWhitespace) }
            #expect(maps.allSatisfy { $0.count == 3 && $0[0] == "0" && (UInt32($0[1]) ?? 0) >= MachineUsers.pool.lowerBound && $0[2] == "65536" }, "\(maps)")
            #expect(maps[0][1] != maps[1][1], "two machines share a user range")
            let mknod = try Command.run(["nsenter", "--target", "\(try #require(try Self.leader("web1")))", "--all", "--", "mknod", "/run/b", "b", "7", "0"])
            #expect(mknod.status != .exited(0) && mknod.output.contains("Operation not permitted"), "\(mknod.output)")
            let listed = try Self.machine(["list", "--json"] + store).output
            #expect(try JSON.parse(listed)["machines"]?.array?.compactMap { $0["running"] } == [.bool(true), .bool(true)])
            let running = try Self.machine(["remove", "web1"] + store)
            #expect(running.status == .exited(1) && running.output.contains("stop it first"))

            for name in ["web1", "web2"] {
                #expect(try Self.machine(["stop", name]).status == .exited(0))
                #expect(MachineProcess.running(name) == nil)
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
                #expect(access("/sys/fs/cgroup/systemd/\(ControlGroup.slice)/machine-\(name)", F_OK) != 0, "its cgroup is left")
            }
            #expect(try Self.machine(["template", "remove", "debian12"] + store).status == .exited(0))
            // Nothing but the (now empty) index of user ranges is left.
            #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/machines", O_RDONLY | O_DIRECTORY)) == [".users"])
            #expect(try OwnedFD.open("\(image.mountPoint)/machines/.users", O_RDONLY).readAll().isEmpty)
        }
    }

    /// A memory, fork and CPU hog run by one machine's own systemd, in its limits (Replica's own
    /// cgroup here, where no systemd runs): the hog stays inside them, and a second machine stays
    /// READY and answers within 100 ms. Control: the hog does fill its limits.
    @Test func aHogInOneMachineLeavesAnotherAnswering() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            let forked = try Self.machine(["fork", "hog", "--template", "debian12", "--memory-max", "256M", "--tasks-max", "200",
                                           "--cpu-quota", "50%"] + store)
            #expect(forked.status == .exited(0), "\(forked.output)")
            #expect(try Self.machine(["fork", "calm", "--template", "debian12"] + store).status == .exited(0))
            let root = "\(image.mountPoint)/machines/hog"
            try OwnedFD.open("\(root)/etc/systemd/system/hog.service", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array("""
                [Service]
                ExecStart=/bin/sh -c "perl -e '1 while 1' & perl -e '1 while 1' & perl -e 'my $$x = q(a) x (1 << 30); sleep 600' & exec perl -e 'for (1..100000) { my $$p = fork; if (defined $$p && !$$p) { sleep 600; exit } } sleep 600'"
                [Install]
                WantedBy=multi-user.target

                """.utf8))
            try createDirectories("\(root)/etc/systemd/system/multi-user.target.wants", mode: 0o755)
            _ = symlink("/etc/systemd/system/hog.service", "\(root)/etc/systemd/system/multi-user.target.wants/hog.service")
            defer { for name in ["hog", "calm"] { _ = try? Self.machine(["stop", name]) } }
            for name in ["hog", "calm"] {
                let started = try Self.machine(["start", name] + store)
                #expect(started.status == .exited(0), "\(started.output)")
            }
            // The hog reaches its task limit (fork fails past it) and its memory limit (a 1 GiB string: the
            // kernel reclaims, then kills inside the machine).
            let group = "\(ControlGroup.slice)/machine-hog"
            func read(_ file: String) -> UInt64 { UInt64((try? OwnedFD.open("/sys/fs/cgroup/\(file)", O_RDONLY).readLine()) ?? "") ?? 0 }
            var peak: UInt64 = 0
            for _ in 0..<300 where peak < 190 {
                peak = max(peak, read("pids/\(group)/pids.current"))
                usleep(50_000)
            }
            #expect(peak >= 190 && peak <= 200, "the hog's tasks: \(peak) (limit 200)")
            for _ in 0..<600 where read("memory/\(group)/memory.failcnt") == 0 { usleep(50_000) }
            #expect(read("memory/\(group)/memory.failcnt") > 0, "the hog never reached its memory limit")
            #expect(read("memory/\(group)/memory.max_usage_in_bytes") <= 256 << 20)
            // The other machine answers, within 100 ms.
            var answers: [Duration] = []
            for _ in 0..<5 {
                let began = ContinuousClock.now
                let state = try Self.inside("calm", ["systemctl", "is-system-running"])
                answers.append(ContinuousClock.now - began)
                #expect(["running\n", "degraded\n"].contains(state), "\(state)")
            }
            #expect(answers.sorted()[2] < .milliseconds(100), "the calm machine answered in \(answers)")
            print("hog: \(peak) tasks of 200, memory limit hit \(read("memory/\(group)/memory.failcnt")) times; the other machine answered in "
                  + answers.map { "\($0.components.attoseconds / 1_000_000_000_000) µs" }.joined(separator: ", "))
            for name in ["hog", "calm"] {
                #expect(try Self.machine(["stop", name]).status == .exited(0))
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
            }
            #expect(access("/sys/fs/cgroup/pids/\(group)", F_OK) != 0, "the hog's cgroup is left")
        }
    }

    @Test func aSetForksAndBootsItsMachinesAtOnceAndIsReadyWhenAllAre() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 2 << 30) { image in
            try withTemporaryDirectory { sets in
                let store = ["--store", image.mountPoint]
                #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
                let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq2LCe9Uq0H6yQ2Zc4w1cNQx9S4wW0x3S7yE3bYy3oI lab@replica"
                try OwnedFD.open("\(sets)/lab.pub", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("\(key)\n".utf8))
                try OwnedFD.open("\(sets)/lab.conf", O_WRONLY | O_CREAT, mode: 0o644)
                    .writeAll(Array("[Set]\nMachine=a:debian12 b:debian12\nMachine=c:debian12\nSSHKey=\(sets)/lab.pub\n".utf8))
                defer { _ = try? Self.machine(["set", "stop", "lab", "--sets", sets] + store) }
                // One member forked ahead of time (its template from the set); a name the set lacks is refused.
                let ahead = try Self.machine(["fork", "c", "--set", "lab", "--sets", sets] + store)
                #expect(ahead.status == .exited(0), "\(ahead.output)")
                let stranger = try Self.machine(["fork", "x", "--set", "lab", "--sets", sets] + store)
                #expect(stranger.status == .exited(2) && stranger.output.contains("set lab has no machine x"), "\(stranger.output)")
                let started = try Self.machine(["set", "start", "lab", "--sets", sets] + store)
                #expect(started.status == .exited(0) && started.output.contains("3 machines ready"), "\(started.output)")
                for name in ["a", "b", "c"] {
                    #expect(MachineProcess.running(name) != nil)
                    #expect(try Self.inside(name, ["hostname"]) == "\(name)\n")
                    #expect(try Self.inside(name, ["cat", "/root/.ssh/authorized_keys"]).contains(key), "\(name)")
                }
                let again = try Self.machine(["set", "start", "lab", "--sets", sets] + store)
                #expect(again.status == .exited(0) && again.output.contains("3 were running"), "\(again.output)")
                #expect(try Self.machine(["set", "stop", "lab", "--sets", sets] + store).status == .exited(0))
                #expect(["a", "b", "c"].allSatisfy { MachineProcess.running($0) == nil })
                for name in ["a", "b", "c"] { #expect(try Self.machine(["remove", name] + store).status == .exited(0)) }

                try OwnedFD.open("\(sets)/broken.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("[Set]\nMachine=web1\n".utf8))
                let broken = try Self.machine(["set", "start", "broken", "--sets", sets] + store)
                #expect(broken.status == .exited(2) && broken.output.contains("broken.conf:2: Machine=: \"web1\": write NAME:TEMPLATE"),
                        "\(broken.output)")
                let missing = try Self.machine(["set", "start", "nosuch", "--sets", sets] + store)
                #expect(missing.status == .exited(6))
                for (file, text, says) in [("half", "Bridge=rmh0\n", "Bridge= and Subnet= go together"),
                                           ("both", "Bridge=rmh0\nSubnet=10.0.0.0/24\nNetwork=lab\n", "not both")] {
                    try OwnedFD.open("\(sets)/\(file).conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("[Set]\nMachine=h:debian12\n\(text)".utf8))
                    let refused = try Self.machine(["set", "start", file, "--sets", sets] + store)
                    #expect(refused.status == .exited(2) && refused.output.contains(says), "\(refused.output)")
                }

                // Bridge= and Subnet=: each member forked onto the bridge with an address of its own.
                let bridge = "rms\(getpid() % 100_000)"
                let subnet = "10.248.\(getpid() % 250)"
                defer { _ = try? Command.run(["ip", "link", "del", bridge]) }
                try OwnedFD.open("\(sets)/net.conf", O_WRONLY | O_CREAT, mode: 0o644)
                    .writeAll(Array("[Set]\nMachine=n1:debian12 n2:debian12\nBridge=\(bridge)\nSubnet=\(subnet).0/24\nForward=tcp:18080:n2:80\nZone=test\n".utf8))
                let networked = try Self.machine(["set", "start", "net", "--sets", sets] + store)
                #expect(networked.status == .exited(0), "\(networked.output)")
                var addresses: [String] = []
                for name in ["n1", "n2"] {
                    let shown = try Self.inside(name, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
                    addresses.append(String(shown.split(separator: " ")[3]))
                    let config = String(decoding: try OwnedFD.open("\(image.mountPoint)/machines/\(name)/var/lib/cloud/seed/nocloud/network-config",
                                                                   O_RDONLY).readAll(), as: UTF8.self)
                    #expect(config.contains("addresses: [\(addresses.last!), fd") && config.contains("addresses: [\(subnet).1]")
                            && config.contains("search: [net.test]") && config.contains("gateway6: \(UniqueLocal.gateway(UniqueLocal.prefix(bridge: bridge)).addressText)"),
                            "\(config)")
                }
                #expect(Set(addresses).count == 2 && addresses.allSatisfy { $0.hasPrefix(subnet + ".") }, "\(addresses)")
                // The guest's root, root only in its own user namespace, may still bind port 80 in its network.
                let leader = try #require(try Self.leader("n1"))
                let bound = try Command.run(["nsenter", "--target", "\(leader)", "--all", "--", "timeout", "0.5",
                                             "socat", "-u", "TCP4-LISTEN:80,reuseaddr", "OPEN:/dev/null"])
                #expect(bound.status == .exited(124), "it listened until timeout stopped it: \(bound.output)")
                #expect(try Self.inside("n1", ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]) == "0\n")
                // Names: each machine's by name from the other's network, and the reverse; the forward in the table.
                let n2 = String(addresses[1].split(separator: "/")[0])
                let named = try NetworkProbe.lookup("m-n1", "\(subnet).1", "n2.net.test")
                #expect(named == n2, "\(named)")
                let reverse = n2.split(separator: ".").reversed().joined(separator: ".") + ".in-addr.arpa"
                #expect(try NetworkProbe.lookup("m-n1", "\(subnet).1", reverse, reverse: true) == "n2.net.test")
                #expect(try Command.check(["nft", "list", "table", "inet", "replica"]).contains("dnat ip to \(n2):80"))
                try NetworkProbe.serve("m-n2", "tcp", port: 80, word: "n2")
                #expect(try NetworkProbe.ask("m-n1", "tcp", "\(subnet).1", 18080).hasPrefix("n2 "), "the forward, from a machine to the host's address")
                // IPv6: the bridge's unique local /64, each address ending in what the machine's own id gives; AAAA names; the forward too.
                let prefix = UniqueLocal.prefix(bridge: bridge), gateway6 = UniqueLocal.gateway(prefix).addressText
                var addresses6: [String: String] = [:]
                for name in ["n1", "n2"] {
                    let id = try Self.inside(name, ["cat", "/etc/machine-id"]).split(separator: "\n").first.map(String.init) ?? ""
                    let recorded = try Self.machine(["list", "--json"] + store).output
                    #expect(id.utf8.count == 32 && recorded.contains(id), "the id chosen at fork is the guest's: \(id)")
                    let expected = UniqueLocal.address(prefix, interface: UniqueLocal.interfaceID(id))
                    #expect(try Self.inside(name, ["ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"]).contains(expected.description))
                    addresses6[name] = expected.addressText
                }
                #expect(try NetworkProbe.lookup("m-n1", gateway6, "n2.net.test", ipv6: true) == addresses6["n2"], "AAAA, asked over IPv6")
                // A service whose network comes up on the set's bridge is a name too, and goes with its network.
                let net = try builtTool("replica-net")
                let service = try Command.run([net, "up", "websvc", "--bridge", bridge, "--subnet", "\(subnet).0/24"])
                defer { _ = try? Command.run([net, "down", "websvc"]) }
                #expect(service.status == .exited(0), "\(service.output)")
                let serviceName = try NetworkProbe.lookup("m-n1", "\(subnet).1", "websvc.net.test") { $0.hasPrefix("\(subnet).") }
                #expect(serviceName.hasPrefix("\(subnet)."), "\(serviceName)")
                #expect(try Command.run([net, "down", "websvc"]).status == .exited(0))
                let unnamed = try NetworkProbe.lookup("m-n1", "\(subnet).1", "websvc.net.test") { $0 == "NXDOMAIN" }
                #expect(unnamed == "NXDOMAIN", "\(unnamed)")
                try NetworkProbe.serve("m-n2", "tcp", port: 80, word: "n2v6", ipv6: true)
                #expect(try NetworkProbe.ask("m-n1", "tcp", addresses6["n2"]!, 80) == "n2v6 \(addresses6["n1"]!)")
                #expect(try NetworkProbe.ask("m-n1", "tcp", gateway6, 18080).hasPrefix("n2v6 "), "the forward over IPv6")
                NetworkProbe.stopAll(in: "m-n2")  // the test's servers, which would keep the namespace alive
                #expect(try Self.machine(["set", "stop", "net", "--sets", sets] + store).status == .exited(0))
                #expect(try Self.machine(["set", "start", "net", "--sets", sets] + store).status == .exited(0))
                for name in ["n1", "n2"] {
                    #expect(try Self.inside(name, ["ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"]).contains(addresses6[name]!),
                            "the same address after a stop and a start")
                }
                #expect(try Self.machine(["set", "stop", "net", "--sets", sets] + store).status == .exited(0))
                #expect(try Command.run(["nft", "list", "table", "inet", "replica"]).status != .exited(0), "the table went with the set")
                #expect(try Command.run(["ip", "link", "show", bridge]).status != .exited(0), "and the bridge its start made")
                #expect(try Command.run(["pgrep", "-f", "addn-hosts=/run/replica-names/\(bridge).hosts"]).status == .exited(1), "its dnsmasq too")
                #expect(!NetworkNamespaceNames.current().contains("m-n1") && !NetworkNamespaceNames.current().contains("m-n2"))
                #expect(try Self.lease(of: "replica-machine-n1.service") != nil, "a stopped member keeps its address")
                for name in ["n1", "n2"] {
                    #expect(try Self.machine(["remove", name] + store).status == .exited(0))
                    #expect(try Self.lease(of: "replica-machine-\(name).service") == nil)
                }
            }
        }
    }

    /// The external LAN: a veth stands in for the host's NIC (this kernel has no dummy driver; a
    /// macvlan cannot tell the two apart), and a DHCP server
    /// (dnsmasq) runs in a namespace of the test's own on a macvlan of it. A machine forked with
    /// `--macvlan` gets its address from that server by its own DHCP client (systemd-networkd in
    /// the guest, on the macvlan systemd-nspawn made in a namespace the guest's user namespace
    /// owns); one with `--address` has it set by Replica; a parent that does not exist is refused
    /// before anything is made; nothing of either is left on the host after.
    @Test func machinesOnTheLANTakeTheirAddressFromItsDHCPServerOrAStaticOne() throws {
        let rootfs = try Self.rootfs()
        let tag = getpid() % 10_000
        let (parent, server) = ("rdm\(tag)", "dhcp\(tag)")
        try withBtrfsImage(size: 2 << 30) { image in
            try withTemporaryDirectory { folder in
                let store = ["--store", image.mountPoint]
                defer {
                    NetworkProbe.stopAll(in: server)  // the test's server
                    _ = try? Command.run(["sh", "-c", "kill $(cat \(folder)/dnsmasq.pid) 2>/dev/null; ip netns del \(server); ip link del \(parent)"])
                }
                let linksBefore = try Command.check(["ip", "-o", "link"]).split(separator: "\n").map { $0.split(separator: ":")[1] }
                _ = try Command.check(["sh", "-c", """
                    set -e
                    ip link add \(parent) type veth peer name \(parent)p; ip link set \(parent)p up; ip link set \(parent) up
                    ip netns add \(server); ip link add lan0 link \(parent) type macvlan mode bridge; ip link set lan0 netns \(server)
                    ip -n \(server) addr add 192.168.77.1/24 dev lan0; ip -n \(server) link set lan0 up; ip -n \(server) link set lo up
                    ip netns exec \(server) dnsmasq --conf-file=/dev/null --port=0 --interface=lan0 --bind-interfaces \
                      --dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,1h --dhcp-leasefile=\(folder)/leases \
                      --pid-file=\(folder)/dnsmasq.pid --log-facility=\(folder)/dnsmasq.log
                    """])
                // systemd-nspawn takes only an interface udev has initialized; where no udev runs
                // (this machine, CI), its database entry is what udev would have written.
                if access("/run/udev/control", F_OK) != 0 {
                    let index = try Command.check(["cat", "/sys/class/net/\(parent)/ifindex"]).split(separator: "\n")[0]
                    try createDirectories("/run/udev/data", mode: 0o755)
                    try OwnedFD.open("/run/udev/data/n\(index)", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array("I:1\n".utf8))
                }
                defer { _ = try? Command.run(["sh", "-c", "[ -e /run/udev/control ] || rm -rf /run/udev"]) }
                #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))

                let missing = try Self.machine(["fork", "nolan", "--template", "debian12", "--macvlan", "nosuch\(tag)"] + store)
                #expect(missing.status == .exited(2) && missing.output.contains("nosuch\(tag)") && missing.output.contains("no interface of that name"),
                        "\(missing.output)")
                #expect(access("\(image.mountPoint)/machines/nolan", F_OK) != 0, "nothing was made")

                let forked = try Self.machine(["fork", "lan1", "--template", "debian12", "--macvlan", parent] + store)
                #expect(forked.status == .exited(0), "\(forked.output)")
                let fixed = try Self.machine(["fork", "lan2", "--template", "debian12", "--macvlan", parent, "--address", "192.168.77.9/24"] + store)
                #expect(fixed.status == .exited(0), "\(fixed.output)")
                defer { for name in ["lan1", "lan2"] { _ = try? Self.machine(["stop", name] + store); _ = try? Self.machine(["remove", name] + store) } }
                for name in ["lan1", "lan2"] {
                    let started = try Self.machine(["start", name, "--wait", "60"] + store)
                    #expect(started.status == .exited(0), "\(started.output)")
                }
                // lan1's own DHCP client asks the server; its address comes from the range, and the server knows it by name.
                var dynamic = ""
                for _ in 0..<100 where dynamic.isEmpty {
                    let shown = try Self.inside("lan1", ["ip", "-o", "-4", "addr", "show", "dev", "mv-\(parent)"])
                    dynamic = shown.split(separator: " ").dropFirst(3).first.map(String.init) ?? ""
                    if dynamic.isEmpty { usleep(150_000) }
                }
                #expect(dynamic.hasPrefix("192.168.77.5") || dynamic.hasPrefix("192.168.77.60"), "\(dynamic)")
                let leases = String(decoding: try OwnedFD.open("\(folder)/leases", O_RDONLY).readAll(), as: UTF8.self)
                #expect(leases.contains(" \(dynamic.split(separator: "/")[0]) lan1 "), "the server's lease: \(leases)")
                // lan2's address is Replica's to set, in its own namespace; it reaches the server on the LAN.
                #expect(try Self.inside("lan2", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).contains("192.168.77.9/24"))
                try NetworkProbe.serve(server, "tcp", port: 7000, word: "lan")
                #expect(try NetworkProbe.ask("m-lan2", "tcp", "192.168.77.1", 7000) == "lan 192.168.77.9")

                for name in ["lan1", "lan2"] { #expect(try Self.machine(["stop", name] + store).status == .exited(0)) }
                let linksAfter = try Command.check(["ip", "-o", "link"]).split(separator: "\n").map { $0.split(separator: ":")[1] }
                #expect(Set(linksAfter).subtracting(Set(linksBefore)) == [" \(parent)p@\(parent)", " \(parent)@\(parent)p"],
                        "no macvlan or veth of ours is left: \(linksAfter)")
                #expect(!NetworkNamespaceNames.current().contains("m-lan2"))
            }
        }
    }

    /// Two machines on a bridge, each in a namespace of its own with a leased address, reach each
    /// other over TCP; their MACs differ; stopping them removes their links, namespaces and leases.
    @Test func machinesOnABridgeReachEachOtherOverTCP() throws {
        let rootfs = try Self.rootfs()
        let tag = getpid() % 250
        let (bridge, subnet) = ("rmb\(getpid() % 100_000)", "10.252.\(tag).0/24")
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            defer {
                for name in ["n1", "n2"] { _ = try? Self.machine(["stop", name]) }
                _ = try? Command.run(["ip", "link", "del", bridge])
            }
            var addresses: [String] = [], macs: [String] = []
            for name in ["n1", "n2"] {
                #expect(try Self.machine(["fork", name, "--template", "debian12"] + store).status == .exited(0))
                let started = try Self.machine(["start", name, "--bridge", bridge, "--subnet", subnet] + store)
                #expect(started.status == .exited(0), "\(started.output)")
                let shown = try Self.inside(name, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
                addresses.append(String(shown.split(separator: " ")[3].split(separator: "/")[0]))
                let link = try Self.inside(name, ["ip", "-o", "link", "show", "dev", "eth0"]).split(separator: " ")
                macs.append(link.firstIndex(of: "link/ether").map { String(link[$0 + 1]) } ?? "")
            }
            #expect(Set(addresses).count == 2 && Set(macs).count == 2, "\(addresses) \(macs)")
            let leader = try #require(try Self.leader("n2"))
            let listener = try Command.spawn(["nsenter", "--target", "\(leader)", "--all", "--", "socat", "-u", "TCP-LISTEN:7000,reuseaddr",
                                              "OPEN:/tmp/received,creat"])
            usleep(300_000)
            _ = try Self.inside("n1", ["bash", "-c", "echo over-the-bridge > /dev/tcp/\(addresses[1])/7000"])
            _ = try ExitStatus.wait(for: listener)
            #expect(try Self.inside("n2", ["cat", "/tmp/received"]) == "over-the-bridge\n")
            for name in ["n1", "n2"] {
                #expect(try Self.machine(["stop", name]).status == .exited(0))
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
                #expect(try Self.lease(of: "replica-machine-\(name).service") == nil)
            }
            #expect(NetworkNamespaceNames.current().filter { $0.hasPrefix("m-n") }.isEmpty)
            let links = try Command.check(["ip", "-o", "link", "show"])
            #expect(!links.contains("rv-m-n1") && !links.contains("rv-m-n2"), "\(links)")
        }
    }

    /// Ten machines forked from one template and started together on a bridge: ten distinct
    /// machine-ids, hostnames, MACs and instance-ids; each reaches the next over TCP; the template
    /// unchanged; after they are removed, none of their links, namespaces, leases or subvolumes left.
    @Test func tenForksStartedTogetherAreTenMachines() throws {
        let rootfs = try Self.rootfs()
        let tag = getpid() % 250
        let (bridge, subnet) = ("rmt\(getpid() % 100_000)", "10.254.\(tag).0/24")
        let names = (0..<10).map { "t\($0)" }
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            try Self.importTemplateWithSSHD(rootfs, store: image.mountPoint)
            let template = "\(image.mountPoint)/templates/debian12"
            _ = try Command.check(["btrfs", "filesystem", "sync", image.mountPoint])  // the import's last transaction on disk
            // The template as a fork could change it: its content generation and every file's bytes.
            let fingerprint = { () throws -> String in
                "\(try Btrfs.info(try OwnedFD.open(template, O_RDONLY | O_DIRECTORY), path: template).changedGeneration) "
                    + (try Command.check(["sh", "-c", "cd \(template) && find . -xdev -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"]))
            }
            let before = try fingerprint()
            defer {
                for name in names { _ = try? Self.machine(["stop", name]) }
                _ = try? Command.run(["ip", "link", "del", bridge])
            }
            for name in names { #expect(try Self.machine(["fork", name, "--template", "debian12"] + store).status == .exited(0)) }
            // Started together: each start returns at its READY, the next one already booting.
            let starts = try names.map { name in
                let log = try OwnedFD.open("\(image.mountPoint)/start-\(name).log", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
                return try Command.spawn([try builtTool("replica-machine"), "start", name, "--bridge", bridge, "--subnet", subnet] + store,
                                         output: log.rawValue)
            }
            for (name, pid) in zip(names, starts) {
                let status = try ExitStatus.wait(for: pid)
                let said = { String(decoding: (try? OwnedFD.open("\(image.mountPoint)/start-\(name).log", O_RDONLY).readAll()) ?? [], as: UTF8.self) }
                #expect(status == .exited(0), "\(name): \(status): \(said())")
            }
            var ids: Set<String> = [], hosts: Set<String> = [], macs: Set<String> = [], instances: Set<String> = [], addresses: [String] = []
            var hostKeys: Set<String> = []
            for name in names {
                let key = try Self.inside(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
                hostKeys.insert(String(key.split(separator: " ").dropFirst().first ?? ""))
                ids.insert(try Self.inside(name, ["cat", "/etc/machine-id"]))
                hosts.insert(try Self.inside(name, ["hostname"]))
                let link = try Self.inside(name, ["ip", "-o", "link", "show", "dev", "eth0"]).split(separator: " ")
                macs.insert(link.firstIndex(of: "link/ether").map { String(link[$0 + 1]) } ?? "")
                instances.insert(try Self.inside(name, ["head", "-1", "/var/lib/cloud/seed/nocloud/meta-data"]))
                let shown = try Self.inside(name, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
                addresses.append(String(shown.split(separator: " ")[3].split(separator: "/")[0]))
            }
            #expect(ids.count == 10 && hosts.count == 10 && macs.count == 10 && instances.count == 10 && Set(addresses).count == 10)
            #expect(hostKeys.count == 10 && !hostKeys.contains(""), "\(hostKeys)")
            // A ring: each machine sends to the next over the bridge.
            for (index, name) in names.enumerated() {
                let next = names[(index + 1) % names.count]
                let leader = try #require(try Self.leader(next))
                let listener = try Command.spawn(["nsenter", "--target", "\(leader)", "--all", "--", "socat", "-u", "TCP-LISTEN:7100,reuseaddr",
                                                  "OPEN:/tmp/from-ring,creat"])
                var sent = false
                for _ in 0..<50 where !sent {
                    sent = (try? Self.inside(name, ["bash", "-c", "echo from-\(name) > /dev/tcp/\(addresses[(index + 1) % names.count])/7100"])) != nil
                    if !sent { usleep(50_000) }
                }
                _ = try ExitStatus.wait(for: listener)
                #expect(try Self.inside(next, ["cat", "/tmp/from-ring"]) == "from-\(name)\n")
            }
            for name in names {
                #expect(try Self.machine(["stop", name]).status == .exited(0))
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
            }
            let after = try fingerprint()
            #expect(after == before, "the template changed")
            #expect(NetworkNamespaceNames.current().filter { $0.hasPrefix("m-t") }.isEmpty)
            let links = try Command.check(["ip", "-o", "link", "show"])
            #expect(names.allSatisfy { !links.contains("rv-m-\($0):") }, "\(links)")
            #expect(try Command.run(["sh", "-c", "grep -rl replica-machine-t /var/lib/replica/net/leases 2>/dev/null"]).output.isEmpty)
            #expect(try Self.machineEntries("\(image.mountPoint)/machines").isEmpty)
        }
    }

    /// The lease of `owner` in the leases folder, or nil.
    static func lease(of owner: String) throws -> String? {
        let found = try Command.run(["sh", "-c", "grep -rlx '\(owner)' /var/lib/replica/net/leases 2>/dev/null"]).output
        return found.split(separator: "\n").first.map { String($0.split(separator: "/").last ?? "") }
    }

    /// Removing a machine or a template commits, as `btrfs subvolume delete --commit-after` does:
    /// btrfs's cleaner frees the root now, not after the next periodic commit, when its work would
    /// land on whatever runs then (a claim from a pool waited 20-40 ms behind it). The store commits
    /// every 300 s here, so within the test only a commit of ours can set the cleaner going. A fork
    /// starts a commit of its new name without waiting for it, so each control first waits for any
    /// commit under way (`btrfs filesystem sync`); else its delete may join that commit.
    @Test func removingAMachineOrATemplateSetsTheCleanerOnItsRootNow() throws {
        try withBtrfsImage(size: 512 << 20) { image in
            let store = ["--store", image.mountPoint]
            try Command.check(["mount", "-o", "remount,commit=300", image.mountPoint])
            try withTemporaryDirectory { (root: String) throws in
                for folder in ["usr", "etc"] { mkdir("\(root)/\(folder)", 0o755) }
                for name in ["tiny", "other"] { #expect(try Self.machine(["template", "import", name, root] + store).status == .exited(0)) }
            }
            for name in ["a", "b"] { #expect(try Self.machine(["fork", name, "--template", "tiny"] + store).status == .exited(0)) }
            func deletedNotCleaned() throws -> Int {
                try Command.check(["btrfs", "subvolume", "list", "-d", image.mountPoint]).split(separator: "\n").count
            }
            func cleanedWithin(seconds: Int) throws -> Bool {
                let deadline = ContinuousClock.now + .seconds(seconds)
                while try deletedNotCleaned() > 0 && ContinuousClock.now < deadline { usleep(50_000) }
                return try deletedNotCleaned() == 0
            }
            // The control: a root deleted without a commit waits for the cleaner.
            try Command.check(["btrfs", "filesystem", "sync", image.mountPoint])
            try Command.check(["btrfs", "-q", "subvolume", "delete", "\(image.mountPoint)/machines/b"])
            usleep(2_000_000)
            #expect(try deletedNotCleaned() == 1)
            #expect(try Self.machine(["remove", "a"] + store).status == .exited(0))
            #expect(try cleanedWithin(seconds: 5), "a machine's root")

            try Command.check(["btrfs", "filesystem", "sync", image.mountPoint])
            try Command.check(["btrfs", "-q", "subvolume", "delete", "\(image.mountPoint)/templates/other"])
            usleep(2_000_000)
            #expect(try deletedNotCleaned() == 1)
            #expect(try Self.machine(["template", "remove", "tiny"] + store).status == .exited(0))
            #expect(try cleanedWithin(seconds: 5), "a template's")
        }
    }

    /// The network given at fork: made beside the snapshot, its lease in the seed, the same
    /// address inside; gone at stop but for the lease, made again at start with the same address;
    /// all gone at remove. The machine's root is snapshotted by replica-snap as the state of
    /// replica-machine@NAME; a 64-letter name gets an interface name within 15 bytes.
    @Test func aForkKeepsItsLeasedAddressFromSeedToRemove() throws {
        let rootfs = try Self.rootfs()
        let (bridge, subnet) = ("rml\(getpid() % 100_000)", "10.251.\(getpid() % 250).0/24")
        let long = String(repeating: "l", count: 64)
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer {
                for name in ["w1", long] { _ = try? Self.machine(["stop", name]); _ = try? Self.machine(["remove", name] + store) }
                _ = try? Command.run(["ip", "link", "del", bridge])
            }
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq2LCe9Uq0H6yQ2Zc4w1cNQx9S4wW0x3S7yE3bYy3oI admin@replica"
            let keyFile = "\(image.mountPoint)/admin.pub"
            try OwnedFD.open(keyFile, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array("\(key)\n".utf8))
            let forked = try Self.machine(["fork", "w1", "--template", "debian12", "--bridge", bridge, "--subnet", subnet, "--ssh-key", keyFile,
                                           "--json"] + store)
            #expect(forked.status == .exited(0), "\(forked.output)")
            let address = try #require(try JSON.parse(forked.output)["address"]?.string)
            let config = try String(decoding: OwnedFD.open("\(image.mountPoint)/machines/w1/var/lib/cloud/seed/nocloud/network-config", O_RDONLY)
                .readAll(limit: 4096), as: UTF8.self)
            #expect(config.contains("addresses: [\(address)]") && config.contains("gateway4: 10.251."), "\(config)")
            #expect(NetworkNamespaceNames.current().contains("m-w1"))
            #expect(try Self.lease(of: "replica-machine-w1.service") == String(address.split(separator: "/")[0]))
            for round in 0..<2 {
                let started = try Self.machine(["start", "w1"] + store)
                #expect(started.status == .exited(0), "\(started.output)")
                let inside = try Self.inside("w1", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
                #expect(inside.contains(" \(address) "), "round \(round): \(inside)")
                // The key reaches root's authorized_keys through the credential every start passes.
                #expect(try Self.inside("w1", ["cat", "/root/.ssh/authorized_keys"]).contains(key), "round \(round)")
                if round == 0 {
                    let leader = try #require(try Self.leader("w1"))
                    let write = try Command.run(["nsenter", "--target", "\(leader)", "--all", "--",
                                                 "touch", "/var/lib/cloud/seed/nocloud/meta-data"])
                    #expect(write.status != .exited(0) && write.output.contains("Read-only file system"), "\(write.output)")
                    let snap = try Command.run([try builtTool("replica-snap"), "create", "replica-machine@w1", "--metrics-file", ""] + store)
                    #expect(snap.status == .exited(0), "\(snap.output)")
                    let taken = try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/snapshots/replica-machine@w1", O_RDONLY | O_DIRECTORY))
                    #expect(taken.count == 1 && access("\(image.mountPoint)/snapshots/replica-machine@w1/\(taken[0])/etc/hostname", F_OK) == 0)
                }
                #expect(try Self.machine(["stop", "w1"]).status == .exited(0))
                #expect(!NetworkNamespaceNames.current().contains("m-w1"))
                #expect(!(try Command.check(["ip", "-o", "link", "show"])).contains("rv-m-w1:"))
                #expect(try Self.lease(of: "replica-machine-w1.service") == String(address.split(separator: "/")[0]), "the lease outlives a stop")
            }
            // A start may not give it another network; --address and a network together are refused.
            let other = try Self.machine(["start", "w1", "--bridge", bridge, "--subnet", "10.250.0.0/24"] + store)
            #expect(other.status == .exited(2) && other.output.contains("has a network already"), "\(other.output)")
            let both = try Self.machine(["fork", "w9", "--template", "debian12", "--bridge", bridge, "--subnet", subnet, "--address", "10.0.0.9/24"] + store)
            #expect(both.status == .exited(2), "\(both.output)")
            #expect(try Self.machine(["remove", "w1"] + store).status == .exited(0))
            #expect(try Self.lease(of: "replica-machine-w1.service") == nil)
            // The longest name: its veth is named within IFNAMSIZ, and it boots on the bridge.
            #expect(try Self.machine(["fork", long, "--template", "debian12", "--bridge", bridge, "--subnet", subnet] + store).status == .exited(0))
            let started = try Self.machine(["start", long] + store)
            #expect(started.status == .exited(0), "\(started.output)")
            #expect(try Self.inside(long, ["hostname"]) == "\(long)\n")
            let ports = try Command.check(["ip", "-o", "link", "show", "master", bridge])
            #expect(ports.contains("rv-m-lll."), "\(ports)")
            #expect(try Self.machine(["stop", long]).status == .exited(0))
            #expect(try Self.machine(["remove", long] + store).status == .exited(0))
            #expect(try Command.check(["ip", "-o", "link", "show", "master", bridge]).isEmpty)
        }
    }

    /// A pool with no free address refuses the fork before anything stays; a fork killed with
    /// SIGKILL at any moment leaves what `remove NAME` (or the next fork of the name) clears whole.
    @Test func aFullPoolAndAKilledForkLeaveNothing() throws {
        let rootfs = try Self.rootfs()
        let bridge = "rmk\(getpid() % 100_000)"
        let tag = getpid() % 250
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            let machines = "\(image.mountPoint)/machines"
            defer {
                for name in ["a", "b", "k"] { _ = try? Self.machine(["remove", name] + store) }
                _ = try? Command.run(["ip", "link", "del", bridge])
            }
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            // A /30 has one address besides the bridge's.
            let pool = ["--bridge", bridge, "--subnet", "10.250.\(tag).0/30"]
            #expect(try Self.machine(["fork", "a", "--template", "debian12"] + pool + store).status == .exited(0))
            let full = try Self.machine(["fork", "b", "--template", "debian12"] + pool + store)
            #expect(full.status != .exited(0) && full.output.contains("every address of 10.250.\(tag).0/30 is leased"), "\(full.output)")
            #expect(try Self.machineEntries(machines) == ["a"])
            #expect(!NetworkNamespaceNames.current().contains("m-b"))
            #expect(try Self.lease(of: "replica-machine-b.service") == nil)
            #expect(try Self.machine(["remove", "a"] + store).status == .exited(0))
            // Killed at random points of a fork with a network: remove clears what is left.
            let kill = ["--bridge", bridge, "--subnet", "10.249.\(tag).0/24"]
            var outcomes: [String] = []
            for round in 0..<12 {
                let pid = try Command.spawn([try builtTool("replica-machine"), "fork", "k", "--template", "debian12"] + kill + store)
                usleep(UInt32(round * 2_500))
                Glibc.kill(pid, SIGKILL)
                _ = try ExitStatus.wait(for: pid)
                outcomes.append(access("\(machines)/k", F_OK) == 0 ? "forked" : "killed")
                let removed = try Self.machine(["remove", "k"] + store)
                #expect([.exited(0), .exited(6)].contains(removed.status), "\(removed.output)")
                #expect(try DirectoryEntries.names(in: try OwnedFD.open(machines, O_RDONLY | O_DIRECTORY)).filter { $0.hasSuffix("k") }.isEmpty)
                #expect(try Self.machineEntries(machines).isEmpty, "round \(round): a temporary index file is left")
                let index = String(decoding: (try? OwnedFD.open("\(machines)/.users", O_RDONLY).readAll()) ?? [], as: UTF8.self)
                #expect(!index.contains(" k\n"), "round \(round): its user range is still held")
                #expect(!NetworkNamespaceNames.current().contains("m-k"), "round \(round)")
                #expect(try Self.lease(of: "replica-machine-k.service") == nil, "round \(round)")
                #expect(try Command.check(["ip", "-o", "link", "show", "master", bridge]).isEmpty, "round \(round)")
            }
            #expect(outcomes.contains("killed"), "\(outcomes)")
            // Killed, then forked again without a remove: the new fork takes the leftovers' place.
            let pid = try Command.spawn([try builtTool("replica-machine"), "fork", "k", "--template", "debian12"] + kill + store)
            usleep(8_000)
            Glibc.kill(pid, SIGKILL)
            _ = try ExitStatus.wait(for: pid)
            if access("\(machines)/k", F_OK) == 0 { _ = try Self.machine(["remove", "k"] + store) }  // it got to the end
            #expect(try Self.machine(["fork", "k", "--template", "debian12"] + kill + store).status == .exited(0))
            #expect(try Self.machine(["remove", "k"] + store).status == .exited(0))
        }
    }

    @Test func badInputIsRefusedOrRolledBackLeavingNothing() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 2 << 30) { image in
            try withTemporaryDirectory { dir in
                let store = ["--store", image.mountPoint]
                let machines = "\(image.mountPoint)/machines"
                #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
                // A subvolume in templates/ that import did not make (writable, no origin) is not a template.
                _ = try Command.check(["btrfs", "-q", "subvolume", "create", "\(image.mountPoint)/templates/hand"])
                let notOurs = try Self.machine(["fork", "x", "--template", "hand"] + store)
                #expect(notOurs.status == .exited(1) && notOurs.output.contains("is not a template of ours"), "\(notOurs.output)")
                // A seed file that is a symlink is refused, not followed; nothing is left.
                _ = try Command.check(["mkdir", "-p", "\(dir)/seed"])
                _ = try Command.check(["ln", "-s", "/etc/shadow", "\(dir)/seed/meta-data"])
                let linked = try Self.machine(["fork", "x", "--template", "debian12", "--seed", "\(dir)/seed"] + store)
                #expect(linked.status == .exited(1) && linked.output.contains("meta-data"), "\(linked.output)")
                #expect(try Self.machineEntries(machines).isEmpty)
                // A fork killed before its rename leaves .forking-NAME: the next fork of that name takes its place.
                _ = try Command.check(["btrfs", "-q", "subvolume", "create", "\(machines)/.forking-y"])
                #expect(try Self.machine(["fork", "y", "--template", "debian12"] + store).status == .exited(0))
                #expect(try Self.machineEntries(machines) == ["y"])
                #expect(try Self.machine(["fork", "y", "--template", "debian12"] + store).output.contains("a machine of that name exists"))
                // A user range or a limit that cannot be: a usage error naming it, before anything is made or recorded.
                let before = try Self.machine(["list", "--json"] + store).output
                for (arguments, named) in [(["fork", "z", "--template", "debian12", "--private-users", "12345"], "private users"),
                                           (["fork", "z", "--template", "debian12", "--memory-max", "1M"], "MemoryMax"),
                                           (["start", "y", "--tasks-max", "0"], "TasksMax"),
                                           (["start", "y", "--cpu-quota", "50"], "CPUQuota")] {
                    let refused = try Self.machine(arguments + store)
                    #expect(refused.status == .exited(2) && refused.output.contains(named), "\(arguments): \(refused.output)")
                }
                #expect(try Self.machineEntries(machines) == ["y"])
                #expect(try Self.machine(["list", "--json"] + store).output == before, "a refused start recorded something")
                // A guest that never says READY: stopped after --wait, nothing running.
                try OwnedFD.open("\(dir)/init", O_WRONLY | O_CREAT, mode: 0o755).writeAll(Array("#!/bin/sh\nexec sleep 600\n".utf8))
                _ = try Command.check(["cp", "--remove-destination", "\(dir)/init", "\(machines)/y/usr/lib/systemd/systemd"])
                let began = ContinuousClock.now
                let silent = try Self.machine(["start", "y", "--wait", "2"] + store)
                #expect(silent.status == .exited(1) && silent.output.contains("not ready after"), "\(silent.output)")
                #expect(ContinuousClock.now - began < .seconds(20))
                #expect(MachineProcess.running("y") == nil)
                // Nothing of the guest outlives it (its init would keep the store mounted in its namespace).
                #expect(try Command.run(["pgrep", "-f", "^sleep 600$"]).status != .exited(0), "the guest's init survived")
                // Ended by systemd-nspawn itself (a second SIGTERM), which removes what it made for it:
                // killed, it left this folder behind.
                #expect(access("/run/systemd/nspawn/propagate/y", F_OK) != 0, "systemd-nspawn's folder for the machine outlived it")
                #expect(try Self.machine(["remove", "y"] + store).status == .exited(0))
            }
        }
    }

    /// systemd-nspawn's seccomp filters, loaded ahead by the thread that starts it (`NspawnSeccomp`):
    /// the guest's init runs under exactly the filters systemd-nspawn loads when it compiles them
    /// itself (the control: the same command started without them, its systemd-nspawn's environment
    /// without SYSTEMD_SECCOMP=0), and a call they refuse is refused to a service the guest's own
    /// systemd starts (keyctl: EPERM; on the host, and from a process entered from it, EINVAL). The
    /// variable reaches neither guest, whose systemd still filters its services (journald has
    /// filters of its own over the init's).
    @Test func aGuestRunsUnderSystemdNspawnsOwnFiltersLoadedAhead() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer { for name in ["ahead", "own"] { try? MachineProcess.stop(name); _ = try? Self.machine(["remove", name] + store) } }
            #expect(try Self.machine(["template", "import", "--minimal", "t", rootfs] + store).status == .exited(0))
            for name in ["ahead", "own"] { #expect(try Self.machine(["fork", name, "--template", "t"] + store).status == .exited(0)) }
            let started = try Self.machine(["start", "ahead", "--wait", "60"] + store)
            #expect(started.status == .exited(0), "\(started.output)")
            let machine = try Machines.prepareStart("own", in: try Store(path: image.mountPoint))
            let placement = MachinePlacement.current(for: "own", foreground: false)
            _ = try MachineProcess.begin("own", command: Machines.spawnCommand(machine, placement: placement),
                                         in: try placement.prepare("own", limits: machine.limits)).waitReady(timeout: .seconds(60))

            let environment = { (pid: Int32) throws -> [String] in
                try OwnedFD.open("/proc/\(pid)/environ", O_RDONLY).readAll().split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            }
            let nspawn = try ["ahead", "own"].map { (name: String) throws -> Int32 in try #require(MachineProcess.running(name)) }
            #expect(try environment(nspawn[0]).contains("SYSTEMD_SECCOMP=0") && !(try environment(nspawn[1]).contains { $0.hasPrefix("SYSTEMD_SECCOMP") }),
                    "the filters were loaded ahead for one, compiled by systemd-nspawn for the other")
            let inits = try ["ahead", "own"].map { (name: String) throws -> Int32 in try #require(try Self.leader(name)) }
            let (ahead, own) = (try NspawnSeccomp.filters(of: inits[0]), try NspawnSeccomp.filters(of: inits[1]))
            #expect(!own.isEmpty && ahead == own, "\(ahead.map(\.bpf.count)) bytes of filters against systemd-nspawn's own \(own.map(\.bpf.count))")

            let keyctl = ["perl", "-e", "syscall(250, 0, 0, 0); print $! + 0"]  // keyctl(KEYCTL_GET_KEYRING_ID, 0, 0)
            #expect(try Command.check(keyctl) == "22", "the control: the host's keyctl says EINVAL")
            for name in ["ahead", "own"] {
                #expect(try Self.inside(name, ["systemd-run", "--wait", "--pipe", "--quiet"] + keyctl) == "1", "\(name): a service's keyctl")
                #expect(try Self.inside(name, keyctl) == "22", "\(name): a process entered from the host is under no filter")
                let guestInit = try Self.inside(name, ["cat", "/proc/1/environ"])
                #expect(!guestInit.contains("SYSTEMD_SECCOMP"), "\(name): \(guestInit)")
                let counts = try Self.inside(name, ["sh", "-c", "grep Seccomp_filters /proc/1/status /proc/$(systemctl show -P MainPID systemd-journald)/status"])
                let numbers = counts.split(separator: "\n").compactMap { Int($0.split(separator: "\t").last ?? "") }
                #expect(numbers.count == 2 && numbers[1] > numbers[0] && numbers[0] > 0, "\(name): \(counts)")
            }
        }
    }

    /// Where no systemd runs, systemd-nspawn (`--keep-unit`) makes `payload` and `supervisor`
    /// cgroups in the cgroup it starts in, and leaves them. Taking its filters starts it in a cgroup
    /// of Replica's own, removed after: the caller's cgroup gains nothing, nothing is left below
    /// `replica.slice`. The control: the same systemd-nspawn started by hand from the same cgroup
    /// leaves both. The test runs in a fresh cgroup of its own, so what appears in it was made here.
    @Test func takingSystemdNspawnsFiltersLeavesNoCgroup() throws {
        try #require(!Systemd.isBooted, "where systemd runs, systemd-nspawn asks it for a scope instead")
        let here = try ControlGroup.existing("test-\(getpid())")
        try here.make()
        defer { try? here.remove() }
        func madeHere() throws -> [String] {
            try here.hierarchies.flatMap { hierarchy in
                try Command.check(["find", "\(hierarchy.path)/\(here.path)", "-mindepth", "1", "-type", "d"]).split(separator: "\n").map(String.init)
            }
        }
        let capture = { () throws(ReplicaError) in try NspawnSeccomp.capture(["--private-network"]) }
        let programs = try here.whileEntered(capture)
        #expect(!programs.isEmpty, "its filters were taken")
        #expect(try madeHere().isEmpty)
        for hierarchy in here.hierarchies {
            #expect(access("\(hierarchy.path)/\(ControlGroup.slice)/replica-seccomp-\(getpid())", F_OK) != 0, "\(hierarchy.path)")
        }

        let byHand = { () throws(ReplicaError) in
            try Command.run(["systemd-nspawn", "--quiet", "--register=no", "--volatile=yes", "--directory=/", "--machine=replica-control-\(getpid())",
                             "--console=passive", "--keep-unit", "/usr/bin/true"])
        }
        let control = try here.whileEntered(byHand)
        #expect(control.status == .exited(0), "\(control.output)")
        let left = Set(try madeHere().map { String($0.split(separator: "/").last ?? "") })
        #expect(left == ["payload", "supervisor"], "the control: systemd-nspawn by hand leaves its cgroups where it started")
    }

    /// A caller under a seccomp filter of its own neither takes systemd-nspawn's filters (they would
    /// include its own) nor loads them: it leaves systemd-nspawn to compile them. The control: the
    /// same call in a child under no filter has them. And the options that decide them count: with
    /// CAP_SYS_PTRACE dropped, systemd-nspawn refuses ptrace too, and the filters differ.
    @Test func aCallerUnderAFilterOfItsOwnLeavesSystemdNspawnToCompileItsOwn() throws {
        let command = ["systemd-nspawn", "--boot", "--drop-capability=CAP_SYS_PTRACE", "--private-network"]
        let dropped = try #require(NspawnSeccomp.programs(for: command), "taken, or kept from an earlier start")
        let plain = try #require(NspawnSeccomp.programs(for: ["systemd-nspawn", "--boot", "--private-network"]))
        let differ = dropped != plain
        #expect(differ, "the filters without CAP_SYS_PTRACE are other filters")
        let unfiltered = try ChildProcess.run(timeout: .seconds(60)) { () throws(ReplicaError) -> Bool in
            NspawnSeccomp.programs(for: command) == dropped
        }
        #expect(unfiltered, "the control: a child under no filter has them")
        let filtered = try ChildProcess.run(timeout: .seconds(60)) { () throws(ReplicaError) -> Bool in
            try SeccompProgram(default: .allow, rules: []).load()
            return NspawnSeccomp.programs(for: command) == nil
        }
        #expect(filtered, "a child under a filter of its own has none")
    }

    /// A trimmed template (`import --minimal`): its guest's own systemd sees the units and
    /// generators masked and its journal in memory, boots with nothing failed, and is READY; the
    /// same root imported stock is the control (nothing masked, the journal on disk). A root whose
    /// `/etc/systemd/system` is a symlink out of it is refused, nothing written where it points.
    @Test func aTrimmedTemplateBootsWithWhatAContainerNeedsOnly() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 3 << 30) { image in
            try withTemporaryDirectory { dir in
                let store = ["--store", image.mountPoint]
                defer { for name in ["stock", "trim"] { _ = try? Self.machine(["stop", name] + store); _ = try? Self.machine(["remove", name] + store) } }
                #expect(try Self.machine(["template", "import", "stock", rootfs] + store).status == .exited(0))
                let imported = try Self.machine(["template", "import", "--minimal", "trim", rootfs] + store)
                #expect(imported.status == .exited(0), "\(imported.output)")
                for (name, template) in [("stock", "stock"), ("trim", "trim")] {
                    #expect(try Self.machine(["fork", name, "--template", template] + store).status == .exited(0))
                    let started = try Self.machine(["start", name, "--wait", "60"] + store)
                    #expect(started.status == .exited(0), "\(started.output)")
                }
                // D-Bus, asked of each guest's systemd before anything connects to its bus: the stock
                // guest started it at boot (the control), the trimmed one only listens; a client's
                // first connection starts it.
                let active = { (name: String, units: String) throws -> String in
                    try Self.inside(name, ["sh", "-c", "systemctl is-active \(units) || true"]).split(whereSeparator: \.isNewline).joined(separator: " ")
                }
                #expect(try active("stock", "dbus.service") == "active")
                #expect(try active("trim", "dbus.service dbus.socket") == "inactive active")
                #expect(try Self.inside("trim", ["busctl", "--system", "--no-pager", "list"]).contains("org.freedesktop.systemd1"))
                #expect(try active("trim", "dbus.service") == "active")
                // Asked of each guest's own systemd.
                let state = { (name: String, unit: String) throws -> String in
                    try Self.inside(name, ["sh", "-c", "systemctl is-enabled \(unit) || true"]).split(whereSeparator: \.isNewline).joined()  // exits 1 when masked
                }
                let masked = try ["systemd-sysctl.service", "systemd-journal-flush.service", "systemd-user-sessions.service",
                                  "initrd-switch-root.service", "systemd-pcrphase.service"]
                    .map { try state("trim", $0) }
                #expect(masked == ["masked", "masked", "masked", "masked", "masked"], "\(masked)")
                // With systemd-user-sessions masked nothing removes /run/nologin: its tmpfiles entry goes too,
                // or every user but root would be kept out. Asked of each guest's systemd-tmpfiles.
                let nologin = { (name: String) throws -> String in
                    try Self.inside(name, ["sh", "-c", "systemd-tmpfiles --cat-config | grep -c '^[^#]* /run/nologin ' || true; ls /run/nologin 2>&1 || true"])
                }
                #expect(try nologin("trim").hasPrefix("0\nls: cannot access '/run/nologin'"), "trimmed: no entry, no file")
                #expect(try nologin("stock").hasPrefix("1\nls: cannot access '/run/nologin'"), "the control: the entry, its file removed at boot")
                #expect(try state("stock", "systemd-sysctl.service") != "masked", "the control: the stock template masks nothing")
                #expect(try Self.inside("trim", ["sh", "-c", "systemctl is-system-running --wait; systemctl --failed --no-legend | wc -l"])
                    .split(separator: "\n").map(String.init) == ["running", "0"])
                #expect(try Self.inside("trim", ["systemd-analyze", "cat-config", "systemd/journald.conf"]).contains("Storage=volatile"))
                let generated = try Self.inside("trim", ["ls", "/run/systemd/generator"])
                let stockGenerated = try Self.inside("stock", ["ls", "/run/systemd/generator"])
                #expect(!generated.contains("console-getty") && stockGenerated.contains("getty.target.wants"),
                        "the getty generator ran in the stock guest only: \(generated) / \(stockGenerated)")
                // A hostile root: etc/systemd/system leads out of it.
                for folder in ["root/etc/systemd", "root/usr", "outside"] { _ = try Command.check(["mkdir", "-p", "\(dir)/\(folder)"]) }
                _ = try Command.check(["ln", "-s", "\(dir)/outside", "\(dir)/root/etc/systemd/system"])
                let hostile = try Self.machine(["template", "import", "--minimal", "evil", "\(dir)/root"] + store)
                #expect(hostile.status == .exited(1) && hostile.output.contains("etc/systemd/system"), "\(hostile.output)")
                #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(dir)/outside", O_RDONLY | O_DIRECTORY)).isEmpty)
                // The same with the folder of the D-Bus deferral, below a real etc/systemd/system.
                _ = try Command.check(["rm", "\(dir)/root/etc/systemd/system"])
                _ = try Command.check(["mkdir", "\(dir)/root/etc/systemd/system"])
                _ = try Command.check(["ln", "-s", "\(dir)/outside", "\(dir)/root/etc/systemd/system/multi-user.target.wants"])
                let wants = try Self.machine(["template", "import", "--minimal", "evil", "\(dir)/root"] + store)
                #expect(wants.status == .exited(1) && wants.output.contains("multi-user.target.wants"), "\(wants.output)")
                #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(dir)/outside", O_RDONLY | O_DIRECTORY)).isEmpty)
                #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/templates", O_RDONLY | O_DIRECTORY)).sorted() == ["stock", "trim"])
            }
        }
    }

    /// A warm pool, from the claimer's side and the guest's own: two machines claimed from it are
    /// each their own (machine id, SSH host key, user range made per pool machine) and carry the
    /// name, hostname and keys given at claim — asked of each guest, with a pool machine's own
    /// hostname as the control; the pool fills again by itself; a claim never hands one machine
    /// out twice, nor takes a name in use; a claimed machine stops and starts as itself; nothing
    /// is left after.
    @Test func aClaimedPoolMachineIsItsOwnUnderTheNameItWasGiven() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 3 << 30) { image in
            try withTemporaryDirectory { dir in
                let store = ["--store", image.mountPoint]
                let pooled = { () throws -> [String] in
                    try JSON.parse(try Self.machine(["list", "--json"] + store).output)["machines"]?.array?
                        .filter { $0["pool"] == .string("debian12") && $0["running"] == .bool(true) }.compactMap { $0["name"]?.string } ?? []
                }
                defer {
                    _ = try? Self.machine(["pool", "debian12", "--size", "0"] + store)
                    for name in ["front", "back", "x", "y"] { _ = try? Self.machine(["stop", name]); _ = try? Self.machine(["remove", name] + store) }
                }
                try Self.importTemplateWithSSHD(rootfs, store: image.mountPoint)

                let none = try Self.machine(["claim", "front", "--template", "debian12"] + store)
                #expect(none.status == .exited(6) && none.output.contains("has no pool"), "\(none.output)")
                // An operator's typos: each refused with the rule it breaks, and nothing recorded.
                let typos: [([String], Int32, String)] = [
                    (["pool", "debian12", "--size", "-1"], 2, "0 to 1000"), (["pool", "debian12", "--size", "1001"], 2, "0 to 1000"),
                    (["pool", "debian12", "--size", "many"], 2, "a count of machines"), (["pool", "nosuch", "--size", "1"], 6, "no such template"),
                    (["pool", "debian12", "--size", "1", "--macvlan", "eth0"], 2, "--macvlan"),
                    (["claim", "Bad_Name", "--template", "debian12"], 1, "a machine name is its hostname"),
                    (["claim", String(repeating: "a", count: 65), "--template", "debian12"], 1, "1 to 64 letters"),
                    (["claim", "ok", "--template", "debian12", "--hostname", "-x"], 1, "a machine name is its hostname"),
                    (["claim", "ok", "--template", "debian12", "--ssh-key", "\(dir)/missing.pub"], 2, "--ssh-key"),
                    (["claim", "ok"], 2, "claim needs --template"),
                ]
                for (arguments, status, said) in typos {
                    let refused = try Self.machine(arguments + store)
                    #expect(refused.status == .exited(status) && refused.output.contains(said), "\(arguments): \(refused.output)")
                }
                #expect(try Self.machineEntries("\(image.mountPoint)/machines") == [], "nothing recorded, nothing forked")
                let filled = try Self.machine(["pool", "debian12", "--size", "2", "--json"] + store)
                let ready = try JSON.parse(filled.output)["ready"]?.array?.count
                #expect(filled.status == .exited(0) && ready == 2, "\(filled.output)")
                try OwnedFD.open("\(dir)/pool.json", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(filled.output.utf8))
                let templates = try JSON.parse(try Self.machine(["template", "list", "--json"] + store).output)["templates"]?.array ?? []
                let pool = templates.first { $0["name"] == .string("debian12") }?["pool"]
                #expect(pool?["size"] == .int(2) && pool?["ready"] == .int(2), "\(templates)")
                #expect(templates.first { $0["name"] == .string("base") }?["pool"] == .null)
                let moved = try Self.machine(["pool", "debian12", "--size", "2", "--bridge", "rmq0", "--subnet", "10.251.0.0/24"] + store)
                #expect(moved.status == .exited(2) && moved.output.contains("empty the pool first"), "\(moved.output)")
                let inUse = try Self.machine(["template", "remove", "debian12", "--force"] + store)
                #expect(inUse.status == .exited(1) && inUse.output.contains("empty the pool first"), "\(inUse.output)")
                #expect(access("\(image.mountPoint)/templates/debian12", F_OK) == 0)
                let waiting = try pooled()
                #expect(waiting.count == 2 && waiting.allSatisfy { $0.hasPrefix("pool-") }, "\(waiting)")
                // The control: a pool machine's guest knows itself by its pool name.
                #expect(try Self.inside(waiting[0], ["hostname"]) == "\(waiting[0])\n")

                var was: [String: String] = [:]  // the pool name each booted as
                let claim = { (name: String, options: [String]) throws -> CommandResult in
                    let claimed = try Self.machine(["claim", name, "--template", "debian12", "--json"] + options + store)
                    was[name] = try? JSON.parse(claimed.output)["was"]?.string
                    try OwnedFD.open("\(dir)/claim-\(name).json", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(claimed.output.utf8))
                    return claimed
                }
                for (name, key) in [("front", "ssh-ed25519 AAAAfront front@test"), ("back", "ssh-ed25519 AAAAback back@test")] {
                    try OwnedFD.open("\(dir)/\(name).pub", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array("\(key)\n".utf8))
                    let hostname = name == "front" ? ["--hostname", "www"] : []
                    let claimed = try claim(name, ["--ssh-key", "\(dir)/\(name).pub", "--no-refill"] + hostname)
                    #expect(claimed.status == .exited(0) && was[name]?.hasPrefix("pool-") == true, "\(claimed.output)")
                }
                var ids: Set<String> = [], hostKeys: Set<String> = [], maps: Set<String> = []
                for (name, hostname) in [("front", "www"), ("back", "back")] {
                    // Asked of the guest: its kernel's hostname, its files, its systemd's answer, root's keys.
                    #expect(try Self.inside(name, ["hostname"]) == "\(hostname)\n")
                    #expect(try Self.inside(name, ["cat", "/etc/hostname"]) == "\(hostname)\n")
                    #expect(try Self.inside(name, ["hostnamectl", "--static"]) == "\(hostname)\n")
                    #expect(try Self.inside(name, ["cat", "/root/.ssh/authorized_keys"]) == "ssh-ed25519 AAAA\(name) \(name)@test\n")
                    #expect(try Self.inside(name, ["stat", "-c", "%U %a", "/root/.ssh/authorized_keys"]) == "root 600\n")
                    ids.insert(try Self.inside(name, ["cat", "/etc/machine-id"]))
                    hostKeys.insert(try Self.inside(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).split(separator: " ").dropFirst().first.map(String.init) ?? "")
                    maps.insert(try Self.inside(name, ["cat", "/proc/1/uid_map"]))
                }
                #expect(ids.count == 2 && hostKeys.count == 2 && !hostKeys.contains("") && maps.count == 2, "\(ids) \(hostKeys) \(maps)")
                let errors = try schemaErrors(["\(dir)/pool.json", "\(dir)/claim-front.json", "\(dir)/claim-back.json"])
                #expect(errors.isEmpty, "\(errors)")
                let listed = try JSON.parse(try Self.machine(["list", "--json"] + store).output)["machines"]?.array ?? []
                #expect(listed.filter { ["front", "back"].contains($0["name"]?.string) }.allSatisfy { $0["running"] == .bool(true) && $0["pool"] == .null })
                #expect(try pooled().isEmpty, "both pool machines were handed out")

                // A name in use, and an empty pool: refused, nothing changed.
                let taken = try Self.machine(["claim", "front", "--template", "debian12"] + store)
                #expect(taken.status == .exited(1) && taken.output.contains("a machine of that name exists"), "\(taken.output)")
                let empty = try Self.machine(["claim", "x", "--template", "debian12", "--no-refill"] + store)
                #expect(empty.status == .exited(1) && empty.output.contains("none of its 0 pool machine(s) is ready"), "\(empty.output)")
                #expect(access("\(image.mountPoint)/machines/x", F_OK) != 0)

                // Filled again: two claims at once take two machines, never the same one; each
                // starts a refill in the background, which brings the pool back to its size.
                #expect(try Self.machine(["pool", "debian12"] + store).output.contains("2 ready"))
                let racing = try ["x", "y"].map { name in
                    let log = try OwnedFD.open("\(dir)/\(name).log", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
                    return try Command.spawn([try builtTool("replica-machine"), "claim", name, "--template", "debian12", "--json"] + store, output: log.rawValue)
                }
                for pid in racing { #expect(try ExitStatus.wait(for: pid) == .exited(0)) }
                let raced = try ["x", "y"].compactMap { try JSON.parse(String(decoding: try OwnedFD.open("\(dir)/\($0).log", O_RDONLY).readAll(), as: UTF8.self))["was"]?.string }
                #expect(raced.count == 2 && Set(raced).count == 2 && Set(raced).isDisjoint(with: waiting), "\(raced)")
                let deadline = ContinuousClock.now + .seconds(90)
                while try pooled().count < 2 && ContinuousClock.now < deadline { usleep(200_000) }
                #expect(try pooled().count == 2, "the pool did not fill again by itself")

                // Stopped and started, a claimed machine is itself: its name, hostname and machine id.
                let id = try Self.inside("front", ["cat", "/etc/machine-id"])
                #expect(try Self.machine(["stop", "front"]).status == .exited(0))
                let group = try ControlGroup.existing(MachinePlacement.cgroupName(try #require(was["front"])))
                #expect(MachineProcess.running("front") == nil && !group.hierarchies.contains { access("\($0.path)/\(group.path)", F_OK) == 0 },
                        "its cgroup, made under its pool name, is left")
                #expect(try Self.machine(["start", "front", "--wait", "60"] + store).status == .exited(0))
                #expect(try Self.inside("front", ["hostname"]) == "www\n" && (try Self.inside("front", ["cat", "/etc/machine-id"])) == id)

                // Emptied, and every machine gone: nothing of the pool is left.
                #expect(try Self.machine(["pool", "debian12", "--size", "0"] + store).output.contains("2 removed"))
                for name in ["front", "back", "x", "y"] {
                    #expect(try Self.machine(["stop", name]).status == .exited(0))
                    #expect(try Self.machine(["remove", name] + store).status == .exited(0))
                }
                #expect(try Self.machineEntries("\(image.mountPoint)/machines") == [".pools"])
                #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/machines/.pools", O_RDONLY | O_DIRECTORY)).isEmpty)
                let ours = ["front", "back", "x", "y"] + Array(was.values) + raced + waiting
                #expect(try DirectoryEntries.names(in: try OwnedFD.open(MachineProcess.runDirectory, O_RDONLY | O_DIRECTORY))
                    .filter { $0.hasPrefix("pool-") || ours.contains(String($0.split(separator: ".").first ?? "")) }.isEmpty)
                #expect(access("\(MachinePool.logDirectory)/debian12.log", F_OK) != 0, "the refill's log is left")
            }
        }
    }

    /// A pool on a bridge: its machines wait with loopback only, and a claimed one gets its network
    /// at claim, made as a fork's is — its own veth and leased address on the bridge, in a namespace
    /// its guest's root holds no capability over (asked of the guest: it cannot add an address;
    /// the control: the host can, in the same namespace). Stopped and removed, it leaves no
    /// namespace or lease, and the pool no namespace of its machines.
    @Test func aPoolOnABridgeGivesAClaimedMachineAnAddressOfItsOwn() throws {
        let rootfs = try Self.rootfs()
        let tag = getpid() % 250
        let (bridge, subnet) = ("rmp\(getpid() % 100_000)", "10.253.\(tag).0/24")
        let leased = { (owner: String) throws -> Bool in try Self.lease(of: owner) != nil }
        try withBtrfsImage(size: 3 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer {
                _ = try? Self.machine(["pool", "debian12", "--size", "0"] + store)
                _ = try? Self.machine(["stop", "web"])
                _ = try? Self.machine(["remove", "web"] + store)
                _ = try? Command.run(["ip", "link", "del", bridge])
            }
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            let filled = try Self.machine(["pool", "debian12", "--size", "1", "--bridge", bridge, "--subnet", subnet] + store)
            #expect(filled.status == .exited(0), "\(filled.output)")
            let member = try #require(NetworkNamespaceNames.current().first { $0.hasPrefix("m-pool-") }).dropFirst(2)
            #expect(!(try Self.inside(String(member), ["ip", "-o", "link"])).contains("eth0"), "a waiting machine has loopback only")
            #expect(try !leased(MachineNetwork.owner(String(member))))

            let claimed = try Self.machine(["claim", "web", "--template", "debian12", "--json", "--no-refill"] + store)
            let address = try #require(try JSON.parse(claimed.output)["address"]?.string, "\(claimed.output)")
            let shown = try Self.inside("web", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
            #expect(shown.contains(" \(address) "), "the guest has the address its claim leased: \(shown)")
            #expect(try leased(MachineNetwork.owner("web")))
            // The host reaches it over the bridge: a line sent to a listener in the guest arrives.
            let listener = try Command.spawn(["nsenter", "--target", "\(try #require(try Self.leader("web")))", "--all", "--",
                                              "socat", "-u", "TCP-LISTEN:7000,reuseaddr", "OPEN:/tmp/received,creat"])
            usleep(300_000)
            _ = try Command.check(["bash", "-c", "echo over-the-bridge > /dev/tcp/\(address.split(separator: "/")[0])/7000"])
            _ = try ExitStatus.wait(for: listener)
            #expect(try Self.inside("web", ["cat", "/tmp/received"]) == "over-the-bridge\n")
            let spoof = "10.253.\(tag).250/24"
            let fromInside = try Command.run(["nsenter", "--target", "\(try #require(try Self.leader("web")))", "--all", "--",
                                              "ip", "addr", "add", spoof, "dev", "eth0"])
            #expect(fromInside.status != .exited(0) && fromInside.output.contains("Operation not permitted"), "\(fromInside.output)")
            #expect(try Command.run(["ip", "-n", MachineNetwork.namespace("web"), "addr", "add", spoof, "dev", "eth0"]).status == .exited(0),
                    "the control: the host can, in the same namespace")
            #expect(!NetworkNamespaceNames.current().contains("m-\(member)"), "the pool machine's pin is gone with its name")

            #expect(try Self.machine(["stop", "web"]).status == .exited(0))
            #expect(!NetworkNamespaceNames.current().contains(MachineNetwork.namespace("web")))
            #expect(try Self.machine(["remove", "web"] + store).status == .exited(0))
            #expect(try !leased(MachineNetwork.owner("web")), "its address is given back")
            #expect(try Self.machine(["pool", "debian12", "--size", "0"] + store).status == .exited(0))
            #expect(NetworkNamespaceNames.current().filter { $0.hasPrefix("m-pool-") || $0 == "m-web" }.isEmpty)
        }
    }

    /// A host out of inotify instances (`fs.inotify.max_user_instances`: 128 by default, about
    /// thirty booted guests): the start fails naming the setting and how to raise it, where the
    /// guest's console alone would not; with the limit back, the same machine starts.
    @Test func aHostOutOfInotifyInstancesIsNamedWithItsSetting() throws {
        let rootfs = try Self.rootfs()
        let setting = "/proc/sys/fs/inotify/max_user_instances"
        let saved = try OwnedFD.open(setting, O_RDONLY).readLine()
        let set = { (value: String) throws in try OwnedFD.open(setting, O_WRONLY).writeAll(Array("\(value)\n".utf8)) }
        try withBtrfsImage(size: 2 << 30) { image in
            let store = ["--store", image.mountPoint]
            defer {
                _ = try? set(saved)
                _ = try? Self.machine(["stop", "a"] + store)
                _ = try? Self.machine(["remove", "a"] + store)  // and its console log
            }
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
            #expect(try Self.machine(["fork", "a", "--template", "debian12"] + store).status == .exited(0))
            try set("1")
            let starved = try Self.machine(["start", "a", "--wait", "15"] + store)
            try set(saved)
            #expect(starved.status == .exited(1) && starved.output.contains("raise it: sysctl -w fs.inotify.max_user_instances="),
                    "\(starved.output)")
            #expect(MachineProcess.running("a") == nil)
            let started = try Self.machine(["start", "a", "--wait", "60"] + store)
            #expect(started.status == .exited(0), "\(started.output)")
        }
    }

    @Test func aTarballImportsAndWhatIsNotARootIsRefusedLeavingNothing() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                _ = try Command.check(["mkdir", "-p", "\(dir)/root/etc", "\(dir)/root/usr/bin", "\(dir)/notroot/data"])
                _ = try Command.check(["tar", "-cf", "\(dir)/root.tar", "-C", "\(dir)/root", "."])
                let store = ["--store", image.mountPoint]
                #expect(try Self.machine(["template", "import", "tiny", "\(dir)/root.tar"] + store).status == .exited(0))
                #expect(access("\(image.mountPoint)/templates/tiny/usr/bin", F_OK) == 0)
                // The operator's path may be a link to the folder (it was taken for a tarball).
                symlink("\(dir)/root", "\(dir)/current")
                let linked = try Self.machine(["template", "import", "linked", "\(dir)/current"] + store)
                #expect(linked.status == .exited(0) && access("\(image.mountPoint)/templates/linked/usr/bin", F_OK) == 0, "\(linked.output)")
                #expect(try Self.machine(["template", "remove", "linked"] + store).status == .exited(0))
                let refused = try Self.machine(["template", "import", "junk", "\(dir)/notroot"] + store)
                #expect(refused.status == .exited(1) && refused.output.contains("not a root file system"))
                // What every fork would get as it is — a device node, set-ID files, a FIFO — is reported;
                // --strict refuses it, leaving nothing. The control: the plain root imports under --strict.
                _ = try Command.check(["mkdir", "-p", "\(dir)/odd/etc", "\(dir)/odd/usr/bin", "\(dir)/odd/dev"])
                _ = try Command.check(["mknod", "\(dir)/odd/dev/sda", "b", "8", "0"])
                _ = try Command.check(["mkfifo", "\(dir)/odd/run.fifo"])
                _ = try Command.check(["install", "-m", "4755", "/bin/true", "\(dir)/odd/usr/bin/su"])
                _ = try Command.check(["install", "-m", "2755", "/bin/true", "\(dir)/odd/usr/bin/wall"])
                let strict = try Self.machine(["template", "import", "odd", "\(dir)/odd", "--strict"] + store)
                #expect(strict.status == .exited(1) && strict.output.contains("--strict") && strict.output.contains("/dev/sda: block device 8:0"),
                        "\(strict.output)")
                #expect(access("\(image.mountPoint)/templates/odd", F_OK) != 0 && access("\(image.mountPoint)/templates/.importing-odd", F_OK) != 0)
                let reported = try Self.machine(["template", "import", "odd", "\(dir)/odd", "--json"] + store)
                #expect(reported.status == .exited(0), "\(reported.output)")
                let findings = try JSON.parse(reported.output)["findings"]?.array ?? []
                let listed = findings.map { finding in "\(finding["path"]?.string ?? "") \(finding["what"]?.string ?? "")" }
                #expect(listed == ["/dev/sda block device 8:0", "/run.fifo FIFO", "/usr/bin/su set-user-ID", "/usr/bin/wall set-group-ID"], "\(listed)")
                #expect(try Self.machine(["template", "remove", "odd"] + store).status == .exited(0))
                #expect(try Self.machine(["template", "import", "plain", "\(dir)/root", "--strict"] + store).status == .exited(0), "the control")
                #expect(try Self.machine(["template", "remove", "plain"] + store).status == .exited(0))
                let names = try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/templates", O_RDONLY | O_DIRECTORY))
                #expect(names == ["tiny"], "\(names)")
                let bad = try Self.machine(["fork", "../x", "--template", "tiny"] + store)
                #expect(bad.status == .exited(1) && bad.output.contains("not starting with '-' or '.'"))
                // A name systemd would refuse as a hostname (nspawn's --machine=) is refused at fork.
                for name in ["web_1", "-web", "web..1", "web1.", String(repeating: "a", count: 65)] {
                    let refused = try Self.machine(["fork", "--template", "tiny"] + store + ["--", name])
                    #expect(refused.status == .exited(1) && refused.output.contains("a machine name is its hostname"), "\(name): \(refused.output)")
                }
                let missing = try Self.machine(["fork", "x", "--template", "nosuch"] + store)
                #expect(missing.status == .exited(6) && missing.output.contains("no such template"))
                // stop takes --store, as its manual page says; a machine that does not exist is not "stopped".
                let stopMissing = try Self.machine(["stop", "nosuch"] + store)
                #expect(stopMissing.status == .exited(6) && stopMissing.output.contains("no such machine"), "\(stopMissing.output)")
                #expect(try Self.machine(["fork", "stopped", "--template", "tiny"] + store).status == .exited(0))
                let stopStopped = try Self.machine(["stop", "stopped"] + store)
                #expect(stopStopped.status == .exited(0) && stopStopped.output.contains("stopped stopped"), "the positive control: \(stopStopped.output)")
                #expect(try Self.machine(["remove", "stopped"] + store).status == .exited(0))
                // A network that cannot be had: refused before anything is made.
                for (arguments, code, says) in [(["--network", "replica-no-such-profile"], 6, "replica-no-such-profile is not configured: no profile at"),
                                                (["--bridge", "rmx0"], 2, "--bridge needs --subnet"),
                                                (["--bridge", "rmx0", "--subnet", "10.0.0.0/33"], 2, "Subnet="),
                                                (["--bridge", "this-is-too-long-a-bridge", "--subnet", "10.0.0.0/24"], 2, "Bridge=")] {
                    let refused = try Self.machine(["fork", "x", "--template", "tiny"] + arguments + store)
                    #expect(refused.status == .exited(Int32(code)) && refused.output.contains(says), "\(arguments): \(refused.output)")
                }
                #expect(access("\(image.mountPoint)/machines/x", F_OK) != 0 && access("\(image.mountPoint)/machines/.forking-x", F_OK) != 0)
                #expect(!NetworkNamespaceNames.current().contains("m-x"))
                // Where sshd is installed, each fork gets a host key of its own.
                _ = try Command.check(["mkdir", "-p", "\(dir)/sshd/etc/ssh", "\(dir)/sshd/usr"])
                _ = try Command.check(["touch", "\(dir)/sshd/etc/ssh/sshd_config"])
                _ = try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "\(dir)/sshd/etc/ssh/ssh_host_ed25519_key"])
                #expect(try Self.machine(["template", "import", "sshd", "\(dir)/sshd"] + store).status == .exited(0))
                let prints = try ["k1", "k2"].map { name in
                    _ = try Self.machine(["fork", name, "--template", "sshd"] + store)
                    return try Command.check(["ssh-keygen", "-lf", "\(image.mountPoint)/machines/\(name)/etc/ssh/ssh_host_ed25519_key.pub"])
                }
                let template = try Command.check(["ssh-keygen", "-lf", "\(dir)/sshd/etc/ssh/ssh_host_ed25519_key.pub"])
                let fingerprints = (prints + [template]).map { $0.split(separator: " ")[1] }  // not the comments
                #expect(Set(fingerprints).count == 3, "\(prints) \(template)")
            }
        }
    }
}

/// Key files, read one way for `--ssh-key` and a set's `SSHKey=`: without privileges.
@Suite struct SSHKeyFileTests {
    @Test func keysAreTheLinesCommentsAndBlankLinesSkipped() throws {
        try withTemporaryDirectory { dir in
            let text = "# laptop\r\nssh-ed25519 AAAAC3Nza one@laptop\r\n\r\n  ssh-rsa AAAAB3Nza two@desk  \n"
            try OwnedFD.open("\(dir)/keys", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(text.utf8))
            #expect(try Machines.Seed.keys(in: "\(dir)/keys") == ["ssh-ed25519 AAAAC3Nza one@laptop", "ssh-rsa AAAAB3Nza two@desk"])
        }
    }

    @Test func aLinkAFIFOOrAControlCharacterIsRefused() throws {
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/real", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("ssh-ed25519 AAAA x\n".utf8))
            #expect(symlink("\(dir)/real", "\(dir)/link") == 0)
            #expect(mkfifo("\(dir)/fifo", 0o644) == 0)
            try OwnedFD.open("\(dir)/forged", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("ssh-ed25519 AAAA x\u{2028}injected\n".utf8))
            #expect(try Machines.Seed.keys(in: "\(dir)/real").count == 1, "the positive control")
            let link = #expect(throws: ReplicaError.self) { try Machines.Seed.keys(in: "\(dir)/link") }
            #expect(link?.errno == .ELOOP)
            let fifo = #expect(throws: ReplicaError.self) { try Machines.Seed.keys(in: "\(dir)/fifo") }
            #expect(fifo?.hint == "not a regular file")
            let forged = #expect(throws: ReplicaError.self) { try Machines.Seed.keys(in: "\(dir)/forged") }
            #expect(forged?.hint?.contains("control character") == true)
        }
    }

    @Test func aMissingKeyFileIsAUsageErrorOfFork() throws {
        let result = try Command.run([try builtTool("replica-machine"), "fork", "x", "--template", "t", "--ssh-key", "/nonexistent/key"])
        #expect(result.status == .exited(2) && result.output.contains("--ssh-key /nonexistent/key"), "\(result.output)")
    }
}
