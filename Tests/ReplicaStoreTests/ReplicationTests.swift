import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// `replica-snap send` between two real btrfs stores on loop images: what arrives, incrementally,
/// verified; what an interrupted or refused receive leaves (nothing); what is never touched.
@Suite(.requiresBtrfs, .serialized) struct ReplicationTests {
    static func snap(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-snap")] + arguments)
    }

    /// A source store with subvolume `web`, and a second store for the copies.
    static func withStores<T>(sourceSize: Int64 = 1 << 30, targetSize: Int64 = 512 << 20,
                              _ body: (_ source: String, _ target: String) throws -> T) throws -> T {
        try withBtrfsImage(size: sourceSize) { source in
            try withBtrfsImage(size: targetSize) { target in
                try Store(path: source.mountPoint).ensureSubvolume("web")
                return try body(source.mountPoint, target.mountPoint)
            }
        }
    }

    static func write(_ path: String, megabytes: Int) throws {
        _ = try Command.check(["dd", "if=/dev/urandom", "of=\(path)", "bs=1M", "count=\(megabytes)", "status=none"])
    }

    /// Checksums of every file below `path`, by relative name.
    static func checksums(_ path: String) throws -> String {
        try Command.check(["sh", "-c", "cd '\(path)' && find . -type f -print0 | sort -z | xargs -0r sha256sum"])
    }

    static func snapshotNow(_ store: String, at second: Int64) throws -> String {
        try Store(path: store).snapshot("web", at: UTCTimestamp(secondsSinceEpoch: 1_800_000_000 + second))
    }

    /// Two 2 GiB stores with a 500 MB snapshot of `web`, and how long a whole send of it takes
    /// (measured into a folder that is then emptied): for the kill tests.
    static func withBigSnapshot(_ body: (_ source: String, _ target: String, _ name: String, _ whole: Duration) throws -> Void) throws {
        try withStores(sourceSize: 2 << 30, targetSize: 2 << 30) { source, target in
            try write("\(source)/web/big", megabytes: 500)
            let name = try snapshotNow(source, at: 0)
            _ = try Command.check(["sync"])
            let began = ContinuousClock.now
            #expect(try snap(["send", "--store", source, "--to", "\(target)/probe", "web"]).status == .exited(0))
            let whole = ContinuousClock.now - began
            _ = try Command.check(["btrfs", "-q", "subvolume", "delete", "\(target)/probe/web/\(name)"])
            try body(source, target, name, whole)
        }
    }

    static func copy(_ path: String) throws -> SubvolumeInfo {
        try Btrfs.info(try OwnedFD.open(path, O_RDONLY | O_DIRECTORY), path: path)
    }

    @Test func fullThenIncrementalArriveEqualReadOnlyAndRelated() throws {
        try Self.withStores { source, target in
            try Self.write("\(source)/web/a", megabytes: 20)
            let first = try Self.snapshotNow(source, at: 0)
            let sent = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(sent.status == .exited(0), "\(sent.output)")
            #expect(sent.output.contains("sent \(first) (full)"))

            try Self.write("\(source)/web/b", megabytes: 5)
            let second = try Self.snapshotNow(source, at: 60)
            let dry = try Self.snap(["send", "-n", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(dry.output.contains("would send \(second) (incremental from \(first))"), "\(dry.output)")
            #expect(access("\(target)/backup/web/\(second)", F_OK) != 0, "a dry run sent something")
            let incremental = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(incremental.output.contains("sent \(second) (incremental from \(first))"), "\(incremental.output)")

            for name in [first, second] {
                let original = try Self.copy("\(source)/snapshots/web/\(name)")
                let received = try Self.copy("\(target)/backup/web/\(name)")
                #expect(received.isReadOnly && received.receivedUUID == original.uuid)
                #expect(try Self.checksums("\(target)/backup/web/\(name)") == Self.checksums("\(source)/snapshots/web/\(name)"))
            }
            // The incremental copy is a snapshot of the first copy there, as btrfs receive -p makes it.
            #expect(try Self.copy("\(target)/backup/web/\(second)").parentUUID == Self.copy("\(target)/backup/web/\(first)").uuid)
            let again = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(again.status == .exited(0) && again.output.contains("up to date (2 snapshots there)"), "\(again.output)")
        }
    }

    /// `[Replication]` in the profile: each `replica-snap run` snapshots, prunes, sends what the
    /// target lacks, then prunes the target by its own policy (the newest copy always stays).
    @Test func aRunSendsThenPrunesTheTargetByItsOwnPolicy() throws {
        try Self.withStores { source, target in
            try withTemporaryDirectory { profiles in
                try OwnedFD.open("\(profiles)/web.service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("""
                    [State]
                    Store=\(source)
                    [Snapshots]
                    PreserveMin=all
                    [Replication]
                    Target=\(target)/backup
                    Latest=2
                    """.utf8))
                for hour in 0..<4 {
                    try Self.write("\(source)/web/f\(hour)", megabytes: 1)
                    let run = try Self.snap(["run", "--profiles", profiles, "--metrics-file", "", "--now", "2027-01-15T0\(hour):00:00Z", "web"])
                    #expect(run.status == .exited(0), "\(run.output)")
                    #expect(run.output.contains("web → \(target)/backup: sent web.20270115T0\(hour)0000Z"), "\(run.output)")
                }
                let copies = try DirectoryEntries.names(in: try OwnedFD.open("\(target)/backup/web", O_RDONLY | O_DIRECTORY)).sorted()
                #expect(copies == ["web.20270115T020000Z", "web.20270115T030000Z"])
                #expect(try Store(path: source).snapshots(of: "web").count == 4)
                // A target that cannot be used is refused where the profile is read, naming the line.
                try OwnedFD.open("\(profiles)/bad.service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("[Replication]\nTarget=backup\n".utf8))
                let bad = try Self.snap(["run", "--profiles", profiles, "bad"])
                #expect(bad.status == .exited(2) && bad.output.contains("bad.service.conf:2: Target="), "\(bad.output)")
            }
        }
    }

    /// btrbk, the reference for this layout, reads the pair as its own: every snapshot paired with
    /// its copy (`btrbk list backups`), nothing garbled to clean (`btrbk clean -n`).
    @Test func btrbkPairsEveryCopyAndFindsNothingToClean() throws {
        try Self.withStores { source, target in
            let names = try (0..<3).map { round in
                try Self.write("\(source)/web/f\(round)", megabytes: 1)
                return try Self.snapshotNow(source, at: Int64(round) * 3600)
            }
            #expect(try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"]).status == .exited(0))
            try Self.expectBtrbkPairs(source: source, copies: "\(target)/backup/web", names)
        }
    }

    /// btrbk, configured for `source`'s `web` with `copies` as its target, pairs each of `names`
    /// with its copy and finds nothing to clean: it takes the copies as its own.
    static func expectBtrbkPairs(source: String, copies: String, _ names: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let config = """
            timestamp_format long-iso
            snapshot_preserve_min all
            target_preserve_min all
            volume \(source)
              snapshot_dir snapshots/web
              subvolume web
                snapshot_name web
                target send-receive \(copies)
            """
        try withTemporaryDirectory { dir in
            try OwnedFD.open("\(dir)/btrbk.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(config.utf8))
            let list = try Command.check(["btrbk", "-c", "\(dir)/btrbk.conf", "list", "backups"])
            for name in names {
                #expect(list.split(separator: "\n").contains { $0.contains("snapshots/web/\(name)") && $0.contains("\(copies)/\(name)") },
                        "\(name) not paired:\n\(list)", sourceLocation: sourceLocation)
            }
            let clean = try Command.check(["btrbk", "-c", "\(dir)/btrbk.conf", "-n", "clean"])
            let deletions = clean.split(separator: "\n").filter { $0.contains("---") && $0.contains("\(copies)/web.") }
            #expect(clean.contains("<no_action>") && deletions.isEmpty, "\(clean)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [0.1, 0.5, 0.9])
    func aSenderKilledMidStreamLeavesWhatTheNextRunCleansThenSucceeds(fraction: Double) throws {
        try Self.withBigSnapshot { source, target, name, whole in
            let before = try Self.checksums("\(source)/snapshots/web/\(name)")
            // A send killed at the given share of a whole one.
            let pid = try Command.spawn([try builtTool("replica-snap"), "send", "--store", source, "--to", "\(target)/backup", "web"])
            let pause = whole * fraction
            usleep(UInt32(pause.components.seconds * 1_000_000 + pause.components.attoseconds / 1_000_000_000_000))
            kill(pid, SIGKILL)
            _ = try ExitStatus.wait(for: pid)
            usleep(200_000)  // btrfs receive sees the end of its input and exits
            // A receive cut short: its marker, and the writable, half-received subvolume.
            let garbled = access("\(target)/backup/web/.receiving-\(name)", F_OK) == 0 && access("\(target)/backup/web/\(name)", F_OK) == 0

            let next = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(next.status == .exited(0), "\(next.output)")
            if garbled {
                #expect(next.output.contains("removed the interrupted copy \(name)"), "\(next.output)")
            }
            let copies = try DirectoryEntries.names(in: try OwnedFD.open("\(target)/backup/web", O_RDONLY | O_DIRECTORY)).sorted()
            #expect(copies == [name], "strays or markers left: \(copies)")
            #expect(try Self.copy("\(target)/backup/web/\(name)").isReadOnly)
            #expect(try Self.checksums("\(target)/backup/web/\(name)") == before)
            #expect(try Self.checksums("\(source)/snapshots/web/\(name)") == before, "the source changed")
        }
    }

    @Test(arguments: [0.1, 0.5, 0.9])
    func aReceiverKilledMidStreamFailsTheSendAndLeavesNothing(fraction: Double) throws {
        try Self.withBigSnapshot { source, target, name, whole in
            let pid = try Command.spawn([try builtTool("replica-snap"), "send", "--store", source, "--to", "\(target)/backup", "web"])
            let started = ContinuousClock.now
            var killed = false
            while !killed && ContinuousClock.now - started < whole * 3 {
                let receivers = try Command.run(["pgrep", "-f", "btrfs receive \(target)/backup/web"]).output
                if let receiver = receivers.split(separator: "\n").first.flatMap({ Int32($0) }), ContinuousClock.now - started >= whole * fraction {
                    kill(receiver, SIGKILL)
                    killed = true
                }
                usleep(5_000)
            }
            let status = try ExitStatus.wait(for: pid)
            // Killed mid-stream, the send fails and removes the garbled copy itself; a receive that had
            // already finished leaves a verified copy. Either way: no stray, no marker.
            #expect(killed || status == .exited(0))
            let left = try DirectoryEntries.names(in: try OwnedFD.open("\(target)/backup/web", O_RDONLY | O_DIRECTORY))
            #expect(left.isEmpty || left == [name], "\(left)")
            if status != .exited(0) { #expect(left.isEmpty && status == .exited(1), "\(status) \(left)") }
            #expect(try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"]).status == .exited(0))
            #expect(try Self.copy("\(target)/backup/web/\(name)").isReadOnly)
        }
    }

    @Test func aHeldLockExits3AndAWritableSnapshotIsNeverSent() throws {
        try Self.withStores { source, target in
            let name = try Self.snapshotNow(source, at: 0)
            _ = try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(source)/web", "\(source)/snapshots/web/web.20270115T090000Z"])
            do {
                let store = try Store(path: source)
                let lock = try SubvolumeLock.acquire("web", in: store)
                let held = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
                #expect(held.status == .exited(3), "\(held.output)")
                _ = lock.subvolume
            }
            let sent = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(sent.status == .exited(0))
            let copies = try DirectoryEntries.names(in: try OwnedFD.open("\(target)/backup/web", O_RDONLY | O_DIRECTORY))
            #expect(copies == [name], "the writable snapshot was sent: \(copies)")
        }
    }

    @Test func aFullTargetFailsCleanlyAndTheSourceIsUntouched() throws {
        try Self.withStores(targetSize: 256 << 20) { source, target in
            try Self.write("\(source)/web/big", megabytes: 400)
            let name = try Self.snapshotNow(source, at: 0)
            let before = try Self.checksums("\(source)/snapshots/web/\(name)")
            let sent = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(sent.status == .exited(1), "\(sent.output)")
            #expect(sent.output.contains("No space left") || sent.output.contains("ENOSPC"), "\(sent.output)")
            let left = try DirectoryEntries.names(in: try OwnedFD.open("\(target)/backup/web", O_RDONLY | O_DIRECTORY))
            #expect(left.isEmpty, "\(left)")
            #expect(try Self.checksums("\(source)/snapshots/web/\(name)") == before)
        }
    }

    /// Some snapshots sent and a later one not: exit 10 (partial), the sent ones kept and verified.
    @Test func aLaterSnapshotThatCannotBeSentMakesAPartialRun() throws {
        try Self.withStores { source, target in
            let first = try Self.snapshotNow(source, at: 0)
            let second = try Self.snapshotNow(source, at: 60)
            _ = try Command.check(["mkdir", "-p", "\(target)/backup/web"])
            _ = try Command.check(["btrfs", "-q", "subvolume", "create", "\(target)/backup/web/\(second)"])
            let sent = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(sent.status == .exited(10), "\(sent.output)")
            #expect(sent.output.contains("sent \(first) (full)") && sent.output.contains("failed to send \(second)"), "\(sent.output)")
            #expect(try Self.copy("\(target)/backup/web/\(first)").isReadOnly)
        }
    }

    @Test func somethingElseOfTheSameNameIsNeverOverwrittenOrDeleted() throws {
        try Self.withStores { source, target in
            let name = try Self.snapshotNow(source, at: 0)
            _ = try Command.check(["mkdir", "-p", "\(target)/backup/web"])
            _ = try Command.check(["btrfs", "-q", "subvolume", "create", "\(target)/backup/web/\(name)"])
            try OwnedFD.open("\(target)/backup/web/\(name)/theirs", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("keep".utf8))
            let sent = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(sent.status == .exited(1))
            #expect(sent.output.contains("is not a copy of this snapshot"), "\(sent.output)")
            let clean = try Self.snap(["clean", "--store", source, "--target", "\(target)/backup", "web"])
            #expect(clean.status == .exited(0) && clean.output.contains("nothing to clean"))
            #expect(access("\(target)/backup/web/\(name)/theirs", F_OK) == 0)
        }
    }

    @Test(arguments: ["/tmp", "relative/path", "ssh://-oProxyCommand=x/path", "ssh://host:99999/path", "ssh://host"])
    func targetsThatCannotBeUsedAreRefused(target: String) throws {
        try Self.withStores { source, _ in
            _ = try Self.snapshotNow(source, at: 0)
            let sent = try Self.snap(["send", "--store", source, "--to", target, "web"])
            #expect(sent.status != .exited(0))
            #expect(sent.output.contains(target == "/tmp" ? "not on btrfs" : "write /PATH or ssh://"), "\(sent.output)")
        }
    }

    @Test func aReadOnlyTargetIsRefused() throws {
        try Self.withStores { source, target in
            _ = try Self.snapshotNow(source, at: 0)
            _ = try Command.check(["mkdir", "-p", "\(target)/backup/web"])
            _ = try Command.check(["mount", "-o", "remount,ro", target])
            defer { _ = try? Command.check(["mount", "-o", "remount,rw", target]) }
            let sent = try Self.snap(["send", "--store", source, "--to", "\(target)/backup", "web"])
            #expect(sent.status == .exited(1) && sent.output.contains("read-only"), "\(sent.output)")
        }
    }

    /// A second "host": sshd from Debian in a network namespace of its own, reached over a veth,
    /// with keys made for the test; its `replica-snap` is this build's (its sessions' PATH).
    /// Each of `restricted` (alias → folder) is a host alias whose key of its own is restricted in
    /// `authorized_keys` to `replica-snap serve --root FOLDER`.
    static func withSSHHost<T>(restricted: [(alias: String, root: String)] = [],
                               _ body: (_ sshCommand: String, _ host: String) throws -> T) throws -> T {
        try withTemporaryDirectory { dir in
            let tag = getpid() % 250
            let namespace = "replica-ssh-\(getpid())", link = "rssh\(getpid() % 100_000)"
            let (hostAddress, remoteAddress) = ("10.251.\(tag).1", "10.251.\(tag).2")
            _ = try Command.check(["ip", "netns", "add", namespace])
            defer { _ = try? Command.run(["ip", "netns", "del", namespace]) }
            _ = try Command.check(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace])
            _ = try Command.check(["ip", "addr", "add", "\(hostAddress)/30", "dev", link])
            _ = try Command.check(["ip", "link", "set", link, "up"])
            _ = try Command.check(["ip", "-n", namespace, "addr", "add", "\(remoteAddress)/30", "dev", "eth0"])
            _ = try Command.check(["ip", "-n", namespace, "link", "set", "eth0", "up"])
            _ = try Command.check(["ip", "-n", namespace, "link", "set", "lo", "up"])
            for key in ["host_key", "client_key"] + restricted.map({ "\($0.alias)_key" }) {
                _ = try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "\(dir)/\(key)"])
            }
            var authorized = try Command.check(["cat", "\(dir)/client_key.pub"])
            for (alias, root) in restricted {
                authorized += "command=\"replica-snap serve --root \(root)\",restrict " + (try Command.check(["cat", "\(dir)/\(alias)_key.pub"]))
            }
            try OwnedFD.open("\(dir)/authorized_keys", O_WRONLY | O_CREAT, mode: 0o600).writeAll(Array(authorized.utf8))
            let tools = String(try builtTool("replica-snap").dropLast("/replica-snap".count))
            let sshd = """
                ListenAddress \(remoteAddress)
                Port 2222
                HostKey \(dir)/host_key
                AuthorizedKeysFile \(dir)/authorized_keys
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                UsePAM no
                StrictModes no
                PidFile \(dir)/sshd.pid
                SetEnv PATH=\(tools):/usr/sbin:/usr/bin:/sbin:/bin
                """
            try OwnedFD.open("\(dir)/sshd_config", O_WRONLY | O_CREAT, mode: 0o600).writeAll(Array(sshd.utf8))
            let client = """
                Host remote
                  HostName \(remoteAddress)
                  Port 2222
                  User root
                  IdentityFile \(dir)/client_key
                  IdentitiesOnly yes
                  UserKnownHostsFile \(dir)/known_hosts
                  StrictHostKeyChecking accept-new
                  ConnectTimeout 5
                """ + restricted.map { alias, _ in
                    """

                    Host \(alias)
                      HostName \(remoteAddress)
                      Port 2222
                      User root
                      IdentityFile \(dir)/\(alias)_key
                      IdentitiesOnly yes
                      UserKnownHostsFile \(dir)/known_hosts
                      StrictHostKeyChecking accept-new
                      ConnectTimeout 5
                    """
                }.joined()
            try OwnedFD.open("\(dir)/ssh_config", O_WRONLY | O_CREAT, mode: 0o600).writeAll(Array(client.utf8))
            _ = try Command.check(["mkdir", "-p", "/run/sshd"])  // sshd's privilege separation folder, as its package makes it
            let server = try Command.spawn(["ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-D", "-e", "-f", "\(dir)/sshd_config"],
                                           output: nil)
            defer { kill(server, SIGTERM); _ = try? ExitStatus.wait(for: server) }
            let ssh = "ssh -F \(dir)/ssh_config"
            for _ in 0..<100 {
                if try Command.run(["sh", "-c", "\(ssh) remote true"]).status == .exited(0) { break }
                usleep(50_000)
            }
            return try body(ssh, "remote")
        }
    }

    @Test func overSSHToAHostInItsOwnNetworkNamespace() throws {
        try Self.withStores { source, target in
            try Self.withSSHHost { ssh, host in
                try Self.write("\(source)/web/a", megabytes: 10)
                let first = try Self.snapshotNow(source, at: 0)
                let send = { () throws -> CommandResult in
                    try Command.run(["env", "REPLICA_SSH=\(ssh)", try builtTool("replica-snap"), "send", "--store", source,
                                     "--to", "ssh://\(host)\(target)/backup", "web"])
                }
                let full = try send()
                #expect(full.status == .exited(0) && full.output.contains("sent \(first) (full)"), "\(full.output)")
                try Self.write("\(source)/web/b", megabytes: 2)
                let second = try Self.snapshotNow(source, at: 60)
                let incremental = try send()
                #expect(incremental.output.contains("sent \(second) (incremental from \(first))"), "\(incremental.output)")
                for name in [first, second] {
                    #expect(try Self.copy("\(target)/backup/web/\(name)").receivedUUID == Self.copy("\(source)/snapshots/web/\(name)").uuid)
                    #expect(try Self.checksums("\(target)/backup/web/\(name)") == Self.checksums("\(source)/snapshots/web/\(name)"))
                }
                let unreachable = try Command.run(["env", "REPLICA_SSH=\(ssh)", try builtTool("replica-snap"), "send", "--store", source,
                                                   "--to", "ssh://\(host):2299\(target)/backup", "web"])
                #expect(unreachable.status == .exited(1) && unreachable.output.contains("ssh could not reach the host"), "\(unreachable.output)")
            }
        }
    }
}

/// `replica-snap serve --root DIR` as the forced command of a sender's key, over ssh to a host in a
/// namespace of its own: the key reaches its own folder and nothing else.
@Suite(.requiresBtrfs, .serialized) struct RestrictedKeyTests {
    @Test func aKeyRestrictedToOneFolderCannotReceiveListCleanOrDeleteInAnotherNorRunAnything() throws {
        try ReplicationTests.withStores { source, target in
            let (rootA, rootB) = ("\(target)/hostA", "\(target)/hostB")
            _ = try Command.check(["mkdir", rootA, rootB])  // the operator's part, with the authorized_keys lines
            try ReplicationTests.withSSHHost(restricted: [("sender-a", rootA), ("sender-b", rootB)]) { ssh, _ in
                let send = { (alias: String, root: String) throws -> CommandResult in
                    try Command.run(["env", "REPLICA_SSH=\(ssh)", try builtTool("replica-snap"), "send", "--store", source, "--to", "ssh://\(alias)\(root)", "web"])
                }
                try ReplicationTests.write("\(source)/web/a", megabytes: 2)
                let first = try ReplicationTests.snapshotNow(source, at: 0)
                for (alias, root) in [("sender-a", rootA), ("sender-b", rootB)] {
                    let sent = try send(alias, root)
                    #expect(sent.status == .exited(0) && sent.output.contains("sent \(first) (full)"), "\(alias): \(sent.output)")
                }
                try ReplicationTests.write("\(source)/web/b", megabytes: 1)
                let second = try ReplicationTests.snapshotNow(source, at: 60)
                let incremental = try send("sender-a", rootA)
                #expect(incremental.output.contains("sent \(second) (incremental from \(first))"), "\(incremental.output)")
                try ReplicationTests.expectBtrbkPairs(source: source, copies: "\(rootA)/web", [first, second])

                // Key A against B's folder: the sender's own send, then each request by hand.
                let intoB = try send("sender-a", rootB)
                #expect(intoB.status == .exited(1) && intoB.output.contains("is outside \(rootA)"), "\(intoB.output)")
                let copyB = try ReplicationTests.copy("\(rootB)/web/\(first)")
                let listing = { () throws -> String in try Command.check(["sh", "-c", "find '\(rootB)' | sort"]) }
                let before = try listing()
                let outside = "the only folder this key may use", only = "this key runs replica-snap receive only"
                let snapshot = "\(source)/snapshots/web/\(second)"
                let uuid = try ReplicationTests.copy(snapshot).uuid
                for (request, rule) in [
                    ("\(ssh) sender-a replica-snap receive --json --list \(rootB)/web", outside),
                    ("\(ssh) sender-a replica-snap receive --json --list-only \(rootB)/web", outside),
                    ("\(ssh) sender-a replica-snap receive --json --delete \(first):\(copyB.id) \(rootB)/web", outside),
                    ("btrfs send -q \(snapshot) | \(ssh) sender-a replica-snap receive --json --name \(second) --uuid \(uuid) \(rootB)/web", outside),
                    ("\(ssh) sender-a replica-snap receive --json --list \(rootA)/../hostB/web", "without . or .."),
                    ("\(ssh) sender-a \"replica-snap receive --list '\(rootA)/web'; rm -rf \(rootB)\"", "outside quotes"),
                    ("\(ssh) sender-a id", only),
                    ("\(ssh) sender-a sh -c id", only),
                    ("\(ssh) sender-a cat /etc/shadow", only),
                    ("\(ssh) -T sender-a < /dev/null", "SSH_ORIGINAL_COMMAND is unset"),
                ] {
                    let result = try Command.run(["sh", "-c", request])
                    #expect(result.status == .exited(1) && result.output.contains(rule), "\(request): \(result.output)")
                }
                #expect(try listing() == before, "B's folder is as it was")
                // The control: B's own key lists and deletes there.
                let own = try Command.run(["sh", "-c", "\(ssh) sender-b replica-snap receive --json --delete \(first):\(copyB.id) \(rootB)/web"])
                #expect(own.status == .exited(0) && own.output.contains(first), "\(own.output)")
            }
        }
    }
}

/// The receiving side's requests, without privileges: what a sender names is read exactly, and a
/// folder that is not on btrfs is refused before anything is made in it.
@Suite struct ReceiveRequestTests {
    @Test func aDeletionRequestSplitsAtTheLastColon() throws {
        let copy = try #require(TargetCopy(deletionRequest: "a:b.20261122T023000Z:261"))
        #expect(copy.name == "a:b.20261122T023000Z" && copy.id == 261)
        #expect(TargetCopy(name: copy.name, id: 261, receivedUUID: nil, readOnly: true).deletionRequest == "a:b.20261122T023000Z:261")
        for bad in ["web", "web:", ":261", "web:x", "web:-1"] { #expect(TargetCopy(deletionRequest: bad) == nil, "\(bad)") }
    }

    @Test func theSendersQuotingIsReadBackWordForWord() throws {
        let words = ["replica-snap", "receive", "--name", "it's a \"name\" \\ $HOME `x` ;|&", "/srv/backup/a b"]
        #expect(try RemoteCommand.split(RemoteCommand.quote(words)) == words)
        #expect(try RemoteCommand.split(#"replica-snap receive --list "/srv/x y" /a\ b"#) == ["replica-snap", "receive", "--list", "/srv/x y", "/a b"])
        for hostile in ["replica-snap receive --list /x; id", "replica-snap receive $(id)", "replica-snap receive `id`", "a | b", "a > /etc/x",
                        "replica-snap receive /x*", "a 'b", "a \"$(id)\"", "a\nb"] {
            #expect(throws: ReplicaError.self, "\(hostile)") { try RemoteCommand.split(hostile) }
        }
    }

    @Test func aKeysFolderHoldsOnlyWhatLiesBeneathIt() throws {
        try withTemporaryDirectory { dir in
            let root = try FolderRoot.beneath("\(dir)/a")
            func refusal(_ path: String) -> String {
                do { _ = try Receiver.openFolder(path, in: root); return "opened" } catch { return error.description }
            }
            for path in ["\(dir)/ab/web", dir, "/etc", "\(dir)/a/../b/web", "a/web"] {
                let why = refusal(path)
                #expect(why.contains("is outside \(dir)/a") || why.contains("without . or .."), "\(path): \(why)")
            }
            _ = try Command.check(["mkdir", "-p", "\(dir)/a", "\(dir)/b"])
            #expect(symlink("\(dir)/b", "\(dir)/a/link") == 0)
            #expect(refusal("\(dir)/a/link/web").contains("only folders are followed"))
            #expect(try Command.check(["find", "\(dir)/b"]) == "\(dir)/b\n", "nothing was made through the link")
        }
    }

    @Test func listingAFolderNotOnBtrfsMakesNothing() throws {
        try withTemporaryDirectory { dir in
            guard try OwnedFD.open(dir, O_RDONLY | O_DIRECTORY).filesystemType() != FilesystemMagic.btrfs else {
                print("skipped: the temporary folder is on btrfs here"); return
            }
            let result = try Command.run([try builtTool("replica-snap"), "receive", "--list", "\(dir)/new/folder"])
            #expect(result.status == .exited(1) && result.output.contains("not on btrfs"), "\(result.output)")
            #expect(access("\(dir)/new", F_OK) != 0, "nothing was made before the refusal")
        }
    }
}
