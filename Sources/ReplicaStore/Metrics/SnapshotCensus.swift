import Glibc
import ReplicaKit

/// How many of a subvolume's snapshots are ours, and when the oldest and the newest were taken:
/// what the metrics textfile shows of them.
public struct SnapshotTally: Equatable, Sendable {
    /// How many.
    public var count: Int
    /// When the oldest was taken; nil when there is none.
    public var oldest: UTCTimestamp?
    /// When the newest was taken; nil when there is none.
    public var newest: UTCTimestamp?

    /// The tally of `snapshots`.
    public init(_ snapshots: [Snapshot]) {
        self.init(count: snapshots.count, oldest: snapshots.map(\.name.time).min(), newest: snapshots.map(\.name.time).max())
    }

    init(count: Int, oldest: UTCTimestamp?, newest: UTCTimestamp?) {
        (self.count, self.oldest, self.newest) = (count, oldest, newest)
    }

    /// With one more snapshot, taken at `time` (which `--now` may put before the oldest).
    func adding(_ time: UTCTimestamp) -> SnapshotTally {
        SnapshotTally(count: count + 1, oldest: min(oldest ?? time, time), newest: max(newest ?? time, time))
    }
}

/// What a tally was counted from: the snapshot folder as `fstat` gives it, and the source
/// subvolume's ID. btrfs sets the folder's change time with every entry made, deleted or renamed
/// in it (a change time cannot be set by hand) and adds twice a new entry's name length to its
/// size; a subvolume replaced by hand has a new ID. So while the stamp is the same, so is the tally.
struct CensusStamp: Equatable {
    /// The folder's inode.
    var folder: UInt64
    /// Its change time (`st_ctim`), since the epoch.
    var changed: Duration
    /// Its size: on btrfs, twice the length of all its entries' names.
    var size: Int64
    /// The source subvolume's ID.
    var source: UInt64

    /// Whether this stamp is `before`'s with one entry named `name` made in the folder and nothing else.
    func follows(_ before: CensusStamp, adding name: String) -> Bool {
        folder == before.folder && source == before.source && size == before.size + 2 * Int64(name.utf8.count)
            && changed != before.changed
    }
}

/// A subvolume's tally and the stamp it holds for, kept as one line in the subvolume's lock file
/// (`snapshots/NAME.lock`): `create` adds its snapshot to it instead of reading every snapshot
/// again, so its cost does not grow with the number of snapshots. Anything else that changes the
/// folder (a snapshot deleted, renamed or made by hand, `prune`) changes the stamp, and the next
/// `create` counts afresh; `run` and `prune`, which read every snapshot anyway, clear it.
struct SnapshotCensus: Equatable {
    var tally: SnapshotTally
    var stamp: CensusStamp

    /// `replica-census 1 SOURCE FOLDER SECONDS ATTOSECONDS SIZE COUNT OLDEST NEWEST`: the stamp,
    /// then the tally with `-` for no time.
    var record: [UInt8] {
        let (seconds, attoseconds) = stamp.changed.components
        let times = [tally.oldest, tally.newest].map { $0.map { String($0.secondsSinceEpoch) } ?? "-" }
        return Array(("replica-census 1 \(stamp.source) \(stamp.folder) \(seconds) \(attoseconds) \(stamp.size) "
            + "\(tally.count) \(times[0]) \(times[1])\n").utf8)
    }

    /// The census of `bytes` as `record` writes them, up to the newline; nil for anything else (an
    /// empty lock file, a record cut short, a time before 1970). Read byte by byte: a `create`
    /// reads it every time.
    init?(record bytes: some Collection<UInt8>) {
        let prefix = "replica-census 1 ".utf8
        guard bytes.starts(with: prefix) else { return nil }
        var fields: [Int64?] = [], value: Int64 = 0, digits = 0, none = false
        for byte in bytes.dropFirst(prefix.count) {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9") where !none && digits < 18:
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
                digits += 1
            case UInt8(ascii: "-") where !none && digits == 0:
                none = true
            case UInt8(ascii: " "), UInt8(ascii: "\n"):
                guard none || digits > 0 else { return nil }
                fields.append(none ? nil : value)
                (value, digits, none) = (0, 0, false)
                if byte == UInt8(ascii: "\n") { self.init(fields); return }
            default:
                return nil
            }
        }
        return nil
    }

    /// From the eight fields after the version; nil unless only the times may be missing, and
    /// both are exactly when there is no snapshot.
    private init?(_ fields: [Int64?]) {
        guard fields.count == 8, let source = fields[0], let folder = fields[1], let seconds = fields[2],
              let attoseconds = fields[3], let size = fields[4], let count = fields[5],
              (count == 0) == (fields[6] == nil), (count == 0) == (fields[7] == nil) else { return nil }
        tally = SnapshotTally(count: Int(count), oldest: fields[6].map(UTCTimestamp.init), newest: fields[7].map(UTCTimestamp.init))
        stamp = CensusStamp(folder: UInt64(folder), changed: Duration(secondsComponent: seconds, attosecondsComponent: attoseconds),
                            size: size, source: UInt64(source))
    }

    init(tally: SnapshotTally, stamp: CensusStamp) { (self.tally, self.stamp) = (tally, stamp) }
}

extension Store {
    /// The stamp of the subject's snapshot folder and source now; nil when either cannot be read.
    func censusStamp(of subject: SnapshotSubject) -> CensusStamp? {
        guard let folder = try? subject.folder.status(), let source = try? Btrfs.info(subject.source, path: subject.name).id else { return nil }
        return CensusStamp(folder: folder.inode, changed: folder.changed, size: folder.size, source: source)
    }

    /// After a `create` under `lock`, which took `created` (nil: that second's snapshot was
    /// already taken), with the lock file's census `kept` and the stamp `before` the snapshot: the
    /// tally, from `kept` when it held at `before` and the folder changed by that one snapshot only;
    /// else counted afresh when `count`, else none. The census is kept for the next `create`
    /// whenever a tally is known to hold for the folder as it is now; without metrics and without
    /// a census, nothing is read.
    func tallyAfterCreate(_ subject: SnapshotSubject, created: String?, kept: (census: SnapshotCensus?, length: Int), before: CensusStamp?,
                          lock: borrowing SubvolumeLock, count: Bool) -> SnapshotTally? {
        let (kept, length) = kept
        let name = subject.name
        guard count || kept != nil else { return nil }
        guard let after = censusStamp(of: subject) else { return count ? (try? snapshots(of: name)).map(SnapshotTally.init) : nil }
        var census: SnapshotCensus?
        if let kept, let before, kept.stamp == before {
            if let created, let time = SnapshotName(parsing: created)?.time, after.follows(before, adding: created) {
                census = SnapshotCensus(tally: kept.tally.adding(time), stamp: after)
            } else if created == nil, after == before {
                census = kept
            }
        }
        var tally = census?.tally
        if tally == nil, count, let snapshots = try? snapshots(of: name) {
            let counted = SnapshotTally(snapshots)
            tally = counted
            // Kept only when nothing changed the folder while it was read.
            if censusStamp(of: subject) == after { census = SnapshotCensus(tally: counted, stamp: after) }
        }
        if census != kept { lock.keep(census, replacing: length) }
        return tally
    }
}

extension SubvolumeLock {
    /// The census in the lock file, if it holds one (`pread`), and the file's length.
    func census() -> (census: SnapshotCensus?, length: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { buffer in
            let read = pread(fd.rawValue, buffer.baseAddress, buffer.count, 0)
            guard read > 0 else { return (nil, 0) }
            return (SnapshotCensus(record: buffer[..<read]), read)
        }
    }

    /// Replaces the census in the lock file (`pwrite`, then `ftruncate` only when the old one was
    /// longer), or clears it when `census` is nil. A write that fails clears it: a failure only
    /// costs the next `create` a full count.
    func keep(_ census: SnapshotCensus?, replacing length: Int) {
        let raw = fd.rawValue
        guard let record = census?.record else { _ = ftruncate(raw, 0); return }
        let written = record.withUnsafeBytes { pwrite(raw, $0.baseAddress, $0.count, 0) }
        if written != record.count || (length > record.count && ftruncate(raw, off_t(record.count)) != 0) { _ = ftruncate(raw, 0) }
    }

    /// Clears the census, if there is one: `run` and `prune` read every snapshot anyway, and a
    /// change the stamp does not show (a snapshot made writable in place) is counted at the next `create`.
    func forgetCensus() {
        if ((try? fd.status().size) ?? 0) > 0 { keep(nil, replacing: 0) }
    }
}
