import BenchmarkSupport
import Glibc
import ReplicaKit
import ReplicaStore

/// Replication against `btrfs send | btrfs receive`: the size of an incremental stream for a
/// 10 MiB change (the kernel's stream, counted); a 1 GiB full + 10 MiB incremental send into a
/// second store, whole process against the shell pipeline; the receiving side alone (the confined
/// receive against `btrfs receive`) from the same two streams written to files. Each measured until
/// its data is on the disk, which side goes first alternating, median of 4.
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

            // Each side starts with nothing left to write back and ends once its data is on the disk;
            // which goes first alternates (the second to write on a fresh loop image is slower).
            func measure(_ work: () throws -> Void) throws -> Double {
                sync()
                let began = monotonicNanoseconds()
                try work()
                try Command.check(["sync", "-f", target])
                return Double(monotonicNanoseconds() - began)
            }
            func alternate(rounds: Int, _ ours: (Int) throws -> Void, _ theirs: (Int) throws -> Void,
                           emptying: (Int) throws -> Void) throws -> (ours: [Double], theirs: [Double]) {
                var times: (ours: [Double], theirs: [Double]) = ([], [])
                for round in 0..<rounds {
                    if round % 2 == 0 {
                        times.ours.append(try measure { try ours(round) })
                        times.theirs.append(try measure { try theirs(round) })
                    } else {
                        times.theirs.append(try measure { try theirs(round) })
                        times.ours.append(try measure { try ours(round) })
                    }
                    try emptying(round)
                    try Command.check(["btrfs", "subvolume", "sync", target])  // the deleted copies' space is free again
                }
                return times
            }

            // A 1 GiB full send into the second store, whole process against the pipeline.
            let sends = try alternate(rounds: 4, { round in
                try Command.check([Command.beside("replica-snap"), "send", "--store", source, "--to", "\(target)/ours\(round)", "web"])
            }, { round in
                try Command.check(["mkdir", "-p", "\(target)/theirs\(round)"])
                try Command.check(["sh", "-c", "btrfs send -q \(source)/snapshots/web/\(base) | btrfs receive -q \(target)/theirs\(round)"])
                try Command.check(["sh", "-c", "btrfs send -q -p \(source)/snapshots/web/\(base) \(source)/snapshots/web/\(next) "
                                   + "| btrfs receive -q \(target)/theirs\(round)"])
            }, emptying: { round in
                try Command.check(["sh", "-c", "btrfs -q subvolume delete \(target)/ours\(round)/web/* \(target)/theirs\(round)/*"])
            })

            // The receiving side alone, from the same two streams written to files: the confined
            // receive against plain `btrfs receive`.
            let streams = "\(target)/streams"
            try Command.check(["mkdir", "-p", streams])
            try Command.check(["sh", "-c", "btrfs send -q \(source)/snapshots/web/\(base) > \(streams)/full && btrfs send -q -p "
                               + "\(source)/snapshots/web/\(base) \(source)/snapshots/web/\(next) > \(streams)/incremental"])
            let receives = try alternate(rounds: 4, { round in
                try Command.check(["mkdir", "-p", "\(target)/rx-ours\(round)"])
                for (snapshot, file) in [(first, "full"), (second, "incremental")] {
                    try Command.check(["sh", "-c", "\(Command.beside("replica-snap")) receive --name \(snapshot.name) --uuid \(snapshot.info.uuid) "
                                       + "\(target)/rx-ours\(round) < \(streams)/\(file) > /dev/null"])
                }
            }, { round in
                try Command.check(["mkdir", "-p", "\(target)/rx-theirs\(round)"])
                for file in ["full", "incremental"] {
                    try Command.check(["sh", "-c", "btrfs receive -q \(target)/rx-theirs\(round) < \(streams)/\(file)"])
                }
            }, emptying: { round in
                try Command.check(["sh", "-c", "btrfs -q subvolume delete \(target)/rx-ours\(round)/* \(target)/rx-theirs\(round)/*"])
            })
            return [Comparison(operation: "replica-snap send, 1 GiB full + 10 MiB incremental, whole process", replica: median(sends.ours),
                               tool: "btrfs send | btrfs receive (same two):", toolTime: median(sends.theirs)),
                    Comparison(operation: "replica-snap receive (confined), 1 GiB full + 10 MiB incremental, from files", replica: median(receives.ours),
                               tool: "btrfs receive (same two streams):", toolTime: median(receives.theirs))]
        }
    }
}
