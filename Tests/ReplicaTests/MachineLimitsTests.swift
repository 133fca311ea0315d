import Replica
import ReplicaKit
import Testing

/// A machine's limits and user range as the command line, the set file and the record give them:
/// pure logic, no privileges.
struct MachineLimitsTests {
    @Test func limitsReadAsSystemdWritesThemAndTranslateForEveryWayToApplyThem() throws {
        var limits = MachineLimits()
        try limits.set("MemoryMax", "512M")
        try limits.set("TasksMax", "2048")
        try limits.set("CPUWeight", "50")
        try limits.set("CPUQuota", "150%")
        try limits.set("IOWeight", "200")
        #expect(limits.summary == "MemoryMax=512M TasksMax=2048 CPUWeight=50 CPUQuota=150% IOWeight=200")
        #expect(try MachineLimits(limits.record.fields.map { ($0.key, $0.value) }) == limits, "the record reads back")
        #expect(limits.unitProperties.map(\.name) == ["MemoryMax", "TasksMax", "CPUWeight", "CPUQuotaPerSecUSec", "IOWeight"])
        #expect(limits.unitProperties.first { $0.name == "CPUQuotaPerSecUSec" }?.value == 1_500_000)
        let v1 = limits.cgroupFiles(unified: { _ in false }).map { "\($0.controller)/\($0.file)=\($0.value)" }
        #expect(v1 == ["memory/memory.limit_in_bytes=536870912", "pids/pids.max=2048", "cpu/cpu.shares=512", "cpu/cpu.cfs_quota_us=150000",
                       "blkio/blkio.weight=20"])
        let v2 = limits.cgroupFiles(unified: { _ in true }).map { "\($0.controller)/\($0.file)=\($0.value)" }
        #expect(v2 == ["memory/memory.max=536870912", "pids/pids.max=2048", "cpu/cpu.weight=50", "cpu/cpu.max=150000 100000",
                       "io/io.weight=default 200"])
        var other = MachineLimits()
        try other.set("TasksMax", "100")
        #expect(limits.overridden(by: other).tasksMax == 100 && limits.overridden(by: other).memoryMax == 512 << 20)
    }

    @Test func aLimitThatCannotTakeEffectIsAUsageErrorNamingTheKey() {
        for (key, value) in [("MemoryMax", "1M"), ("MemoryMax", "lots"), ("TasksMax", "0"), ("CPUWeight", "10001"), ("CPUQuota", "50"),
                             ("CPUQuota", "0%"), ("IOWeight", "-1"), ("MemoryHigh", "1G")] {
            var limits = MachineLimits()
            #expect {
                try limits.set(key, value)
            } throws: { error in
                let error = error as? ReplicaError
                return error?.reason == .usage && (error?.hint ?? "").contains(key)
            }
            #expect(limits.isEmpty)
        }
    }

    @Test func aUserRangeIsABaseInThePoolOrNo() throws {
        #expect(try MachineUsers("524288") == .range(base: 524_288))
        #expect(try MachineUsers("no") == .host)
        #expect(try MachineUsers("524288").nspawnArguments == ["--private-users=524288:65536", "--private-users-ownership=auto"])
        #expect(MachineUsers.host.nspawnArguments == ["--private-users=no"])
        for bad in ["0", "524289", "65536", "1879048192", "yes", ""] {
            #expect(throws: ReplicaError.self) { try MachineUsers(bad) }
        }
    }
}
