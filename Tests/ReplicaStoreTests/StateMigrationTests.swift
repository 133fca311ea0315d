import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

@Suite(.requiresBtrfs) struct StateMigrationTests {
    /// A state directory with what services keep: nested directories with their own modes and owners,
    /// files of several sizes, a symlink, a hard link pair, a FIFO and a socket-free device node.
    static func makeState(_ dir: String, files: Int = 20, step: Int = 4099) throws {
        mkdir(dir, 0o750)
        mkdir("\(dir)/db", 0o700)
        mkdir("\(dir)/db/wal", 0o755)
        for i in 0..<files {
            var bytes = [UInt8](repeating: 0, count: 1 + i * step)
            for j in bytes.indices { bytes[j] = UInt8(truncatingIfNeeded: i &* 31 &+ j &* 7) }
            try OwnedFD.open("\(dir)/db/page-\(i)", O_WRONLY | O_CREAT, mode: 0o640).writeAll(bytes)
        }
        try OwnedFD.open("\(dir)/db/wal/0001", O_WRONLY | O_CREAT, mode: 0o600).writeAll(Array("log\n".utf8))
        chown("\(dir)/db/wal/0001", 1234, 5678)
        symlink("db/page-1", "\(dir)/latest")
        symlink("/etc/shadow", "\(dir)/dangerous-link")
        link("\(dir)/db/page-2", "\(dir)/page-2-again")
        mkfifo("\(dir)/control", 0o600)
        mknod("\(dir)/null", S_IFCHR | 0o666, makedev(1, 3))
    }

    static func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t { dev_t((major << 8) | minor) }

    /// Independent of the code under test: a listing of every entry's type, mode, owner and link
    /// target from find(1), with link count and size for non-directories (directories report
    /// filesystem-specific sizes and link counts: ext4 and btrfs differ).
    static func describe(_ dir: String) throws -> String {
        try Command.check(["sh", "-c", "cd '\(dir)' && { find . -type d -printf '%p %y %m %u:%g\\n'; "
                           + "find . ! -type d -printf '%p %y %m %u:%g %n %s %l\\n'; } | sort"])
    }

    /// diff(1) of contents without following links; FIFOs and device nodes are left to `describe`
    /// (diff calls any two FIFOs different).
    static func sameContents(_ a: String, _ b: String) throws -> Bool {
        try Command.run(["diff", "-r", "--no-dereference", "-x", "control", "-x", "null", a, b]).status == .exited(0)
    }

    static func checksums(_ dir: String) throws -> String {
        try Command.check(["sh", "-c", "cd '\(dir)' && find . -type f -print0 | sort -z | xargs -0 sha256sum"])
    }

    @Test func migratesEverythingAndVerifiesIt() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let state = "\(dir)/var/lib/web"
                try createDirectories("\(dir)/var/lib")
                try Self.makeState(state)
                let before = try Self.checksums(state)
                let store = try Store(path: image.mountPoint)
                let outcome = try StateMigration.shift("web", from: state, in: store)
                guard case .migrated(let files, _, _) = outcome else { Issue.record("\(outcome)"); return }
                #expect(files == 21, "20 pages and the WAL file; the hard-linked second name is a link, not a copy")
                let copy = "\(image.mountPoint)/web"
                #expect(try Self.describe(copy) == Self.describe(state))
                #expect(try Self.sameContents(state, copy))
                #expect(try Self.checksums(state) == before, "the original is untouched")
                #expect(try Btrfs.isSubvolume(store.directory("web")))
                #expect(try StateMigration.shift("web", from: state, in: store) == .alreadyShifted)
            }
        }
    }

    @Test func reflinksWhenTheStateIsAlreadyOnTheStoresFilesystem() throws {
        try withBtrfsImage { image in
            let state = "\(image.mountPoint)/legacy-web"
            try Self.makeState(state, files: 5)
            guard case .migrated(_, _, let reflinked) = try StateMigration.shift("web", from: state, in: Store(path: image.mountPoint)) else {
                Issue.record("not migrated"); return
            }
            #expect(reflinked == 6)
        }
    }

    @Test func noStateDirectoryMeansAnEmptySubvolume() throws {
        try withBtrfsImage { image in
            let store = try Store(path: image.mountPoint)
            #expect(try StateMigration.shift("web", from: "/nonexistent/replica-web", in: store) == .createdEmpty)
            #expect(try DirectoryEntries.names(in: store.directory("web")).isEmpty)
        }
    }

    @Test(arguments: ["/etc/shadow", "/"])
    func aSymlinkedStatePathIsRefusedAndNothingChanges(linkTarget: String) throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                symlink(linkTarget, "\(dir)/web")
                mkdir("\(dir)/real", 0o755)
                symlink("\(dir)/real", "\(dir)/lib")  // a symlinked parent too
                let store = try Store(path: image.mountPoint)
                for path in ["\(dir)/web", "\(dir)/lib/web"] {
                    let error = #expect(throws: ReplicaError.self) { _ = try StateMigration.shift("web", from: path, in: store) }
                    #expect(error?.errno == .ELOOP, "\(path)")
                    #expect(error?.hint?.contains("symlink") == true)
                }
                #expect(try DirectoryEntries.names(in: OwnedFD.open(image.mountPoint, O_RDONLY)).isEmpty)
            }
        }
    }

    /// What `cp -a` keeps and more: POSIX ACLs (access and default), user and trusted attributes,
    /// file capabilities (also on symlinks where the filesystem allows), and the immutable,
    /// append-only and no-dump flags, on a hard-linked file too. Checked with getfattr, getcap and
    /// lsattr, and from a denied group's side: the ACL still refuses it on the copy, while the
    /// same mode without the ACL (the control) lets it write.
    @Test func keepsExtendedAttributesACLsCapabilitiesAndFlags() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let state = "\(dir)/web"
                let copy = "\(image.mountPoint)/web"
                defer { _ = try? Command.run(["chattr", "-R", "-i", "-a", state, copy]) }
                let setup = """
                    set -e; mkdir -m 755 \(state) \(state)/shared; cd \(state)
                    echo secret > acl-file; chmod 666 acl-file; setfacl -m g:nogroup:--- acl-file
                    echo open > plain-file; chmod 666 plain-file
                    setfacl -d -m g:nogroup:rwx shared
                    echo x > attrs; setfattr -n user.app.checksum -v abc attrs; setfattr -n trusted.app.note -v t attrs
                    cp /bin/true ping; setcap cap_net_raw+ep ping
                    ln -s ping link; setfattr -h -n trusted.link -v 1 link
                    echo old > frozen; ln frozen frozen-again; chattr +i frozen
                    echo log > journal; chattr +a journal; echo d > nodump; chattr +d nodump
                    """
                _ = try Command.check(["sh", "-c", setup])
                let dump = { (path: String) throws -> String in
                    try Command.check(["sh", "-c", "cd \(path) && find . -mindepth 1 | sort | xargs getfattr -h -d -m -; getcap -r . | sort"])
                }
                let before = try dump(state)
                let outcome = try StateMigration.shift("web", from: state, in: Store(path: image.mountPoint))
                guard case .migrated = outcome else { Issue.record("\(outcome)"); return }
                let after = try dump(copy)
                #expect(after == before, "getfattr and getcap the same:\n\(before)\n---\n\(after)")
                for needle in ["trusted.app.note", "system.posix_acl_access", "system.posix_acl_default", "security.capability", "trusted.link"] {
                    #expect(after.contains(needle), "\(needle) is among what was compared")
                }
                for (file, flag) in [("frozen", "i"), ("frozen-again", "i"), ("journal", "a"), ("nodump", "d")] {
                    let flags = try Command.check(["lsattr", "-d", "\(copy)/\(file)"]).split(separator: " ").first ?? ""
                    #expect(flags.contains(flag), "\(file): \(flags)")
                }
                // The denied group must reach the copy: the image's folder opened for traversal.
                let folder = String(image.mountPoint.prefix(upTo: image.mountPoint.lastIndex(of: "/")!))
                chmod(folder, 0o711)
                let write = { (file: String) throws -> Bool in
                    try Command.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "echo x >> \(file)"]).status.isSuccess
                }
                #expect(!(try write("\(copy)/acl-file")), "the group the ACL denies still cannot write the copy")
                #expect(try write("\(copy)/plain-file"), "the control: the same mode without the ACL lets it write")
            }
        }
    }

    /// An attribute only Replica records, planted in the state by its service, and an immutable
    /// state directory: refused, naming it; nothing is left on the store.
    @Test(arguments: [("setfattr -n user.replica.lineage -v x", "user.replica.lineage"), ("chattr +i", "immutable or append-only")])
    func whatCannotBeKeptIsRefused(command: String, named: String) throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let state = "\(dir)/web"
                defer { _ = try? Command.run(["chattr", "-i", state]) }
                _ = try Command.check(["sh", "-c", "mkdir \(state) && echo x > \(state)/f && \(command) \(state)"])
                let error = #expect(throws: ReplicaError.self) { _ = try StateMigration.shift("web", from: state, in: Store(path: image.mountPoint)) }
                #expect(error?.hint?.contains(named) == true, "\(String(describing: error))")
                #expect(try DirectoryEntries.names(in: OwnedFD.open(image.mountPoint, O_RDONLY)).isEmpty, "nothing left on the store")
            }
        }
    }

    /// Another store mounted where the state path is: its content would be copied while the mount
    /// stays. Refused, nothing made; the control is the same data in a plain directory.
    @Test func aMountPointAsStatePathIsRefused() throws {
        try withBtrfsImage { image in
            try withBtrfsImage { other in
                try Self.makeState("\(other.mountPoint)/data", files: 2)
                let store = try Store(path: image.mountPoint)
                let error = #expect(throws: ReplicaError.self) { _ = try StateMigration.shift("web", from: other.mountPoint, in: store) }
                #expect(error?.errno == .EBUSY && error?.hint?.contains("is a mount point (btrfs") == true, "\(String(describing: error))")
                #expect(try DirectoryEntries.names(in: OwnedFD.open(image.mountPoint, O_RDONLY)).isEmpty, "nothing made")
                #expect(try StateMigration.shift("web", from: "\(other.mountPoint)/data", in: store) != .createdEmpty, "the control")
            }
        }
    }

    /// Killed with SIGKILL at points spread over copy, verify and switch: every next run either
    /// finishes the migration or finds it done; the copy always equals the original, which never
    /// changes, and no partial copy is left.
    @Test func killedAtAnyPointTheNextRunRecovers() throws {
        try withBtrfsImage(size: 512 << 20) { image in
            try withTemporaryDirectory { dir in
                let state = "\(dir)/web"
                try Self.makeState(state, files: 300, step: 131)
                let before = try Self.checksums(state), listing = try Self.describe(state)
                var outcomes: [String: Int] = [:]
                for round in 0..<16 {
                    let name = "web\(round)"
                    let delay = useconds_t(round * 2_500)
                    let pid = fork()
                    if pid == 0 {
                        let store = try? Store(path: image.mountPoint)
                        if let store { _ = try? StateMigration.shift(name, from: state, in: store) }
                        _exit(0)
                    }
                    usleep(delay)
                    kill(pid, SIGKILL)
                    let status = try ExitStatus.wait(for: pid)
                    let store = try Store(path: image.mountPoint)
                    let outcome = try StateMigration.shift(name, from: state, in: store)
                    outcomes["\(status == .signaled(9) ? "killed" : "finished")/\(outcome == .alreadyShifted ? "done" : "redone")", default: 0] += 1
                    #expect(try Self.describe("\(image.mountPoint)/\(name)") == listing, "round \(round)")
                    #expect(try Self.checksums("\(image.mountPoint)/\(name)") == before, "round \(round)")
                    #expect((try? store.directory(StateMigration.stagingName(name))) == nil, "round \(round): partial copy left")
                    try Btrfs.deleteSubvolume(in: store.directory("."), named: name, parentPath: image.mountPoint)
                }
                #expect(try Self.checksums(state) == before, "the original never changed")
                #expect(outcomes["killed/redone", default: 0] > 0, "some kills must land mid-migration: \(outcomes)")
            }
        }
    }
}

@Suite(.requiresBtrfs) struct StoreRefusalTests {
    @Test func aReadOnlyStoreIsRefusedWithTheFix() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                try StateMigrationTests.makeState("\(dir)/web", files: 3)
                try Command.check(["mount", "-o", "remount,ro", image.mountPoint])
                defer { _ = try? Command.run(["mount", "-o", "remount,rw", image.mountPoint]) }
                let store = try Store(path: image.mountPoint)
                let error = #expect(throws: ReplicaError.self) { _ = try StateMigration.shift("web", from: "\(dir)/web", in: store) }
                #expect(error?.errno == .EROFS && error?.hint?.contains("remount,rw") == true, "\(String(describing: error))")
                #expect(try DirectoryEntries.names(in: OwnedFD.open(image.mountPoint, O_RDONLY)).isEmpty)
            }
        }
    }

    @Test func aStoreTooFullForTheStateIsRefusedBeforeCopying() throws {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                let store = try Store(path: image.mountPoint)
                // Leave about 8 MiB free on the store, then ask it to take 24 MiB of state.
                let free = try store.space().available
                try Command.check(["fallocate", "-l", String(free - (8 << 20)), "\(image.mountPoint)/filler"])
                mkdir("\(dir)/web", 0o755)
                try OwnedFD.open("\(dir)/web/data", O_WRONLY | O_CREAT, mode: 0o600)
                    .writeAll([UInt8](repeating: 0x5a, count: 24 << 20))
                let error = #expect(throws: ReplicaError.self) { _ = try StateMigration.shift("web", from: "\(dir)/web", in: store) }
                #expect(error?.errno == .ENOSPC && error?.hint?.contains("nothing was copied") == true, "\(String(describing: error))")
                #expect(try DirectoryEntries.names(in: OwnedFD.open(image.mountPoint, O_RDONLY)) == ["filler"])
            }
        }
    }

    @Test func aMissingOrNonBtrfsStoreStopsReplicaShift() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/profiles", 0o755)
            mkdir("\(dir)/var", 0o755)
            mkdir("\(dir)/plain", 0o755)
            for (store, reason) in [("\(dir)/missing", "No such file or directory"), ("\(dir)/plain", "not a btrfs filesystem")] {
                try OwnedFD.open("\(dir)/profiles/web.service.conf", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
                    .writeAll(Array("[State]\nPath=\(dir)/var\nStore=\(store)\n".utf8))
                let result = try Command.run([try builtTool("replica-shift"), "prepare", "--profiles", "\(dir)/profiles", "web"])
                #expect(result.status == .exited(1) && result.output.contains(reason), "\(result.output)")
            }
        }
    }
}
