import ReplicaKit
import ReplicaStore
import Testing

@Suite struct SnapshotSettingsTests {
    static func profile(_ text: String, unit: String = "web.service") throws -> ServiceProfile {
        try ServiceProfile(Profile(unit: unit, files: ["web.conf"], settings: try ProfileParser.parse(text, file: "web.conf")))
    }

    @Test func readsThePolicyFromSnapshots() throws {
        let settings = try SnapshotSettings(profile: try Self.profile("""
            [Snapshots]
            Preserve=24h 7d
            PreserveMin=1d
            Latest=2
            MinFree=5%
            """))
        #expect(settings.subvolume == "web")
        #expect(settings.policy.preserve == [.hour: .last(24), .day: .last(7)])
        #expect(settings.policy.minimum == .within(1, .day) && settings.policy.latest == 2)
        #expect(settings.policy.minimumFree == .percent(5))
    }

    @Test func aBadValueNamesFileLineAndKey() throws {
        let error = #expect(throws: ProfileError.self) {
            _ = try SnapshotSettings(profile: try Self.profile("[Snapshots]\nPreserve=24h\nPreserveHourOfDay=25\n"))
        }
        #expect(error?.description == "web.conf:3: PreserveHourOfDay=: takes an hour from 0 to 23")
    }

    @Test func anUnknownKeyIsRefused() throws {
        let error = #expect(throws: ProfileError.self) {
            _ = try SnapshotSettings(profile: try Self.profile("[Snapshots]\nPreserv=24h\n"))
        }
        #expect(error?.location?.line == 2 && error?.location?.key == "Preserv")
    }

    @Test func aSubvolumeNameThatCouldEscapeIsRefused() throws {
        let error = #expect(throws: ProfileError.self) {
            _ = try SnapshotSettings(profile: try Self.profile("[Snapshots]\nSubvolume=../etc\n"))
        }
        #expect(error?.location?.key == "Subvolume" && error?.location?.line == 2)
    }

    /// Which targets of one job share a thread: a subvolume named twice, in the order named (each
    /// takes its lock), and every target of a run that sends to `[Replication]`, so a run never
    /// opens many connections to one host at once.
    @Test func aJobsLanesKeepOneSubvolumeAndAllSendingTogether() throws {
        let bare = try ["web", "db", "web"].map { name in try SnapshotSettings(profile: .bare(name)) }
        #expect(SnapshotJob.lanes(.run, bare) == [[0, 2], [1]])
        var sending = try ["mail", "chat", "wiki"].map { name in
            try SnapshotSettings(profile: try Self.profile("[Replication]\nTarget=/backup\n", unit: "\(name).service"))
        }
        sending.insert(bare[1], at: 1)
        #expect(SnapshotJob.lanes(.run, sending) == [[0, 2, 3], [1]])
        #expect(SnapshotJob.lanes(.create, sending) == [[0], [1], [2], [3]], "create sends nothing")
    }

    @Test func flagsOverrideTheProfile() throws {
        let settings = try SnapshotSettings.resolve("web", loader: ProfileLoader(directories: []),
                                                    overrides: [("preserve", "3d"), ("latest", "1")])
        #expect(settings?.first?.policy.preserve == [.day: .last(3)] && settings?.first?.policy.latest == 1)
        #expect(try SnapshotSettings.resolve("web", loader: ProfileLoader(directories: []), overrides: []) == nil)
    }
}

/// The owner record of a state subvolume, read and written without a store.
@Suite struct StateOwnerRecordTests {
    @Test func anOwnerIsARecordAndTheOldFormIsStillRead() throws {
        let owner = StateOwner(unit: "web.service", path: "/var/lib/web data")
        #expect(try owner.encoded == "unit=web.service\npath=/var/lib/web data\n")
        #expect(StateOwner(recorded: try owner.encoded) == owner)
        #expect(StateOwner(recorded: "web.service /var/lib/web data") == owner, "what Replica 0.7 recorded")
        #expect(StateOwner(recorded: "web.service") == nil && StateOwner(recorded: "unit=web.service\n") == nil)
    }

    @Test func aPathThatWouldAddALineIsRefusedNotEscaped() {
        #expect(throws: ReplicaError.self) { _ = try StateOwner(unit: "web.service", path: "/var/lib/web\npath=/etc").encoded }
    }
}
