import Glibc
import Replica
import ReplicaKit
import ReplicaTestSupport
import Testing

@Suite struct ProfileGeneratorTests {
    @Test func writesEveryDropInAndRefusesBrokenProfiles() throws {
        try withTemporaryDirectory { dir in
            try createDirectories("\(dir)/etc")
            try createDirectories("\(dir)/out")
            for (name, text) in [("web.service.conf", "[State]\nPath=/var/lib/web\n"), ("bad.service.conf", "[Stat]\n"),
                                 ("notes.txt", "x"), ("web.conf", "[State]\n")] {
                try OwnedFD.open("\(dir)/etc/\(name)", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array(text.utf8))
            }
            let generator = ProfileGenerator(loader: ProfileLoader(directories: ["\(dir)/etc"]))
            #expect(generator.units().units == ["bad.service", "web.service"])
            #expect(generator.units().ignored == ["\(dir)/etc/web.conf"])
            let outcomes = try generator.generate(into: "\(dir)/out")
            #expect(outcomes.map(\.unit) == ["bad.service", "web.service"])
            #expect(outcomes.map { $0.error == nil } == [false, true])
            let web = String(decoding: try OwnedFD.open("\(dir)/out/web.service.d/replica.conf", O_RDONLY).readAll(), as: UTF8.self)
            #expect(web.contains("ExecStartPre=+/usr/bin/replica-shift prepare %n\nPrivateMounts=yes\nProtectSystem=strict\n"))
            let bad = String(decoding: try OwnedFD.open("\(dir)/out/bad.service.d/replica.conf", O_RDONLY).readAll(), as: UTF8.self)
            #expect(bad.contains("ExecStartPre=\nExecStartPre=+/usr/bin/replica-shift refuse %n\n"))
            #expect(!bad.contains("ProtectSystem"), "a refusing drop-in sandboxes nothing: the unit never runs")
        }
    }

    @Test func aTemplatesProfileRefusesEveryInstanceAndNamesTheInstanceForm() throws {
        try withTemporaryDirectory { dir in
            try createDirectories("\(dir)/etc")
            try createDirectories("\(dir)/out")
            for name in ["postgresql@.service.conf", "postgresql@15-main.service.conf"] {
                try OwnedFD.open("\(dir)/etc/\(name)", O_WRONLY | O_CREAT, mode: 0o644)
                    .writeAll(Array("[State]\nPath=/var/lib/postgresql/15/main\n".utf8))
            }
            let generator = ProfileGenerator(loader: ProfileLoader(directories: ["\(dir)/etc"]))
            let outcomes = try generator.generate(into: "\(dir)/out")
            #expect(outcomes.map(\.unit) == ["postgresql@.service", "postgresql@15-main.service"])
            #expect(outcomes[1].error == nil, "an instance's profile sandboxes that instance")
            let reason = outcomes[0].error?.description ?? ""
            #expect(reason.contains("postgresql@INSTANCE.service.conf"), "\(reason)")
            let template = String(decoding: try OwnedFD.open("\(dir)/out/postgresql@.service.d/replica.conf", O_RDONLY).readAll(),
                                  as: UTF8.self)
            #expect(template.contains("ExecStartPre=+/usr/bin/replica-shift refuse %n\n"), "every instance fails closed")
        }
    }

    @Test func valuesCannotAddDirectives() throws {
        let profile = try ServiceProfile(Profile(unit: "web.service", files: ["web.conf"],
            settings: try ProfileParser.parse("[Sandbox]\nBindReadOnlyPaths=\"/srv/a b:/x\" /srv/100%:/y\n", file: "web.conf")))
        let text = try ServicePlan(profile).dropIn()
        // Each path escaped on its own: quoting "SOURCE:TARGET" whole made systemd read one path.
        #expect(text.contains("BindReadOnlyPaths=/srv/a\\ b:/x\n") && text.contains("BindReadOnlyPaths=/srv/100%%:/y\n"), "\(text)")
        #expect(text.split(separator: "\n").allSatisfy { !$0.contains("\r") })
    }
}


/// The generator and `replica-shift drop-in` check a profile as one plan: a profile one refuses, the
/// other refuses with the same reason (a bad `Subnet=` once passed the generator and failed later).
@Suite struct ServicePlanParityTests {
    @Test func aSubnetNoPoolCanServeIsRefusedByBothDoorways() throws {
        try withTemporaryDirectory { dir in
            try createDirectories("\(dir)/etc")
            try createDirectories("\(dir)/out")
            for (unit, subnet) in [("bad", "10.0.0.0/31"), ("good", "10.0.0.0/24")] {
                try OwnedFD.open("\(dir)/etc/\(unit).service.conf", O_WRONLY | O_CREAT, mode: 0o644)
                    .writeAll(Array("[Network]\nBridge=br-x\nSubnet=\(subnet)\n".utf8))
            }
            let outcomes = try ProfileGenerator(loader: ProfileLoader(directories: ["\(dir)/etc"])).generate(into: "\(dir)/out")
            let rule = "an IPv4 subnet from /8 to /30"
            #expect(outcomes.map(\.unit) == ["bad.service", "good.service"])
            #expect(outcomes[0].error?.description.contains(rule) == true, "\(String(describing: outcomes[0].error))")
            #expect(outcomes[1].error == nil, "the positive control: a /24 is served")
            let shift = try builtTool("replica-shift")
            let bad = try Command.run([shift, "drop-in", "--profiles", "\(dir)/etc", "bad"])
            #expect(bad.status == .exited(ExitCode.usage) && bad.output.contains(rule), "\(bad.output)")
            let good = try Command.run([shift, "drop-in", "--profiles", "\(dir)/etc", "good"])
            #expect(good.status.isSuccess && good.output.contains("Requires=replica-net@good.service"), "\(good.output)")
        }
    }

    @Test func aPlanCarriesEverySectionCheckedOnce() throws {
        let text = "[State]\nPath=/var/lib/web\n[Snapshots]\nPreserve=24h 14d\n[Network]\nBridge=br-web\nSubnet=10.77.0.0/24\n"
        let plan = try ServicePlan(try ServiceProfile(Profile(unit: "web.service", files: ["web.conf"],
                                                              settings: try ProfileParser.parse(text, file: "web.conf"))))
        #expect(plan.snapshots.map(\.subvolume) == ["web"])
        #expect(plan.network?.addresses.map(\.description) == ["10.77.0.2/24"], "checked with the first lease, none taken")
    }
}
