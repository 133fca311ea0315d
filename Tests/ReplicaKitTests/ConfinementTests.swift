import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// The confinement keys as systemd 252 reads them, refused where systemd would only warn.
@Suite struct ConfinementParsingTests {
    static func confinement(_ text: String) throws -> Confinement {
        try SandboxPlan(profile: Profile(unit: "web.service", files: ["web.conf"], settings: ProfileParser.parse(text, file: "web.conf"))).confinement
    }

    static func number(_ name: String) -> Int32 { CapabilitySet.number(name)! }

    /// `systemd-analyze syscall-filter` of the systemd this runs under, as group → members.
    static func systemdGroups() throws -> [String: [String]]? {
        guard let result = try? Command.run(["systemd-analyze", "syscall-filter"]), result.status == .exited(0) else { return nil }
        var groups: [String: [String]] = [:]
        var current = ""
        for line in result.output.split(separator: "\n") {
            if line.hasPrefix("@") { current = String(line); groups[current] = [] }
            else if line.hasPrefix("    ") && !line.hasPrefix("    #") && !current.isEmpty {
                groups[current]!.append(String(line.drop { $0 == " " }))
            }
        }
        return groups
    }

    @Test func theGroupTableIsWhatSystemdAnalyzePrints() throws {
        let live = try #require(try Self.systemdGroups(), "systemd-analyze is part of the dependencies")
        #expect(Set(live.keys) == Set(SyscallFilter.groups.keys))
        for (group, members) in live { #expect(SyscallFilter.groups[group] == members, "\(group)") }
    }

    @Test func anAllowListStartsWithDefaultAndLaterListsAddOrTakeAway() throws {
        let filter = try #require(try Self.confinement("""
            [Sandbox]
            SystemCallFilter=@system-service
            SystemCallFilter=~@privileged mount:EPERM
            """).syscallFilter)
        #expect(filter.allowList)
        let number = SyscallFilter.number(of:)
        #expect(filter.entries[number("execve")] != nil, "@default is always in an allow list")
        #expect(filter.entries[number("read")] != nil)
        #expect(filter.entries[number("chown")] == nil, "~@privileged took it out again")
        #expect(filter.entries[number("mount")] == nil,
                "~mount:EPERM takes it out of an allow list, its errno dropped: systemd 252 lists no mount (busctl get-property)")
        #expect(filter.assignments == ["@system-service", "~@privileged mount:EPERM"], "the drop-in carries them unchanged")
        let deny = try #require(try Self.confinement("[Sandbox]\nSystemCallFilter=~@mount reboot:kill\n").syscallFilter)
        #expect(!deny.allowList && deny.entries[number("umount2")] == .some(nil) && deny.entries[number("reboot")] == .some(SyscallFilter.killNumber))
        #expect(try Self.confinement("[Sandbox]\nSystemCallFilter=@mount\nSystemCallFilter=\n").syscallFilter == nil, "empty resets")
    }

    @Test func capabilitySetsMergeAsSystemdMergesThem() throws {
        let empty = try Self.confinement("[Sandbox]\nCapabilityBoundingSet=\n")
        #expect(empty.capabilityBoundingSet == CapabilitySet(), "empty is the empty set, not unchanged")
        let merged = try Self.confinement("[Sandbox]\nCapabilityBoundingSet=CAP_CHOWN\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n")
        #expect(merged.capabilityBoundingSet?.names == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
        let inverted = try Self.confinement("[Sandbox]\nCapabilityBoundingSet=~CAP_SYS_ADMIN\n")
        #expect(inverted.capabilityBoundingSet?.contains(Self.number("CAP_SYS_ADMIN")) == false)
        #expect(inverted.capabilityBoundingSet?.contains(Self.number("CAP_CHOWN")) == true)
        let device = try Self.confinement("[Sandbox]\nPrivateDevices=yes\nProtectClock=yes\n")
        #expect(!device.effectiveBoundingSet.contains(Self.number("CAP_MKNOD")) && !device.effectiveBoundingSet.contains(Self.number("CAP_SYS_TIME")))
    }

    @Test func familiesAndNamespacesMergeAsSystemdMergesThem() throws {
        let families = try #require(try Self.confinement("[Sandbox]\nRestrictAddressFamilies=AF_UNIX AF_INET\nRestrictAddressFamilies=~AF_INET\n")
            .restrictAddressFamilies)
        #expect(families.allowList && families.families == [1])
        #expect(try Self.confinement("[Sandbox]\nRestrictAddressFamilies=none\n").restrictAddressFamilies?.directive == "none")
        #expect(try Self.confinement("[Sandbox]\nRestrictNamespaces=yes\n").allowedNamespaces?.flags == 0)
        #expect(try Self.confinement("[Sandbox]\nRestrictNamespaces=no\n").allowedNamespaces == nil)
        #expect(try Self.confinement("[Sandbox]\nRestrictNamespaces=~user net\n").allowedNamespaces?.directive == "cgroup ipc mnt pid uts")
    }

    @Test func hardeningServiceIsAPresetTheProfileCanOverride() throws {
        let plan = try SandboxPlan(profile: Profile(unit: "web.service", files: ["web.conf"], settings: ProfileParser.parse("""
            [Sandbox]
            Hardening=service
            User=www-data
            CapabilityBoundingSet=CAP_NET_BIND_SERVICE
            ProtectHome=read-only
            """, file: "web.conf")))
        #expect(plan.protectSystem == .strict && plan.protectHome == .readOnly, "a later setting wins")
        #expect(plan.confinement.capabilityBoundingSet?.names == ["CAP_NET_BIND_SERVICE"], "added to the preset's empty set")
        #expect(plan.confinement.noNewPrivileges && plan.confinement.privateDevices && plan.confinement.syscallFilter?.allowList == true)
        #expect(plan.systemdDirectives.contains("SystemCallFilter=~@privileged @resources"))
    }

    @Test(arguments: [
        ("SystemCallFilter=@system-service openn", "unknown system call openn"),
        ("SystemCallFilter=@sytem-service", "unknown system call group @sytem-service"),
        ("SystemCallFilter=read:EPERM", "only a ~ deny list takes :ERRNO"),
        ("SystemCallFilter=~read:EBOGUS", "\"EBOGUS\" is not an errno name"),
        ("SystemCallErrorNumber=EBOGUS", "is not an errno name"),
        ("SystemCallArchitectures=x86", "cannot be honoured"),
        ("CapabilityBoundingSet=CAP_SYS_ADMN", "unknown capability CAP_SYS_ADMN"),
        ("AmbientCapabilities=NET_ADMIN", "unknown capability NET_ADMIN"),
        ("RestrictAddressFamilies=AF_UNIKS", "unknown address family AF_UNIKS"),
        ("RestrictNamespaces=network", "unknown namespace type network"),
        ("UMask=0999", "octal mask"),
        ("User=../root", "is not a user or group name"),
        ("User=4294967295", "is not a user or group number a process can take"),
        ("Group=65535", "is not a user or group number a process can take"),
        ("NoNewPrivileges=maybe", "takes yes or no"),
        ("Hardening=paranoid", "takes one of service"),
    ])
    func badValuesAreRefusedNamingKeyAndFix(line: String, reason: String) {
        let error = #expect(throws: ProfileError.self) { _ = try Self.confinement("[Sandbox]\n\(line)\n") }
        #expect(error?.location?.line == 2 && error?.location?.key == String(line.prefix { $0 != "=" }), "\(String(describing: error))")
        #expect(error?.rule.contains(reason) == true, "\(String(describing: error))")
    }

    /// As root without capabilities a service still reads every root-owned file: the preset asks
    /// for a user, and takes root only when the profile says so.
    @Test func hardeningServiceNeedsAUser() throws {
        let profile = { (text: String) throws in
            try SandboxPlan(profile: Profile(unit: "web.service", files: ["web.conf"], settings: ProfileParser.parse(text, file: "web.conf")))
        }
        let error = #expect(throws: ProfileError.self) { _ = try profile("[Sandbox]\nHardening=service\n") }
        #expect(error?.location?.line == 2 && error?.location?.key == "Hardening", "\(String(describing: error))")
        #expect(error?.rule.contains("add User=NAME") == true && error?.rule.contains("User=root") == true, "\(String(describing: error))")
        #expect(try profile("[Sandbox]\nHardening=service\nUser=root\n").confinement.user == "root", "root, said knowingly")
        #expect(try profile("[Sandbox]\nUser=nobody\nHardening=service\n").confinement.user == "nobody", "User= before the preset counts too")
    }

    @Test func directivesAreWhatSystemdReadsBack() throws {
        let lines = try Self.confinement("""
            [Sandbox]
            User=www-data
            UMask=027
            CapabilityBoundingSet=CAP_NET_BIND_SERVICE
            RestrictAddressFamilies=AF_INET6 AF_UNIX
            LockPersonality=yes
            """).systemdDirectives
        #expect(lines == ["User=www-data", "UMask=0027", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "SystemCallArchitectures=native",
                          "RestrictAddressFamilies=AF_UNIX AF_INET6", "LockPersonality=yes"])
    }
}

func errnoName(_ result: Int) -> String { result < 0 ? Errno.current.name : "ok" }

/// Each directive applied in a child, checked from inside the way the service would meet it.
@Suite(.requiresRoot) struct ConfinementApplyTests {
    /// Applies the profile's confinement in a child and returns what `probe` reports there.
    static func inChild(_ text: String, _ probe: @escaping () -> String) throws -> String {
        let confinement = try ConfinementParsingTests.confinement(text)
        let credentials = try confinement.resolveCredentials()
        let programs = try confinement.seccompPrograms()
        return try ChildProcess.run(timeout: .seconds(30)) { () throws(ReplicaError) -> String in
            try confinement.apply(credentials, programs: programs)
            return probe()
        }
    }


    @Test func eachSeccompDirectiveRefusesWhatItNames() throws {
        let cases: [(String, () -> String, String)] = [
            ("RestrictAddressFamilies=AF_UNIX", { errnoName(Int(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0))) }, "EAFNOSUPPORT"),
            ("RestrictAddressFamilies=~AF_PACKET", { errnoName(Int(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0))) }, "ok"),
            ("MemoryDenyWriteExecute=yes", { mmap(nil, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? Errno.current.name : "ok" }, "EPERM"),
            ("RestrictNamespaces=yes", { errnoName(Int(replica_unshare(replica_CLONE_NEWUTS))) }, "EPERM"),
            ("RestrictNamespaces=uts", { errnoName(Int(replica_unshare(replica_CLONE_NEWUTS))) }, "ok"),
            ("LockPersonality=yes", { errnoName(replica_raw_syscall(135, 0x0008, 0, 0, 0, 0, 0)) }, "EPERM"),
            ("RestrictRealtime=yes", { var p = sched_param(sched_priority: 1); return errnoName(Int(sched_setscheduler(0, SCHED_FIFO, &p))) }, "EPERM"),
            ("ProtectHostname=yes", { errnoName(Int(sethostname("x", 1))) }, "EPERM"),
            ("ProtectKernelLogs=yes", { errnoName(replica_raw_syscall(103, 10, 0, 0, 0, 0, 0)) }, "EPERM"),
            ("ProtectClock=yes", { var t = timespec(tv_sec: 1, tv_nsec: 0); return errnoName(Int(clock_settime(CLOCK_MONOTONIC, &t))) }, "EPERM"),
            ("SystemCallFilter=~uname:ENODATA", { var u = utsname(); return errnoName(Int(uname(&u))) }, "ENODATA"),
            ("SystemCallFilter=@system-service\nSystemCallErrorNumber=EPERM", { errnoName(Int(replica_raw_syscall(169, 0, 0, 0, 0, 0, 0))) }, "EPERM"),
            ("SystemCallFilter=@system-service\nSystemCallErrorNumber=EPERM", { errnoName(Int(getppid())) }, "ok"),
        ]
        for (text, probe, expected) in cases {
            #expect(try Self.inChild("[Sandbox]\n\(text)\n", probe) == expected, "\(text)")
        }
    }

    @Test func aDeniedCallKillsByDefaultAndOtherABIsAlwaysDo() throws {
        let killed = #expect(throws: ReplicaError.self) {
            _ = try Self.inChild("[Sandbox]\nSystemCallFilter=~uname\n") { var u = utsname(); _ = uname(&u); return "survived" }
        }
        #expect(killed?.hint?.contains("killed by signal \(SIGSYS)") == true, "\(String(describing: killed))")
        let x32 = #expect(throws: ReplicaError.self) {
            _ = try Self.inChild("[Sandbox]\nSystemCallArchitectures=native\n") { _ = replica_raw_syscall(0x4000_0000 | 39, 0, 0, 0, 0, 0, 0); return "survived" }
        }
        #expect(x32?.hint?.contains("killed by signal \(SIGSYS)") == true, "an x32 call: \(String(describing: x32))")
    }

    @Test func usersCapabilitiesAndNoNewPrivs() throws {
        let status = try Self.inChild("""
            [Sandbox]
            User=nobody
            CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_CHOWN
            AmbientCapabilities=CAP_NET_BIND_SERVICE
            UMask=0027
            SystemCallFilter=@system-service
            """) {
            let text = (try? OwnedFD.open("/proc/self/status", O_RDONLY).readAll()).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let keys = ["Uid:", "CapEff:", "CapBnd:", "CapAmb:", "NoNewPrivs:", "Seccomp:", "Umask:"]
            return text.split(separator: "\n").filter { line in keys.contains { line.hasPrefix($0) } }.joined(separator: "|")
        }
        #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"))
        #expect(status.contains("CapEff:\t0000000000000400") && status.contains("CapAmb:\t0000000000000400"), "\(status)")
        #expect(status.contains("CapBnd:\t0000000000000401"), "\(status)")
        #expect(status.contains("NoNewPrivs:\t1"), "implied: filters loaded by a process without CAP_SYS_ADMIN")
        #expect(status.contains("Seccomp:\t2") && status.contains("Umask:\t0027"), "\(status)")
    }

    /// As systemd does: the service directories belong to `User=`, so the service can write them.
    @Test func serviceDirectoriesBelongToTheUser() throws {
        try withTemporaryDirectory { dir in
            let name = "replica-test-own-\(getpid())"
            defer { rmdir("/run/\(name)") }
            try OwnedFD.open("\(dir)/own.service.conf", O_WRONLY | O_CREAT, mode: 0o644)
                .writeAll(Array("[Sandbox]\nUser=nobody\nRuntimeDirectory=\(name)\n".utf8))
            let result = try Command.run([try builtTool("replica-run"), "--profiles", dir, "own", "--", "sh", "-c",
                                          "touch /run/\(name)/x && stat -c %U /run/\(name)"])
            #expect(result.status == .exited(0) && result.output == "nobody\n", "\(result.output)")
            unlink("/run/\(name)/x")
        }
    }

    /// systemd looks up no groups for gid 0: root keeps only `SupplementaryGroups=` (the probe
    /// differential showed `Groups: 0` under replica-run and none under systemd).
    @Test func rootGetsOnlyTheGroupsTheProfileNames() throws {
        #expect(try ConfinementParsingTests.confinement("[Sandbox]\nUser=root\n").resolveCredentials().groups == [])
        let named = try ConfinementParsingTests.confinement("[Sandbox]\nUser=root\nSupplementaryGroups=nogroup\n").resolveCredentials()
        #expect(named.groups == [65534])
        // The control: another user gets its groups from the database, its own primary one included.
        #expect(try ConfinementParsingTests.confinement("[Sandbox]\nUser=nobody\n").resolveCredentials().groups?.contains(65534) == true)
    }

    @Test func aUserThatDoesNotExistIsRefusedBeforeAnythingIsApplied() throws {
        let confinement = try ConfinementParsingTests.confinement("[Sandbox]\nUser=replica-no-such-user\n")
        let error = #expect(throws: ReplicaError.self) { _ = try confinement.resolveCredentials() }
        #expect(error?.reason == .refused && error?.hint?.contains("useradd --system replica-no-such-user") == true)
    }
}

/// The cache key's digest of the group table, written out in the source, is the table's.
@Suite struct SeccompCacheKeyTests {
    @Test func theWrittenOutDigestIsTheGroupTables() {
        let computed = SeccompCache.tableDigest()
        #expect(SeccompCache.groupsDigest == computed,
                "the system call groups changed: set SeccompCache.groupsDigest to 0x\(String(computed, radix: 16))")
    }
}

/// Compiled filters kept and loaded instead of compiled.
@Suite(.requiresRoot) struct SeccompCacheTests {
    @Test func aSecondStartLoadsWhatTheFirstCompiled() throws {
        try withTemporaryDirectory { dir in
            let cache = SeccompCache(directory: "\(dir)/cache")
            let confinement = try ConfinementParsingTests.confinement("[Sandbox]\nHardening=service\nUser=nobody\n")
            let first = try cache.programs(for: confinement)
            let second = try cache.programs(for: confinement)
            #expect(!first.cached && second.cached)
            #expect(first.programs == second.programs && first.programs.count > 5)
            #expect(try FileStatus.of("\(dir)/cache").mode & 0o777 == 0o700)
            let other = try ConfinementParsingTests.confinement("[Sandbox]\nHardening=service\nUser=nobody\nRestrictAddressFamilies=AF_NETLINK\n")
            #expect(SeccompCache.key(other) != SeccompCache.key(confinement), "other settings, another entry")
            // A damaged entry is compiled again and replaced.
            let entry = "\(dir)/cache/\(SeccompCache.key(confinement)).bpf"
            try OwnedFD.open(entry, O_WRONLY | O_TRUNC).writeAll(Array("RSC1garbage".utf8))
            #expect(try !cache.programs(for: confinement).cached)
            #expect(try cache.programs(for: confinement).cached)
        }
    }

    @Test func aFolderOthersCanWriteIsNotTrusted() throws {
        try withTemporaryDirectory { dir in
            mkdir("\(dir)/cache", 0o777)
            chmod("\(dir)/cache", 0o777)
            let cache = SeccompCache(directory: "\(dir)/cache")
            let confinement = try ConfinementParsingTests.confinement("[Sandbox]\nLockPersonality=yes\n")
            #expect(try !cache.programs(for: confinement).cached)
            #expect(try !cache.programs(for: confinement).cached, "never read from, never written to")
            #expect(try DirectoryEntries.names(in: OwnedFD.open("\(dir)/cache", O_RDONLY | O_DIRECTORY)).isEmpty)
        }
    }
}
