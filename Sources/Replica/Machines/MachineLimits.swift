import ReplicaKit

/// What one machine may take from the host, in systemd's resource-control terms
/// (`systemd.resource-control(5)`): applied to the cgroup the machine runs in, whichever starts
/// it — its unit (`systemctl set-property --runtime`), the scope systemd-nspawn asks for
/// (`--property=`), or Replica's own cgroup where no systemd runs (the cgroup files). Recorded
/// with the machine (from `fork`, `start` or its set file) and kept across starts.
public struct MachineLimits: Equatable, Sendable {
    /// `MemoryMax=`: bytes, past which the machine's processes are reclaimed, then killed.
    public var memoryMax: UInt64?
    /// `TasksMax=`: processes and threads.
    public var tasksMax: UInt64?
    /// `CPUWeight=`: 1…10000, its share of the CPU against other cgroups (100 is systemd's default).
    public var cpuWeight: UInt64?
    /// `CPUQuota=`: percent of one CPU it may use at most (200 is two CPUs).
    public var cpuQuota: UInt64?
    /// `IOWeight=`: 1…10000, its share of block I/O.
    public var ioWeight: UInt64?

    /// The extended attribute recording a machine's limits: `KEY=VALUE` lines.
    public static let attribute = "user.replica.limits"
    /// The keys, as a set file, `fork` and `start` (`--memory-max` …) name them.
    public static let keys = ["MemoryMax", "TasksMax", "CPUWeight", "CPUQuota", "IOWeight"]

    /// None: the machine takes what its cgroup's parents allow.
    public init() {}

    /// Whether no limit is set.
    public var isEmpty: Bool { self == MachineLimits() }

    /// Sets `key` (one of `keys`) from its systemd spelling: `512M`, `4096`, `200`, `50%`,
    /// refused as a usage error naming the key and what it takes.
    public mutating func set(_ key: String, _ text: String) throws(ReplicaError) {
        func number(_ range: ClosedRange<UInt64>, _ what: String) throws(ReplicaError) -> UInt64 {
            guard let value = UInt64(text), range.contains(value) else { throw .usage("\(key)=\(text): give \(what)") }
            return value
        }
        switch key {
        case "MemoryMax":
            guard let bytes = parseByteSize(text), bytes >= 16 << 20 else {
                throw .usage("\(key)=\(text): give a size of at least 16M (512M, 2G); a booted systemd needs more than that")
            }
            memoryMax = bytes
        case "TasksMax": tasksMax = try number(16...4_194_304, "a number of processes from 16 to 4194304")
        case "CPUWeight": cpuWeight = try number(1...10_000, "a weight from 1 to 10000 (100 is the default)")
        case "CPUQuota":
            guard text.hasSuffix("%"), let percent = UInt64(text.dropLast()), (1...100_000).contains(percent) else {
                throw .usage("\(key)=\(text): give a percentage of one CPU (50%, 200%)")
            }
            cpuQuota = percent
        case "IOWeight": ioWeight = try number(1...10_000, "a weight from 1 to 10000 (100 is the default)")
        default: throw .usage("\(key): not a machine limit; give one of \(Self.keys.joined(separator: ", "))")
        }
    }

    /// The limits as systemd writes them: `MemoryMax=536870912`, `CPUQuota=50%` (what
    /// `--property=`, the record and `list` use).
    public var settings: [(key: String, value: String)] {
        var settings: [(String, String)] = []
        if let memoryMax { settings.append(("MemoryMax", "\(memoryMax)")) }
        if let tasksMax { settings.append(("TasksMax", "\(tasksMax)")) }
        if let cpuWeight { settings.append(("CPUWeight", "\(cpuWeight)")) }
        if let cpuQuota { settings.append(("CPUQuota", "\(cpuQuota)%")) }
        if let ioWeight { settings.append(("IOWeight", "\(ioWeight)")) }
        return settings
    }

    /// The limits as `SetUnitProperties` takes them: each a `t`, the quota in µs per second
    /// (`CPUQuotaPerSecUSec`, as `systemctl set-property CPUQuota=` sends it).
    public var unitProperties: [(name: String, value: UInt64)] {
        var properties: [(String, UInt64)] = []
        if let memoryMax { properties.append(("MemoryMax", memoryMax)) }
        if let tasksMax { properties.append(("TasksMax", tasksMax)) }
        if let cpuWeight { properties.append(("CPUWeight", cpuWeight)) }
        if let cpuQuota { properties.append(("CPUQuotaPerSecUSec", cpuQuota * 10_000)) }
        if let ioWeight { properties.append(("IOWeight", ioWeight)) }
        return properties
    }

    /// The cgroup files that set them, each where its controller is: on the unified (v2)
    /// hierarchy when `unified(controller)` says so, else in the v1 one of that controller (as
    /// systemd translates them on a legacy or hybrid host): controller, file, value.
    public func cgroupFiles(unified: (String) -> Bool) -> [(controller: String, file: String, value: String)] {
        var files: [(String, String, String)] = []
        if let memoryMax { files.append(("memory", unified("memory") ? "memory.max" : "memory.limit_in_bytes", "\(memoryMax)")) }
        if let tasksMax { files.append(("pids", "pids.max", "\(tasksMax)")) }
        if let cpuWeight {
            // v1 shares: systemd's mapping, 100 ↔ 1024.
            files.append(unified("cpu") ? ("cpu", "cpu.weight", "\(cpuWeight)") : ("cpu", "cpu.shares", "\(max(2, cpuWeight * 1024 / 100))"))
        }
        if let cpuQuota {
            // A period of 100 ms, as systemd uses.
            files.append(unified("cpu") ? ("cpu", "cpu.max", "\(cpuQuota * 1000) 100000") : ("cpu", "cpu.cfs_quota_us", "\(cpuQuota * 1000)"))
        }
        if let ioWeight {
            // v1 blkio weights are 10…1000.
            files.append(unified("io") ? ("io", "io.weight", "default \(ioWeight)") : ("blkio", "blkio.weight", "\(min(1000, max(10, ioWeight / 10)))"))
        }
        return files
    }

    /// As recorded: the settings as `KEY=VALUE` lines.
    public var record: Record {
        var record = Record()
        for (key, value) in settings { try? record.append(key, value) }
        return record
    }

    /// Reads a record (or a set file's, `fork`'s settings): every key one of `keys`.
    public init(_ settings: [(key: String, value: String)]) throws(ReplicaError) {
        for (key, value) in settings { try set(key, value) }
    }

    /// `a` with every limit `other` sets replaced by `other`'s.
    public func overridden(by other: MachineLimits) -> MachineLimits {
        var merged = self
        merged.memoryMax = other.memoryMax ?? memoryMax
        merged.tasksMax = other.tasksMax ?? tasksMax
        merged.cpuWeight = other.cpuWeight ?? cpuWeight
        merged.cpuQuota = other.cpuQuota ?? cpuQuota
        merged.ioWeight = other.ioWeight ?? ioWeight
        return merged
    }

    /// As `list` shows them: `MemoryMax=512M TasksMax=512`, or `-`.
    public var summary: String {
        guard !isEmpty else { return "-" }
        return settings.map { (key, value) in
            key == "MemoryMax" ? "\(key)=\(formatByteSize(memoryMax!))" : "\(key)=\(value)"
        }.joined(separator: " ")
    }
}
