import Glibc
import Replica
import ReplicaKit
import ReplicaTestSupport
import Testing

/// Drop-ins systemd reads as they were meant: each case here made systemd run a service on the
/// wrong directory, or unsandboxed, before. (The end-to-end suite loads the same drop-ins into a
/// booted systemd and compares `systemctl show` with the plan.)
@Suite struct DropInRenderingTests {
    static func plan(_ text: String, files: [String] = ["web.service.conf"]) throws -> ServicePlan {
        try ServicePlan(ServiceProfile(Profile(unit: "web.service", files: files, settings: try ProfileParser.parse(text, file: "web.service.conf"))))
    }

    /// `[State] Path=/srv/a-data` names its subvolume `srv-a\x2ddata`; systemd splits `BindPaths=`
    /// at unquoted `:` and takes the character after a backslash as it is, so each path is escaped
    /// on its own and never quoted whole (which made `SOURCE:TARGET` one missing, optional path).
    @Test func aStatePathWithADashBindsItsOwnSubvolume() throws {
        let dropIn = try Self.plan("[State]\nPath=/srv/a-data /srv/b\n").dropIn()
        #expect(dropIn.contains("\nBindPaths=-/run/replica/store/web+srv-a\\\\x2ddata:/srv/a-data\n"), "\(dropIn)")
        #expect(!dropIn.contains("BindPaths=\""), "never quoted whole")
    }

    /// The store, Replica's folders and the service's own config generations are hidden from the
    /// service; its state still reaches it through its bind. `replica-run` also hides other units'
    /// credentials, which systemd hides by itself.
    @Test func theStoreAndReplicasFoldersAreHidden() throws {
        let plan = try Self.plan("[State]\nPath=/var/lib/web\nStore=/srv/store\n")
        let dropIn = try plan.dropIn()
        for hidden in ["/etc/replica", "/run/replica", "/srv/store", "/var/lib/replica"] {
            #expect(dropIn.contains("\nInaccessiblePaths=-\(hidden)\n"), "\(hidden): \(dropIn)")
        }
        #expect(dropIn.contains("\nBindPaths=-/srv/store/web:/var/lib/web\n"), "\(dropIn)")
        #expect(!dropIn.contains("/run/credentials"), "systemd shows a unit only its own credentials")
        #expect(try plan.profile.sandbox().hiddenPaths.contains("/run/credentials"))
        // The config generations are below /var/lib/replica: hidden once, as the outermost folder.
        #expect(plan.profile.replicaPaths == ["/etc/replica", "/run/replica", "/srv/store", "/var/lib/replica"])
    }

    /// A mount of the profile's own at or below a hidden path would be hidden with it: refused,
    /// naming the line, and so is a state path there.
    @Test(arguments: [("[Sandbox]\nReadWritePaths=/run/replica/x\n", "ReadWritePaths"),
                      ("[Sandbox]\nRuntimeDirectory=replica\n", "RuntimeDirectory"),
                      ("[Sandbox]\nBindReadOnlyPaths=/srv/a:/etc/replica\n", "BindReadOnlyPaths"),
                      ("[State]\nPath=/var/lib/replica/web\n", "Path")])
    func aPathOfReplicasOwnIsRefused(text: String, key: String) {
        let error = #expect(throws: ProfileError.self) { _ = try Self.plan(text) }
        #expect(error?.location?.key == key && error?.location?.line == 2, "\(String(describing: error))")
        #expect(error.map { "\($0)" }?.contains("Replica's own") == true, "\(String(describing: error))")
    }

    @Test func aColonOrABlankInAPathIsEscapedNotASeparator() {
        #expect(SandboxPlan.bindPath("/run/replica/store/a:b") == "/run/replica/store/a\\:b")
        #expect(SandboxPlan.bindPath("/srv/with space/100%") == "/srv/with\\ space/100%%")
        #expect(SandboxPlan.bindPath("/srv/\"q\"'s\\") == "/srv/\\\"q\\\"\\'s\\\\")
    }

    /// A backslash at the end of a comment continues nothing, in systemd and so here: the next
    /// line is a directive (our parser used to swallow it into the comment; systemd applied it).
    @Test func aCommentEndingInABackslashDoesNotSwallowTheNextLine() throws {
        let settings = try ProfileParser.parse("[Sandbox]\n# a note \\\nProtectHome=yes\n", file: "web.service.conf")
        #expect(settings.map(\.key) == ["ProtectHome"])
        // The control: a value line ending in a backslash still continues.
        let continued = try ProfileParser.parse("[Sandbox]\nReadOnlyPaths=/a \\\n /b\n", file: "web.service.conf")
        #expect(continued.count == 1 && continued[0].value.contains("/b"))
    }

    /// A profile file name is the operator's: a newline in it would end the header comment and
    /// start a directive.
    @Test func aFileNameCannotAddALine() throws {
        let dropIn = try Self.plan("[Sandbox]\nProtectHome=yes\n", files: ["/etc/replica/services/web.service.conf.d/x\nUser=root\n.conf"]).dropIn()
        #expect(!dropIn.contains("\nUser=root"), "\(dropIn)")
        #expect(dropIn.split(separator: "\n").filter { $0.hasPrefix("User=") }.isEmpty)
    }

    /// A line systemd would stop reading at (LONG_LINE_MAX, 1 MiB; `%` doubles) is refused, so the
    /// generator writes the refusing drop-in rather than one systemd reads only half of.
    @Test func aLineSystemdWouldNotReadWholeIsRefused() throws {
        let bind = { (percents: Int) in "[Sandbox]\nBindReadOnlyPaths=/srv/" + String(repeating: "%", count: percents) + ":/y\n" }
        let error = #expect(throws: ReplicaError.self) { _ = try Self.plan(bind(600_000)).dropIn() }
        #expect(error?.hint?.contains("systemd reads at most") == true, "\(String(describing: error))")
        #expect(try Self.plan(bind(1000)).dropIn().count > 2000, "the control")
    }

    /// A profile that is a dangling symlink is a profile that cannot be read: its unit gets the
    /// refusing drop-in, not none (with none it started unsandboxed).
    @Test func aDanglingSymlinkProfileRefusesItsUnit() throws {
        try withTemporaryDirectory { dir in
            try createDirectories("\(dir)/etc")
            try createDirectories("\(dir)/out")
            symlink("/nonexistent/web.service.conf", "\(dir)/etc/web.service.conf")
            let outcomes = try ProfileGenerator(loader: ProfileLoader(directories: ["\(dir)/etc"])).generate(into: "\(dir)/out")
            #expect(outcomes.map(\.unit) == ["web.service"] && outcomes[0].error != nil)
            let written = String(decoding: try OwnedFD.open("\(dir)/out/web.service.d/replica.conf", O_RDONLY).readAll(), as: UTF8.self)
            #expect(written.contains("ExecStartPre=+/usr/bin/replica-shift refuse %n"), "\(written)")
        }
    }
}

/// What no profile shows alone, seen by the generator, which reads them all: two services on one
/// state, nested states, or one subvolume refuse to start, each naming the other.
@Suite struct ProfileConflictTests {
    @Test func servicesSharingOrNestingStateBothRefuseAndOthersStart() throws {
        try withTemporaryDirectory { dir in
            try createDirectories("\(dir)/etc")
            try createDirectories("\(dir)/out")
            for (unit, text) in [("a", "[State]\nPath=/srv/x\n"), ("b", "[State]\nPath=/srv/x/y\n"), ("c", "[State]\nPath=/srv/z\n"),
                                 ("d", "[State]\nPath=/srv/d\n[Snapshots]\nSubvolume=shared\n"),
                                 ("e", "[State]\nPath=/srv/e\n[Snapshots]\nSubvolume=shared\n"),
                                 ("f", "[State]\nPath=/srv/x/y\n"),
                                 ("g", "[State]\nPath=/srv/g\nStore=/srv/pool\n"), ("h", "[State]\nPath=/srv/pool/h\n")] {
                try OwnedFD.open("\(dir)/etc/\(unit).service.conf", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(text.utf8))
            }
            let outcomes = try ProfileGenerator(loader: ProfileLoader(directories: ["\(dir)/etc"])).generate(into: "\(dir)/out")
            let refused = Dictionary(uniqueKeysWithValues: outcomes.map { ($0.unit, $0.error?.description ?? "") })
            #expect(refused["a.service"]?.contains("their state paths /srv/x and /srv/x/y are nested") == true, "\(refused)")
            #expect(refused["b.service"]?.contains("a.service") == true && refused["f.service"]?.contains("/srv/x/y") == true, "\(refused)")
            #expect(refused["d.service"]?.contains("both name subvolume shared of /run/replica/store") == true, "\(refused)")
            #expect(refused["e.service"]?.contains("d.service") == true)
            #expect(refused["h.service"]?.contains("its state path /srv/pool/h overlaps /srv/pool, the store of g.service") == true, "\(refused)")
            #expect(refused["g.service"] == "", "the store's own service is not at fault")
            #expect(refused["c.service"] == "", "the control: a service alone on its state starts")
            let a = String(decoding: try OwnedFD.open("\(dir)/out/a.service.d/replica.conf", O_RDONLY).readAll(), as: UTF8.self)
            #expect(a.contains("replica-shift refuse %n") && !a.contains("BindPaths"))
        }
    }
}

/// The properties systemd reports for a drop-in, as the plan gives them (the end-to-end suite
/// compares them with a booted systemd for 200 generated profiles), and the comparison `prepare`
/// makes at every start.
@Suite struct UnitCheckTests {
    static let profile = """
        [State]
        Path=/srv/a-data
        [Sandbox]
        Hardening=service
        User=nobody
        ReadOnlyPaths="/srv/with space" -/srv/maybe
        BindReadOnlyPaths=/etc/hostname:/etc/x:norbind
        TemporaryFileSystem=/run/app:mode=0750,size=1M
        CapabilityBoundingSet=CAP_NET_BIND_SERVICE
        """

    @Test func thePlanGivesWhatSystemdReports() throws {
        let properties = try DropInRenderingTests.plan(Self.profile).profile.sandbox(forSystemd: true).systemdProperties
        // The values busctl get-property printed for this drop-in in the booted container.
        #expect(properties["BindPaths"] == .list([.record([.string("/run/replica/store/web"), .string("/srv/a-data"), .bool(true), .unsigned(16384)])]))
        #expect(properties["BindReadOnlyPaths"] == .list([.record([.string("/etc/hostname"), .string("/etc/x"), .bool(false), .unsigned(0)])]))
        #expect(properties["ReadOnlyPaths"] == .list([.string("/srv/with space"), .string("-/srv/maybe")]))
        #expect(properties["TemporaryFileSystem"]?.description == "[(\"/tmp\" \"mode=1777,nosuid,nodev\"), (\"/var/tmp\" \"mode=1777,nosuid,nodev\"), "
                + "(\"/run/app\" \"mode=0750,size=1048576\")]")
        #expect(properties["User"] == .string("nobody") && properties["ProtectSystem"] == .string("strict"))
        #expect(properties["UMask"] == .unsigned(0o077) && properties["NoNewPrivileges"] == .bool(true))
        #expect(properties["CapabilityBoundingSet"] == .unsigned(1 << 10), "CAP_NET_BIND_SERVICE; the preset's drops remove nothing more")
        #expect(properties["RestrictAddressFamilies"] == .record([.bool(true), .list([.string("AF_INET"), .string("AF_INET6"), .string("AF_UNIX")])]))
    }

    /// systemd reports the system call filter by name, with calls this architecture lacks (which
    /// filter nothing) and errnos by name: reduced to the plan's form, they compare equal, and a
    /// call missing from the report is a difference.
    @Test func theSystemCallFilterIsComparedCallByCall() throws {
        let plan = try DropInRenderingTests.plan("[Sandbox]\nSystemCallFilter=~reboot:EPERM kexec_load:kill chown socketcall\n")
        let planned = try plan.profile.sandbox(forSystemd: true).systemdProperties
        #expect(planned["SystemCallFilter"] == .record([.bool(false), .list([.string("chown"), .string("kexec_load:kill"), .string("reboot:1")])]))
        var applied = planned
        // As systemd 252 printed it (busctl get-property): names, errno names, socketcall (x86's only).
        applied["SystemCallFilter"] = .record([.bool(false), .list([.string("chown"), .string("kexec_load:kill"), .string("reboot:EPERM"),
                                                                    .string("socketcall")])])
        #expect(try plan.differences(from: applied).isEmpty)
        applied["SystemCallFilter"] = .record([.bool(false), .list([.string("chown"), .string("reboot:EPERM")])])
        #expect(try plan.differences(from: applied).map(\.name) == ["SystemCallFilter"])
        let none = try DropInRenderingTests.plan("[State]\nPath=/srv/r\n").profile.sandbox(forSystemd: true).systemdProperties
        #expect(none["SystemCallFilter"] == .record([.bool(false), .list([])]), "no filter, as systemd reports it")
    }

    /// A drop-in edited to drop the state bind: the difference names BindPaths; the control, the
    /// planned properties themselves, has none. systemd's "every capability" (all 64 bits) is the
    /// plan's "every capability that exists".
    @Test func aDroppedBindIsADifference() throws {
        let plan = try DropInRenderingTests.plan(Self.profile)
        var applied = try plan.profile.sandbox(forSystemd: true).systemdProperties
        #expect(try plan.differences(from: applied).isEmpty, "the control")
        applied["BindPaths"] = .list([])
        let differences = try plan.differences(from: applied)
        #expect(differences.map(\.name) == ["BindPaths"])
        #expect(differences.first?.description.hasPrefix("BindPaths is [] where the profile gives [(\"/run/replica/store/web\"") == true)
        applied["BindPaths"] = nil
        #expect(try plan.differences(from: applied).first?.description.hasPrefix("BindPaths is missing") == true, "fail closed")

        let root = try DropInRenderingTests.plan("[State]\nPath=/srv/r\n")
        var all = try root.profile.sandbox(forSystemd: true).systemdProperties
        all["CapabilityBoundingSet"] = .unsigned(.max)
        let none = try root.differences(from: all)
        #expect(none.isEmpty, "\(none)")
    }
}
