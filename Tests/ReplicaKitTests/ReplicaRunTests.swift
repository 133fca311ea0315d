import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

@Suite struct ProfileSandboxTests {
    static func plan(_ text: String) throws -> SandboxPlan {
        try SandboxPlan(profile: Profile(unit: "web.service", files: ["web.conf"], settings: ProfileParser.parse(text, file: "web.conf")))
    }

    @Test func readsSystemdStyleSandboxSettings() throws {
        let plan = try Self.plan("""
            [Sandbox]
            PrivateTmp=yes
            TemporaryFileSystem=/run/app:mode=0750,size=16M,noexec
            BindPaths=/srv/uploads:/var/lib/app/uploads "/srv/with space:/srv/x"
            BindReadOnlyPaths=-/etc/app/extra.conf::norbind
            InaccessiblePaths=/home /root
            InaccessiblePaths=
            InaccessiblePaths=/boot
            """)
        #expect(plan.protectSystem == .strict)
        #expect(plan.temporaryDirectories == [TemporaryDirectory("/tmp", mode: 0o1777), TemporaryDirectory("/var/tmp", mode: 0o1777),
                                              TemporaryDirectory("/run/app", mode: 0o750, size: 16 << 20, flags: [.noExec])])
        #expect(plan.binds == [Bind("/srv/uploads", to: "/var/lib/app/uploads", readOnly: false),
                               Bind("/srv/with space", to: "/srv/x", readOnly: false),
                               Bind("/etc/app/extra.conf", to: "/etc/app/extra.conf", readOnly: true, recursive: false, optional: true)])
        #expect(plan.inaccessiblePaths == ["/boot"], "an empty assignment resets the list")
    }

    @Test func readsTheDirectivesRealDaemonsNeed() throws {
        let plan = try Self.plan("""
            [Sandbox]
            ProtectSystem=full
            ProtectHome=read-only
            ReadWritePaths=/srv/spool -/srv/maybe
            ReadOnlyPaths=/srv/static
            RuntimeDirectory=nginx app/sockets
            LogsDirectory=nginx
            CacheDirectory=nginx
            """)
        #expect(plan.protectSystem == .full && plan.protectHome == .readOnly)
        #expect(plan.accessPaths == [AccessPath("/srv/spool", writable: true), AccessPath("/srv/maybe", writable: true, optional: true),
                                     AccessPath("/srv/static", writable: false)])
        #expect(plan.serviceDirectories.map(\.path) == ["/run/nginx", "/run/app/sockets", "/var/log/nginx", "/var/cache/nginx"])
        #expect(try Self.plan("[Sandbox]\nProtectSystem=yes\nProtectHome=true").protectSystem == .yes)
        #expect(try Self.plan("[Sandbox]\nProtectSystem=off\nProtectHome=yes").protectHome == .yes)
        #expect(try Self.plan("[Sandbox]\nProtectSystem=off").protectSystem == .no)
    }

    @Test(arguments: [
        ("[Sandbox]\nProtectSystem=read-only", 2, "ProtectSystem", "takes one of strict, full, yes"),
        ("[Sandbox]\nProtectHome=strict", 2, "ProtectHome", "takes one of read-only, tmpfs, yes"),
        ("[Sandbox]\nProtectHome=tmpfs", 2, "ProtectHome", "systemd issue 34825"),
        ("[Sandbox]\nRuntimeDirectory=/run/app", 2, "RuntimeDirectory", "is not a name relative to /run"),
        ("[Sandbox]\nLogsDirectory=app/../../etc", 2, "LogsDirectory", "no . or .. components"),
        ("[Sandbox]\nCacheDirectory=a:b", 2, "CacheDirectory", "is not a name relative to /var/cache"),
        ("[Sandbox]\nReadWritePaths=srv", 2, "ReadWritePaths", "is not an absolute path"),
        ("[Sandbox]\nReadOnlyPaths=+/srv", 2, "ReadOnlyPaths", "is not an absolute path"),
        ("[Sandbox]\nTemporaryFileSystem=/x:mode=999", 2, "TemporaryFileSystem", "is not mode=OCTAL"),
        ("[Sandbox]\nBindPaths=/a:/b:sideways", 2, "BindPaths", "is not rbind or norbind"),
        ("[Sandbox]\nBindPaths=\"/a:/b", 2, "BindPaths", "double quote is not closed"),
        ("[Sandbox]\nPrivateNetwork=yes", 2, "PrivateNetwork", "unknown key in [Sandbox]"),
    ])
    func errorsNameFileLineAndKey(text: String, line: Int, key: String, reason: String) {
        let error = #expect(throws: ProfileError.self) { _ = try Self.plan(text) }
        #expect(error?.location?.line == line && error?.location?.key == key, "\(String(describing: error))")
        #expect(error?.rule.contains(reason) == true, "\(String(describing: error))")
    }
}

/// replica-run as a script or Nomad runs it.
@Suite(.requiresRoot) struct ReplicaRunTests {
    static func run(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-run")] + arguments)
    }

    static func withProfile<T>(_ body: (_ dir: String, _ profiles: String) throws -> T) throws -> T {
        try withTemporaryDirectory { dir in
            for d in ["profiles", "state", "view", "view/scratch", "view/state", "view/secret"] { mkdir("\(dir)/\(d)", 0o755) }
            let text = """
                [Sandbox]
                ProtectSystem=strict
                TemporaryFileSystem=\(dir)/view/scratch:mode=1777
                BindPaths=\(dir)/state:\(dir)/view/state
                InaccessiblePaths=\(dir)/view/secret
                """
            try OwnedFD.open("\(dir)/profiles/web.service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(text.utf8))
            close(open("\(dir)/view/scratch/leftover", O_CREAT | O_WRONLY, 0o644))
            close(open("\(dir)/view/secret/key", O_CREAT | O_WRONLY, 0o644))
            return try body(dir, "\(dir)/profiles")
        }
    }

    @Test func theCommandSeesTheProfilesSandbox() throws {
        try Self.withProfile { (dir: String, profiles: String) throws in
            let script = """
                touch /probe 2>/dev/null && echo root-rw || echo root-ro
                touch /etc/probe 2>/dev/null && echo etc-rw || echo etc-ro
                ls -A \(dir)/view/scratch | wc -l
                touch \(dir)/view/scratch/x && echo scratch-rw
                echo data > \(dir)/view/state/written && echo state-rw
                ls -A \(dir)/view/secret | wc -l
                """
            let result = try Self.run(["--profiles", profiles, "web", "--", "sh", "-c", script])
            #expect(result.status == .exited(0), "\(result.output)")
            #expect(result.output == "root-ro\netc-ro\n0\nscratch-rw\nstate-rw\n0\n")
            #expect(access("\(dir)/state/written", F_OK) == 0)
        }
    }

    /// The table replica-run is started from stays identical after 100 runs, line for line.
    /// Compared inside a child with a private copy of the host's mount table, where the mounts other
    /// tests make in parallel never show up (the end-to-end suite checks the same in a container).
    @Test func theHostsMountTableIsByteIdenticalAfter100Runs() throws {
        try Self.withProfile { (_: String, profiles: String) throws in
            let tool = try builtTool("replica-run")
            let outcome = try ChildProcess.run(timeout: .seconds(120)) { () throws(ReplicaError) -> String in
                _ = try syscall("unshare(CLONE_NEWNS)") { replica_unshare(replica_CLONE_NEWNS) }
                _ = try syscall("mount(MS_PRIVATE)", "/") { mount(nil, "/", nil, UInt(MS_PRIVATE | MS_REC), nil) }
                let before = try OwnedFD.open("/proc/self/mountinfo", O_RDONLY).readAll()
                for run in 0..<100 {
                    let result = try Command.run([tool, "--profiles", profiles, "web", "--", "true"])
                    guard result.status == .exited(0) else { return "run \(run) failed: \(result.output)" }
                }
                let after = try OwnedFD.open("/proc/self/mountinfo", O_RDONLY).readAll()
                // Network namespace pins of other tests running in parallel can vanish even from this
                // private copy when their namespace is deleted; replica-run never pins one.
                let lines = { (bytes: [UInt8]) in
                    String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { !$0.contains(" /run/netns/") }
                }
                let (old, new) = (lines(before), lines(after))
                guard old != new else { return "identical" }
                return "changed: gone \(Set(old).subtracting(new).sorted()) new \(Set(new).subtracting(old).sorted())"
            }
            #expect(outcome == "identical")
        }
    }

    @Test func theCommandsExitStatusIsPassedThrough() throws {
        try Self.withProfile { (_: String, profiles: String) throws in
            #expect(try Self.run(["--profiles", profiles, "web", "--", "sh", "-c", "exit 7"]).status == .exited(7))
        }
    }

    @Test func nothingRunsWhenTheSandboxCannotBeMade() throws {
        try Self.withProfile { (dir: String, profiles: String) throws in
            let marker = "\(dir)/ran"
            // Not configured: exit 6.
            let missing = try Self.run(["--profiles", profiles, "nothing", "--", "touch", marker])
            #expect(missing.status == .exited(6) && missing.output.contains("not configured"))
            // A bind target that is a symlink: exit 1, and the command never ran, sandboxed or not.
            symlink("/etc", "\(dir)/view/link")
            let dropIn = "\(profiles)/web.service.conf.d"
            mkdir(dropIn, 0o755)
            try OwnedFD.open("\(dropIn)/link.conf", O_WRONLY | O_CREAT, mode: 0o644)
                .writeAll(Array("[Sandbox]\nBindReadOnlyPaths=\(dir)/state:\(dir)/view/link\n".utf8))
            let refused = try Self.run(["--profiles", profiles, "web", "--", "touch", marker])
            #expect(refused.status == .exited(1) && refused.output.contains("ELOOP"), "\(refused.output)")
            #expect(access(marker, F_OK) == -1)
            // A bad profile line: exit 2 naming file, line and key.
            try OwnedFD.open("\(dropIn)/link.conf", O_WRONLY | O_TRUNC).writeAll(Array("[Sandbox]\nProtectSystem=maybe\n".utf8))
            let bad = try Self.run(["--profiles", profiles, "web", "--", "touch", marker])
            #expect(bad.status == .exited(2) && bad.output.contains("link.conf:2: ProtectSystem=: takes one of strict, full"), "\(bad.output)")
            #expect(access(marker, F_OK) == -1)
        }
    }

    @Test func theCommandJoinsTheProfilesNetworkNamespace() throws {
        try Self.withProfile { (dir: String, profiles: String) throws in
            try withThrowawayNetworkNamespace { namespace in
                let dropIn = "\(profiles)/web.service.conf.d"
                mkdir(dropIn, 0o755)
                try OwnedFD.open("\(dropIn)/net.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("[Network]\nNamespace=\(namespace)\n".utf8))
                let printed = try Self.run(["--profiles", profiles, "web", "--print"])
                #expect(printed.output.contains("NetworkNamespacePath=/run/netns/\(namespace)"), "\(printed.output)")
                let seen = try Self.run(["--profiles", profiles, "web", "--", "stat", "-L", "-c", "%i", "/proc/self/ns/net"])
                #expect(seen.output == "\(try FileStatus.of("/run/netns/\(namespace)").inode)\n", "\(seen.output)")

                // A namespace that does not exist: refused with the fix, and the command never ran.
                try OwnedFD.open("\(dropIn)/net.conf", O_WRONLY | O_TRUNC).writeAll(Array("[Network]\nNamespace=absent-\(namespace)\n".utf8))
                let missing = try Self.run(["--profiles", profiles, "web", "--", "touch", "\(dir)/ran"])
                #expect(missing.status == .exited(1) && missing.output.contains("replica-net up absent-\(namespace)"), "\(missing.output)")
                #expect(access("\(dir)/ran", F_OK) == -1)
            }
        }
    }
}
