import Glibc
import ReplicaKit

/// One subvolume's figures for the Prometheus textfile collector.
public struct SnapshotMetrics: Sendable {
    /// The subvolume.
    public var subvolume: String
    /// When the run was.
    public var runAt: UTCTimestamp
    /// Whether it succeeded.
    public var succeeded: Bool
    /// How long it took.
    public var runSeconds: Double
    /// How many snapshots it has now.
    public var count: Int
    /// When the oldest was taken.
    public var oldest: UTCTimestamp?
    /// When the newest was taken.
    public var newest: UTCTimestamp?

    /// The figures of a run of `subvolume` that left `snapshots`.
    public init(subvolume: String, runAt: UTCTimestamp, succeeded: Bool, runSeconds: Double, snapshots: [Snapshot]) {
        self.init(subvolume: subvolume, runAt: runAt, succeeded: succeeded, runSeconds: runSeconds, tally: SnapshotTally(snapshots))
    }

    /// The figures of a run of `subvolume` that left snapshots as `tally` counts them.
    public init(subvolume: String, runAt: UTCTimestamp, succeeded: Bool, runSeconds: Double, tally: SnapshotTally) {
        self.subvolume = subvolume
        self.runAt = runAt
        self.succeeded = succeeded
        self.runSeconds = runSeconds
        (count, oldest, newest) = (tally.count, tally.oldest, tally.newest)
    }
}

/// `replica.prom`: one file for every subvolume, merged under a lock (each timer instance updates
/// only its own subvolume's lines) and replaced atomically (a spare file written and swapped in,
/// `RootDirectory.rewriteFileAtomically`), so the collector never reads half a file. Not synced:
/// the figures are read again from the store at the next run, and a sync would cost a snapshot run
/// more than the snapshot does.
public enum MetricsTextfile {
    /// `/var/lib/replica/metrics/replica.prom`, where node_exporter's textfile collector can read it.
    public static let defaultPath = "/var/lib/replica/metrics/replica.prom"

    static let help: [(String, String)] = [
        ("replica_snapshot_last_success_timestamp_seconds", "When the last successful snapshot run for the subvolume ended."),
        ("replica_snapshot_last_run_timestamp_seconds", "When the last snapshot run for the subvolume ended."),
        ("replica_snapshot_last_run_success", "1 if the last snapshot run for the subvolume succeeded, else 0."),
        ("replica_snapshot_run_duration_seconds", "How long the last snapshot run took."),
        ("replica_snapshot_count", "Snapshots of the subvolume that are Replica's."),
        ("replica_snapshot_oldest_timestamp_seconds", "When the oldest snapshot was taken."),
        ("replica_snapshot_newest_timestamp_seconds", "When the newest snapshot was taken."),
    ]

    /// Replaces each subvolume's lines in the file at `path`, keeping every other subvolume's; the
    /// last success time of a failed run is carried over from the file.
    public static func update(_ figures: [SnapshotMetrics], at path: String) throws(ReplicaError) {
        let (directory, file) = splitPath(path)
        do {
            try createDirectories(directory)
            let root = try RootDirectory(directory)
            let lock = try root.openForReading("", [.directory])
            _ = try lock.lockExclusively(wait: nil, name: directory)
            var samples = (try? root.openForReading(file, [.regularFile, .noSymlinks]).readAll(limit: 16 << 20)).map(parse) ?? [:]
            for metrics in figures {
                let label = "subvolume=\"\(escape(metrics.subvolume))\""
                let previousSuccess = samples["replica_snapshot_last_success_timestamp_seconds"]?[label]
                var mine: [String: String] = [
                    "replica_snapshot_last_run_timestamp_seconds": String(metrics.runAt.secondsSinceEpoch),
                    "replica_snapshot_last_run_success": metrics.succeeded ? "1" : "0",
                    "replica_snapshot_run_duration_seconds": String(metrics.runSeconds),
                    "replica_snapshot_count": String(metrics.count),
                ]
                if metrics.succeeded { mine["replica_snapshot_last_success_timestamp_seconds"] = String(metrics.runAt.secondsSinceEpoch) }
                else if let previousSuccess { mine["replica_snapshot_last_success_timestamp_seconds"] = previousSuccess }
                if let oldest = metrics.oldest { mine["replica_snapshot_oldest_timestamp_seconds"] = String(oldest.secondsSinceEpoch) }
                if let newest = metrics.newest { mine["replica_snapshot_newest_timestamp_seconds"] = String(newest.secondsSinceEpoch) }
                for (name, _) in help { samples[name, default: [:]][label] = mine[name] }
            }
            try root.rewriteFileAtomically(file, contents: Array(render(samples).utf8))
        }
    }

    /// `name{labels} value` lines into name → labels → value; comments and anything else dropped
    /// (a line with `}` before its `{` too: the file is shared, and what another writer left in it
    /// must not stop a snapshot run). Read byte by byte, as the census is: every snapshot run reads
    /// the file, and splitting it into strings first took a fifth of the update.
    static func parse(_ bytes: [UInt8]) -> [String: [String: String]] {
        var samples: [String: [String: String]] = [:]
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0D }
        var next = bytes.startIndex
        while next < bytes.endIndex {
            let end = bytes[next...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
            let line = bytes[next..<end]
            next = end + 1
            guard line.first != UInt8(ascii: "#"), let open = line.firstIndex(of: UInt8(ascii: "{")),
                  let close = line.lastIndex(of: UInt8(ascii: "}")), open < close,
                  let name = help.first(where: { $0.0.utf8.elementsEqual(line[..<open]) })?.0 else { continue }
            var value = line[(close + 1)...]
            while let first = value.first, isSpace(first) { value.removeFirst() }
            while let last = value.last, isSpace(last) { value.removeLast() }
            guard !value.isEmpty else { continue }
            samples[name, default: [:]][String(decoding: line[(open + 1)..<close], as: UTF8.self)] = String(decoding: value, as: UTF8.self)
        }
        return samples
    }

    static func render(_ samples: [String: [String: String]]) -> String {
        var out = ""
        for (name, text) in help {
            guard let series = samples[name], !series.isEmpty else { continue }
            out += "# HELP \(name) \(text)\n# TYPE \(name) gauge\n"
            for labels in series.keys.sorted() { out += "\(name){\(labels)} \(series[labels]!)\n" }
        }
        return out
    }

    static func escape(_ value: String) -> String {
        value.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"").replacingAll("\n", with: "\\n")
    }

}
