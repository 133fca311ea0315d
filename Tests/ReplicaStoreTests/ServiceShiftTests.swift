import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// replica-shift and replica-run together, from one profile, as an operator would use them outside
/// systemd (Nomad: replica-shift prepare as a prestart task, replica-run as the task).
@Suite(.requiresBtrfs) struct ServiceShiftTests {
    static func tool(_ name: String, _ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool(name)] + arguments)
    }

    static func write(_ path: String, _ text: String) throws {
        try OwnedFD.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(text.utf8))
    }

    @Test func oneProfilePreparesAndRunsTheService() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let store = image.mountPoint
                try createDirectories("\(dir)/var/lib/web")
                try createDirectories("\(dir)/etc")
                try createDirectories("\(dir)/profiles")
                try Self.write("\(dir)/var/lib/web/counter", "41\n")
                try Self.write("\(dir)/etc/app.conf", "packaged\n")
                let config = ConfigStore(directory: "\(dir)/config")
                try config.switchTo(try config.writeGeneration(["\(dir)/etc/app.conf": Array("generation 1\n".utf8)]))
                try Self.write("\(dir)/profiles/web.service.conf", """
                    [State]
                    Path=\(dir)/var/lib/web
                    Store=\(store)
                    SnapshotOnStart=yes
                    [Config]
                    Directory=\(dir)/config
                    [Sandbox]
                    ProtectSystem=strict
                    [Snapshots]
                    Preserve=1d
                    """)
                let profiles = ["--profiles", "\(dir)/profiles"]

                // Before prepare the state subvolume is missing: replica-run refuses and runs nothing.
                let early = try Self.tool("replica-run", profiles + ["web", "--", "touch", "\(dir)/ran"])
                #expect(early.status == .exited(1) && early.output.contains("\(store)/web"), "\(early.output)")
                #expect(access("\(dir)/ran", F_OK) == -1)

                let first = try Self.tool("replica-shift", ["prepare"] + profiles + ["web"])
                #expect(first.status == .exited(0), "\(first.output)")
                #expect(first.output.contains("migrated to subvolume web (1 files"), "\(first.output)")
                let second = try Self.tool("replica-shift", ["prepare"] + profiles + ["web"])
                #expect(second.status == .exited(0), "a restart, even within the same second, must not fail: \(second.output)")
                #expect(!second.output.contains("migrated") && second.output.contains("snapshot"), "\(second.output)")

                let script = """
                    stat -f -c %T \(dir)/var/lib/web
                    cat \(dir)/var/lib/web/counter
                    echo 42 > \(dir)/var/lib/web/counter && echo state-rw
                    cat \(dir)/etc/app.conf
                    { echo x > \(dir)/etc/app.conf; } 2>/dev/null || echo config-ro
                    touch /probe 2>/dev/null || echo root-ro
                    """
                let run = try Self.tool("replica-run", profiles + ["web", "--", "sh", "-c", script])
                #expect(run.status == .exited(0), "\(run.output)")
                #expect(run.output == "btrfs\n41\nstate-rw\ngeneration 1\nconfig-ro\nroot-ro\n")
                // The write went to the subvolume; the original directory is kept as it was, moved aside.
                #expect(String(decoding: try OwnedFD.open("\(store)/web/counter", O_RDONLY).readAll(), as: UTF8.self) == "42\n")
                let aside = try DirectoryEntries.names(in: OwnedFD.open("\(dir)/var/lib", O_RDONLY)).filter { $0.hasPrefix("web.replica-original.") }
                #expect(aside.count == 1 && first.output.contains("the original is kept at \(dir)/var/lib/\(aside.first ?? "")"), "\(first.output)")
                #expect(String(decoding: try OwnedFD.open("\(dir)/var/lib/\(aside.first ?? "")/counter", O_RDONLY).readAll(), as: UTF8.self) == "41\n")
                #expect(try Store(path: store).snapshots(of: "web").count >= 1)
            }
        }
    }

    /// After the migration the state path is a placeholder: a start without Replica (its profile
    /// removed: the command run as it is, as root) can neither read stale state nor write new
    /// state there, where before it ran on the kept original. The control: the original, moved
    /// aside, still reads. A placeholder whose subvolume has gone is refused, not copied.
    @Test func noStartWithoutReplicaRunsOnTheOldState() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let state = "\(dir)/web"
                try createDirectories(state)
                try Self.write("\(state)/counter", "41\n")
                try createDirectories("\(dir)/profiles")
                try Self.write("\(dir)/profiles/web.service.conf", "[State]\nPath=\(state)\nStore=\(image.mountPoint)\n")
                let prepared = try Self.tool("replica-shift", ["prepare", "--profiles", "\(dir)/profiles", "web"])
                #expect(prepared.status == .exited(0) && prepared.output.contains("an immutable placeholder"), "\(prepared.output)")
                let unsandboxed = try Command.run(["sh", "-c", "cat \(state)/counter; echo 42 > \(state)/counter"])
                // A line "41" would be the stale counter read (the random folder's name may hold "41" too).
                #expect(!unsandboxed.status.isSuccess && !unsandboxed.output.split(separator: "\n").contains("41"), "\(unsandboxed.output)")
                #expect(try Command.check(["lsattr", "-d", state]).hasPrefix("----i"), "immutable")
                #expect(try Command.check(["cat", "\(state)/README.replica"]).contains("subvolume\nweb of \(image.mountPoint)"))
                let aside = try Command.check(["sh", "-c", "cat \(state).replica-original.*/counter"])
                #expect(aside == "41\n", "the control: the original, moved aside")
                let again = try Self.tool("replica-shift", ["prepare", "--profiles", "\(dir)/profiles", "web"])
                #expect(again.status == .exited(0) && again.output.isEmpty, "a second prepare changes nothing: \(again.output)")

                _ = try Command.check(["btrfs", "subvolume", "delete", "\(image.mountPoint)/web"])
                let gone = try Self.tool("replica-shift", ["prepare", "--profiles", "\(dir)/profiles", "web"])
                #expect(gone.status != .exited(0) && gone.output.contains("is the placeholder Replica left"), "\(gone.output)")
                #expect(access("\(image.mountPoint)/web", F_OK) != 0, "nothing made from the placeholder")
            }
        }
    }

    /// A run killed after the subvolume appeared but before the original was moved: the next
    /// prepare moves it aside; an empty directory at the path is simply replaced.
    @Test func anOriginalLeftAtItsPathIsMovedAsideLater() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                try createDirectories("\(dir)/web")
                try Self.write("\(dir)/web/data", "v1\n")
                let store = try Store(path: image.mountPoint)
                _ = try StateMigration.shift("web", from: "\(dir)/web", in: store)
                let time = UTCTimestamp(secondsSinceEpoch: 1_800_000_000)
                let outcome = try StatePlaceholder.seal("\(dir)/web", subvolume: "web", store: image.mountPoint, at: time)
                #expect(outcome == .movedAside("\(dir)/web.replica-original.20270115T080000Z"))
                #expect(try Command.check(["cat", "\(dir)/web.replica-original.20270115T080000Z/data"]) == "v1\n")
                #expect(try StatePlaceholder.seal("\(dir)/web", subvolume: "web", store: image.mountPoint, at: time) == .kept)
                try createDirectories("\(dir)/empty")
                #expect(try StatePlaceholder.seal("\(dir)/empty", subvolume: "e", store: image.mountPoint, at: time) == .made)
                symlink("/etc", "\(dir)/link")
                let error = #expect(throws: ReplicaError.self) {
                    _ = try StatePlaceholder.seal("\(dir)/link", subvolume: "l", store: image.mountPoint, at: time)
                }
                #expect(error?.hint?.contains("is not a directory") == true)
            }
        }
    }

    /// On overlayfs a directory of the lower layer cannot be renamed (EXDEV), as in a container's
    /// root: the original is copied aside whole, compared, and only then removed.
    @Test func anOriginalThatCannotBeRenamedIsCopiedAside() throws {
        try withTemporaryDirectory { dir in
            for folder in ["lower/web/sub", "upper", "work", "merged"] { try createDirectories("\(dir)/\(folder)") }
            try Self.write("\(dir)/lower/web/sub/data", "v1\n")
            _ = try Command.check(["mount", "-t", "overlay", "overlay", "-o",
                                   "lowerdir=\(dir)/lower,upperdir=\(dir)/upper,workdir=\(dir)/work", "\(dir)/merged"])
            defer { _ = try? Command.run(["umount", "\(dir)/merged"]) }
            let control = try Command.run(["python3", "-c", "import os; os.rename('\(dir)/merged/web', '\(dir)/merged/x')"])
            #expect(control.output.contains("Invalid cross-device link"), "the control: overlayfs refuses the rename: \(control.output)")
            let time = UTCTimestamp(secondsSinceEpoch: 1_800_000_000)
            let outcome = try StatePlaceholder.seal("\(dir)/merged/web", subvolume: "web", store: "/srv/store", at: time)
            #expect(outcome == .movedAside("\(dir)/merged/web.replica-original.20270115T080000Z"))
            #expect(try Command.check(["cat", "\(dir)/merged/web.replica-original.20270115T080000Z/sub/data"]) == "v1\n")
            #expect(try Command.check(["ls", "-A", "\(dir)/merged/web"]) == "README.replica\n", "the placeholder, nothing else")
            _ = try? Command.run(["chattr", "-i", "\(dir)/merged/web"])
        }
    }

    /// A state directory that does not exist yet becomes a subvolume the service's `User=` owns,
    /// as systemd makes a `StateDirectory=`: the service's own process (here under `replica-run`,
    /// as `nobody`) writes its state. The control, without `User=`: root's, as before.
    @Test func aNewStateSubvolumeBelongsToTheServicesUser() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                try createDirectories("\(dir)/profiles")
                chmod(dir, 0o755)  // nobody reaches the state path's parent
                for (unit, sandbox) in [("web", "[Sandbox]\nUser=nobody\nGroup=nogroup\n"), ("root", "")] {
                    try Self.write("\(dir)/profiles/\(unit).service.conf",
                                   "[State]\nPath=\(dir)/\(unit)-state\nStore=\(image.mountPoint)\n" + sandbox)
                    let prepared = try Self.tool("replica-shift", ["prepare", "--profiles", "\(dir)/profiles", unit])
                    #expect(prepared.status == .exited(0) && prepared.output.contains("new subvolume"), "\(prepared.output)")
                }
                var owned = stat(), control = stat()
                #expect(stat("\(image.mountPoint)/web", &owned) == 0 && stat("\(image.mountPoint)/root", &control) == 0)
                #expect(owned.st_uid == 65534 && owned.st_gid == 65534, "nobody:nogroup own it: \(owned.st_uid):\(owned.st_gid)")
                #expect(control.st_uid == 0 && control.st_gid == 0, "the control: no User=, root's")
                let wrote = try Self.tool("replica-run", ["--profiles", "\(dir)/profiles", "web", "--", "sh", "-c",
                                                          "id -un; echo v1 > \(dir)/web-state/data && echo wrote"])
                #expect(wrote.status == .exited(0) && wrote.output.contains("nobody") && wrote.output.contains("wrote"), "\(wrote.output)")
            }
        }
    }

    @Test func theDropInComesFromTheSameProfile() throws {
        try withTemporaryDirectory { dir in
            try createDirectories("\(dir)/profiles")
            let config = ConfigStore(directory: "\(dir)/config")
            try config.switchTo(try config.writeGeneration(["/etc/app.conf": Array("v1\n".utf8)]))
            try Self.write("\(dir)/profiles/web.service.conf", """
                [State]
                Path=/var/lib/web
                [Config]
                Directory=\(dir)/config
                [Sandbox]
                PrivateTmp=yes
                """)
            let result = try Self.tool("replica-shift", ["drop-in", "--profiles", "\(dir)/profiles", "web"])
            #expect(result.status == .exited(0))
            #expect(result.output == """
                # Generated by Replica from the profile of web.service (\(dir)/profiles/web.service.conf);
                # edit the profile, then systemctl daemon-reload.
                [Unit]
                Wants=replica-store.service
                After=replica-store.service
                RequiresMountsFor=/run/replica/store

                [Service]
                ExecStartPre=+/usr/bin/replica-shift prepare %n
                PrivateMounts=yes
                ProtectSystem=strict
                TemporaryFileSystem=/tmp:mode=1777,nosuid,nodev
                TemporaryFileSystem=/var/tmp:mode=1777,nosuid,nodev
                BindPaths=-/run/replica/store/web:/var/lib/web
                BindReadOnlyPaths=\(dir)/config/current/etc/app.conf:/etc/app.conf:norbind
                InaccessiblePaths=-/etc/replica
                InaccessiblePaths=-/run/replica
                InaccessiblePaths=-\(dir)/config
                InaccessiblePaths=-/var/lib/replica

                """)
            let missing = try Self.tool("replica-shift", ["prepare", "--profiles", "\(dir)/profiles", "db"])
            #expect(missing.status == .exited(6))
        }
    }
}

/// `replica-shift rollback UNIT SNAPSHOT` takes the snapshot's name as `replica-snap list` prints it
/// (one form in every doc and message); without privileges, the name alone decides.
@Suite struct RollbackNameTests {
    @Test func aListedNameOrTheBareTimeGivesTheMoment() throws {
        let time = try #require(UTCTimestamp(compact: "20261122T042415Z".utf8))
        let subvolumes = ["postgresql@15-main", "postgresql@15-main+var-log-postgresql"]
        for given in ["postgresql@15-main.20261122T042415Z", "postgresql@15-main+var-log-postgresql.20261122T042415Z",
                      "20261122T042415Z"] {
            #expect(try ServiceShift.rollbackTime(given, subvolumes: subvolumes, unit: "postgresql@15-main.service") == time)
        }
    }

    @Test(arguments: [
        ("web.20261122T042415Z", "web is not postgresql.service's state; its snapshots are named postgresql.YYYYMMDDTHHMMSSZ"),
        ("postgresql.2026-11-22", "not a snapshot name: give one as replica-snap list postgresql.service prints it"),
        ("", "not a snapshot name"),
    ])
    func anotherServicesSnapshotOrANonNameIsRefused(given: String, expected: String) {
        do {
            _ = try ServiceShift.rollbackTime(given, subvolumes: ["postgresql"], unit: "postgresql.service")
            Issue.record("\(given) was taken")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
        }
    }
}
