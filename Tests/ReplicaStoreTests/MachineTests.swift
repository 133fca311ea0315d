import Glibc
import ReplicaKit
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

    /// The pid of a booted container's systemd, below its systemd-nspawn.
    static func containerInit(below pid: Int32) -> Int32? {
        MachineProcess.descendants(of: pid).first { child in (try? OwnedFD.open("/proc/\(child)/comm", O_RDONLY).readLine()) == "systemd" }
    }

    static func inside(_ machine: String, _ command: [String]) throws -> String {
        let text = try OwnedFD.open("\(MachineProcess.runDirectory)/\(machine).pid", O_RDONLY).readLine()
        let leader = try #require(Int32(text).flatMap(containerInit(below:)))
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
            let listed = try Self.machine(["list", "--json"] + store).output
            #expect(try JSON.parse(listed)["machines"]?.array?.compactMap { $0["running"] } == [.bool(true), .bool(true)])
            let running = try Self.machine(["remove", "web1"] + store)
            #expect(running.status == .exited(1) && running.output.contains("stop it first"))

            for name in ["web1", "web2"] {
                #expect(try Self.machine(["stop", name]).status == .exited(0))
                #expect(MachineProcess.running(name) == nil)
                #expect(try Self.machine(["remove", name] + store).status == .exited(0))
            }
            #expect(try Self.machine(["template", "remove", "debian12"] + store).status == .exited(0))
            #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/machines", O_RDONLY | O_DIRECTORY)).isEmpty)
        }
    }

    @Test func aSetForksAndBootsItsMachinesAtOnceAndIsReadyWhenAllAre() throws {
        let rootfs = try Self.rootfs()
        try withBtrfsImage(size: 2 << 30) { image in
            try withTemporaryDirectory { sets in
                let store = ["--store", image.mountPoint]
                #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
                try OwnedFD.open("\(sets)/lab.conf", O_WRONLY | O_CREAT, mode: 0o644)
                    .writeAll(Array("[Set]\nMachine=a:debian12 b:debian12\nMachine=c:debian12\n".utf8))
                defer { _ = try? Self.machine(["set", "stop", "lab", "--sets", sets] + store) }
                let started = try Self.machine(["set", "start", "lab", "--sets", sets] + store)
                #expect(started.status == .exited(0) && started.output.contains("3 machines ready"), "\(started.output)")
                for name in ["a", "b", "c"] {
                    #expect(MachineProcess.running(name) != nil)
                    #expect(try Self.inside(name, ["hostname"]) == "\(name)\n")
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
            let leader = try #require(Int32(try OwnedFD.open("\(MachineProcess.runDirectory)/n2.pid", O_RDONLY).readLine()).flatMap(Self.containerInit))
            let listener = try Command.spawn(["nsenter", "--target", "\(leader)", "--all", "--", "socat", "-u", "TCP-LISTEN:7000,reuseaddr",
                                              "OPEN:/tmp/received,creat"])
            usleep(300_000)
            _ = try Self.inside("n1", ["bash", "-c", "echo over-the-bridge > /dev/tcp/\(addresses[1])/7000"])
            _ = try ExitStatus.wait(for: listener)
            #expect(try Self.inside("n2", ["cat", "/tmp/received"]) == "over-the-bridge\n")
            for name in ["n1", "n2"] { #expect(try Self.machine(["stop", name]).status == .exited(0)) }
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
            #expect(try Self.machine(["template", "import", "debian12", rootfs] + store).status == .exited(0))
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
                try Command.spawn([try builtTool("replica-machine"), "start", name, "--bridge", bridge, "--subnet", subnet] + store)
            }
            for pid in starts { #expect(try ExitStatus.wait(for: pid) == .exited(0)) }
            var ids: Set<String> = [], hosts: Set<String> = [], macs: Set<String> = [], instances: Set<String> = [], addresses: [String] = []
            for name in names {
                ids.insert(try Self.inside(name, ["cat", "/etc/machine-id"]))
                hosts.insert(try Self.inside(name, ["hostname"]))
                let link = try Self.inside(name, ["ip", "-o", "link", "show", "dev", "eth0"]).split(separator: " ")
                macs.insert(link.firstIndex(of: "link/ether").map { String(link[$0 + 1]) } ?? "")
                instances.insert(try Self.inside(name, ["head", "-1", "/var/lib/cloud/seed/nocloud/meta-data"]))
                let shown = try Self.inside(name, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
                addresses.append(String(shown.split(separator: " ")[3].split(separator: "/")[0]))
            }
            #expect(ids.count == 10 && hosts.count == 10 && macs.count == 10 && instances.count == 10 && Set(addresses).count == 10)
            // A ring: each machine sends to the next over the bridge.
            for (index, name) in names.enumerated() {
                let next = names[(index + 1) % names.count]
                let leader = try #require(Int32(try OwnedFD.open("\(MachineProcess.runDirectory)/\(next).pid", O_RDONLY).readLine())
                    .flatMap(Self.containerInit))
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
            #expect(try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/machines", O_RDONLY | O_DIRECTORY)).isEmpty)
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
                #expect(try DirectoryEntries.names(in: try OwnedFD.open(machines, O_RDONLY | O_DIRECTORY)).isEmpty)
                // A fork killed before its rename leaves .forking-NAME: the next fork of that name takes its place.
                _ = try Command.check(["btrfs", "-q", "subvolume", "create", "\(machines)/.forking-y"])
                #expect(try Self.machine(["fork", "y", "--template", "debian12"] + store).status == .exited(0))
                #expect(try DirectoryEntries.names(in: try OwnedFD.open(machines, O_RDONLY | O_DIRECTORY)) == ["y"])
                #expect(try Self.machine(["fork", "y", "--template", "debian12"] + store).output.contains("a machine of that name exists"))
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
                #expect(try Self.machine(["remove", "y"] + store).status == .exited(0))
            }
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
                let refused = try Self.machine(["template", "import", "junk", "\(dir)/notroot"] + store)
                #expect(refused.status == .exited(1) && refused.output.contains("not a root file system"))
                let names = try DirectoryEntries.names(in: try OwnedFD.open("\(image.mountPoint)/templates", O_RDONLY | O_DIRECTORY))
                #expect(names == ["tiny"], "\(names)")
                let bad = try Self.machine(["fork", "../x", "--template", "tiny"] + store)
                #expect(bad.status == .exited(1) && bad.output.contains("not starting with '.'"))
                let missing = try Self.machine(["fork", "x", "--template", "nosuch"] + store)
                #expect(missing.status == .exited(6) && missing.output.contains("no such template"))
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
