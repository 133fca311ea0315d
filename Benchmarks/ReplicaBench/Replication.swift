import BenchmarkSupport
import Glibc
import ReplicaKit
import ReplicaStore

/// Replication against `btrfs send | btrfs receive`: the size of an incremental stream for a
/// 10 MiB change (the kernel's stream, counted), and a 1 GiB full send into a second store, whole
/// process against the shell pipeline, alternating, median of 3.
func benchmarkReplication() throws -> [Comparison] {
    try withBenchmarkStore(size: 3 << 30) { store, source in
        try withBenchmarkStore(size: 8 << 30) { _, target in
            try store.ensureSubvolume("web")
            try Command.check(["dd", "if=/dev/urandom", "of=\(source)/web/big", "bs=1M", "count=1024", "status=none"])
            let base = try store.snapshot("web", at: UTCTimestamp(secondsSinceEpoch: 1_800_000_000))
            try Command.check(["dd", "if=/dev/urandom", "of=\(source)/web/change", "bs=1M", "count=10", "status=none"])
            let next = try store.snapshot("web", at: UTCTimestamp(secondsSinceEpoch: 1_800_003_600))
            sync()
            let snapshots = try store.snapshots(of: "web")
            let (first, second) = (snapshots[0], snapshots[1])

            // The incremental stream, counted as it is written (wc -c drains the pipe).
            var pipe: [Int32] = [-1, -1], out: [Int32] = [-1, -1]
            Glibc.pipe(&pipe)
            Glibc.pipe(&out)
            let counter = try Command.spawn(["wc", "-c"], input: pipe[0], output: out[1])
            close(pipe[0])
            close(out[1])
            try store.writeStream(of: second, parent: first, to: pipe[1])
            close(pipe[1])
            let printed = try OwnedFD(adopting: out[0]).readAll(limit: 64)
            _ = try ExitStatus.wait(for: counter)
            let streamBytes = Int(String(decoding: printed, as: UTF8.self).split(separator: " ")[0].split(separator: "\n")[0]) ?? -1
            let changed = 10 << 20
            print("replica-bench: incremental stream for a 10 MiB change: \(streamBytes) bytes, "
                  + "\(format3(Double(streamBytes) / Double(changed + 64 << 10)))× (changed bytes + 64 KiB); target ≤ 1.1×")

            // A 1 GiB full send into the second store, whole process against the pipeline.
            var ours: [Double] = [], pipeline: [Double] = []
            for round in 0..<3 {
                var began = monotonicNanoseconds()
                try Command.check([Command.beside("replica-snap"), "send", "--store", source, "--to", "\(target)/ours\(round)", "web"])
                ours.append(Double(monotonicNanoseconds() - began))
                try Command.check(["mkdir", "-p", "\(target)/theirs\(round)"])
                began = monotonicNanoseconds()
                try Command.check(["sh", "-c", "btrfs send -q \(source)/snapshots/web/\(base) | btrfs receive -q \(target)/theirs\(round)"])
                try Command.check(["sh", "-c", "btrfs send -q -p \(source)/snapshots/web/\(base) \(source)/snapshots/web/\(next) "
                                   + "| btrfs receive -q \(target)/theirs\(round)"])
                pipeline.append(Double(monotonicNanoseconds() - began))
                try Command.check(["sh", "-c", "btrfs -q subvolume delete \(target)/ours\(round)/web/* \(target)/theirs\(round)/*"])
                try Command.check(["btrfs", "subvolume", "sync", target])  // the deleted copies' space is free again
            }
            _ = first
            return [Comparison(operation: "replica-snap send, 1 GiB full + 10 MiB incremental, whole process", replica: median(ours),
                               tool: "btrfs send | btrfs receive (same two):", toolTime: median(pipeline))]
        }
    }
}
