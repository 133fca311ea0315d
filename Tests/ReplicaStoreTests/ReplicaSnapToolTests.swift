import Foundation
import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// replica-snap as an operator runs it: a separate process, its exit code, its output.
@Suite(.requiresBtrfs) struct ReplicaSnapToolTests {
    static func snap(_ arguments: [String]) throws -> CommandResult {
        try Command.run([try builtTool("replica-snap")] + arguments)
    }

    /// A store with subvolume `web`, a profile directory, and a metrics path, all throwaway.
    static func withSetup<T>(_ body: (_ store: String, _ profiles: String, _ metrics: String) throws -> T) throws -> T {
        try withBtrfsImage { image in
            try withTemporaryDirectory { dir in
                try Store(path: image.mountPoint).ensureSubvolume("web")
                return try body(image.mountPoint, dir, "\(dir)/replica.prom")
            }
        }
    }

    @Test func exitCodesFollowTheConvention() throws {
        try Self.withSetup { store, profiles, metrics in
            let common = ["--store", store, "--profiles", profiles]
            #expect(try Self.snap(["create"] + common + ["--metrics-file", metrics, "web"]).status == .exited(0))
            // Not configured: no profile, no policy flags.
            let unconfigured = try Self.snap(["prune"] + common + ["web"])
            #expect(unconfigured.status == .exited(6))
            #expect(unconfigured.output.contains("\(profiles)/web.service.conf"))
            // Usage: a policy that cannot take effect, an unknown option.
            let bad = try Self.snap(["prune"] + common + ["--preserve", "24x", "web"])
            #expect(bad.status == .exited(2) && bad.output.contains("--preserve: \"24x\" is not N or *"), "\(bad.output)")
            let unknown = try Self.snap(["prune", "--bogus", "web"])
            #expect(unknown.status == .exited(2) && unknown.output.contains("unknown option --bogus"))
            #expect(try Self.snap(["frobnicate"]).status == .exited(2))
            #expect(try Self.snap(["prune", "--wait"]).status == .exited(2), "an option without its value")
            let help = try Self.snap(["prune", "--help"])
            #expect(help.status == .exited(0) && help.output.contains("--preserve-min <value>"))
            // Partial failure: one subvolume fine, one missing.
            let partial = try Self.snap(["run"] + common + ["--metrics-file", "", "--preserve", "1d",
                                                            "--now", "2030-01-01T00:00:00Z", "web", "missing"])
            #expect(partial.status == .exited(10), "\(partial.output)")
            // Not btrfs.
            let notBtrfs = try Self.snap(["list", "--store", profiles, "web"])
            #expect(notBtrfs.status == .exited(1) && notBtrfs.output.contains("not a btrfs filesystem"))
        }
    }

    @Test func aHeldLockExits3AndWaitWaits() throws {
        try Self.withSetup { store, profiles, _ in
            let s = try Store(path: store)
            let lock = try SubvolumeLock.acquire("web", in: s)
            let result = try Self.snap(["create", "--store", store, "--metrics-file", "", "web"])
            #expect(result.status == .exited(3))
            #expect(result.output.contains("process \(getpid()) is writing snapshots of web"))
            // Read-only commands never wait for or take the lock.
            #expect(try Self.snap(["list", "--store", store, "web"]).status == .exited(0))
            #expect(try Self.snap(["prune", "--dry-run", "--preserve", "1d", "--store", store, "web"]).status == .exited(0))
            let delete = try Self.snap(["delete", "--store", store, "web", "web.20261122T000000Z"])
            #expect(delete.status == .exited(3), "delete takes the same lock: \(delete.output)")
            _ = lock.subvolume
        }
    }

    /// `delete` deletes what is ours, names why it will not touch the rest, and says partial.
    @Test func deleteRemovesOnlyOurSnapshotsAndNamesWhyNot() throws {
        try Self.withSetup { store, _, _ in
            let common = ["--store", store, "--metrics-file", ""]
            for minute in ["10", "11"] {
                #expect(try Self.snap(["create"] + common + ["--now", "2026-11-22T00:\(minute):00Z", "web"]).status == .exited(0))
            }
            mkdir("\(store)/snapshots/web/web.20261122T001200Z", 0o755)  // not a snapshot of ours
            let result = try Self.snap(["delete", "--store", store, "web", "web.20261122T001000Z", "web.20261122T001200Z", "web.nope"])
            #expect(result.status == .exited(10), "\(result.output)")
            #expect(result.output.contains("deleted web.20261122T001000Z"))
            #expect(result.output.contains("web.20261122T001200Z: not deleted: not ours"), "\(result.output)")
            #expect(result.output.contains("web.nope: not deleted: no such snapshot of web"), "\(result.output)")
            #expect(try Store(path: store).snapshots(of: "web").map(\.name.description) == ["web.20261122T001100Z"])
            let all = try Self.snap(["list", "--store", store])
            #expect(all.status == .exited(0) && all.output.contains("web.20261122T001100Z"), "list without names: every subvolume")
            let unknown = try Self.snap(["check", "--store", store, "--warning", "5x", "web"])
            #expect(unknown.status == .exited(3), "a check that cannot judge is UNKNOWN: \(unknown.output)")
            #expect(access("\(store)/snapshots/web/web.20261122T001200Z", F_OK) == 0)
        }
    }

    /// As root, a snapshot folder is read from the btrfs root tree in a few searches; without
    /// CAP_SYS_ADMIN (a unit whose bounding set lacks it) each entry is opened. Both must sort every
    /// kind of entry the same way, and the tree must give what opening each subvolume gives.
    @Test func theTreeAndEachEntryOpenedAgreeOnWhatIsOurs() throws {
        try Self.withSetup { store, _, _ in
            let common = ["--store", store, "--metrics-file", ""]
            try Store(path: store).ensureSubvolume("other")
            for minute in ["10", "11", "12"] {
                #expect(try Self.snap(["create"] + common + ["--now", "2026-11-22T00:\(minute):00Z", "web"]).status == .exited(0))
            }
            #expect(try Self.snap(["create"] + common + ["--now", "2026-11-22T00:10:00Z", "other"]).status == .exited(0))
            let dir = "\(store)/snapshots/web"
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(store)/web", "\(dir)/web.20261122T001300Z"])  // writable
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(store)/other", "\(dir)/web.20261122T001400Z"])
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(store)/web", "\(dir)/hand-made"])
            mkdir("\(dir)/web.20261122T001500Z", 0o700)  // a folder holding a subvolume: neither is ours
            try Command.check(["btrfs", "-q", "subvolume", "create", "\(dir)/web.20261122T001500Z/web.20261122T001600Z"])
            let file = creat("\(dir)/web.20261122T001700Z", 0o600)
            #expect(file >= 0 && close(file) == 0)
            #expect(symlink("/", "\(dir)/web.20261122T001800Z") == 0)

            // The tree's children of the folder: exactly its subvolume entries, each as opening it says.
            let folder = try OwnedFD.open(dir, O_RDONLY | O_DIRECTORY)
            let children = try #require(try Btrfs.childSubvolumes(in: folder, path: dir)).byName
            let subvolumeEntries = ["hand-made", "web.20261122T001000Z", "web.20261122T001100Z", "web.20261122T001200Z",
                                    "web.20261122T001300Z", "web.20261122T001400Z"]
            #expect(children.keys.sorted() == subvolumeEntries)
            for name in subvolumeEntries {
                let opened = try OwnedFD.open("\(dir)/\(name)", O_RDONLY | O_DIRECTORY)
                #expect(children[name] == (try Btrfs.info(opened, path: name)), "\(name)")
            }
            let empty = try OwnedFD.open("\(store)/web", O_RDONLY | O_DIRECTORY)
            #expect(try Btrfs.childSubvolumes(in: empty, path: "web")?.count == 0)

            // The tool as root, and without CAP_SYS_ADMIN (the control: the other way of reading).
            let asRoot = try Self.snap(["list", "--store", store, "--json", "web"])
            let withoutAdmin = try Command.run(["setpriv", "--bounding-set", "-sys_admin", "--", try builtTool("replica-snap"),
                                                "list", "--store", store, "--json", "web"])
            #expect(asRoot.status == .exited(0) && withoutAdmin.status == .exited(0), "\(asRoot.output)\n\(withoutAdmin.output)")
            func sorted(_ output: String) throws -> (ours: [String], foreign: [String: String]) {
                let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
                let subvolume = try #require((json?["subvolumes"] as? [[String: Any]])?.first)
                let ours = (subvolume["snapshots"] as? [[String: Any]] ?? []).map { "\($0["name"]!) \($0["id"]!) \($0["uuid"]!)" }
                var foreign: [String: String] = [:]
                for entry in subvolume["foreign"] as? [[String: Any]] ?? [] { foreign["\(entry["name"]!)"] = "\(entry["reason"]!)" }
                return (ours, foreign)
            }
            let tree = try sorted(asRoot.output), opened = try sorted(withoutAdmin.output)
            #expect(tree.ours.count == 3 && tree.ours == opened.ours)
            #expect(tree.foreign.keys.sorted() == ["hand-made", "web.20261122T001300Z", "web.20261122T001400Z",
                                                   "web.20261122T001500Z", "web.20261122T001700Z", "web.20261122T001800Z"])
            #expect(tree.foreign.keys.sorted() == opened.foreign.keys.sorted())
            for name in ["hand-made", "web.20261122T001300Z", "web.20261122T001400Z", "web.20261122T001500Z"] {
                #expect(tree.foreign[name] == opened.foreign[name], "\(name): \(tree.foreign[name] ?? "") / \(opened.foreign[name] ?? "")")
            }
        }
    }

    /// Services snapshotted in turn interleave their snapshots' ids, so a folder's subvolumes may be
    /// spread among every other's: ids at most 8 apart are read in one walk over their range, which
    /// passes over the other subvolumes between them, and an id farther from its neighbours by a
    /// search of its own; never by the filesystem's whole range. Each must come out as opening it says.
    @Test func aFolderWhoseIdsAreSpreadAmongOthersIsReadByItsOwnEntries() throws {
        try Self.withSetup { store, _, _ in
            let opened = try Store(path: store)
            var minute: Int64 = 0
            func snapshotWeb() throws {
                _ = try opened.snapshot("web", at: UTCTimestamp(secondsSinceEpoch: 1_790_000_000 + minute * 60))
                minute += 1
            }
            // Two back to back; two each followed by another subvolume's snapshot (walked with
            // theirs between); two each after a dozen other subvolumes (a search each).
            try snapshotWeb()
            try snapshotWeb()
            try opened.ensureSubvolume("other")
            for _ in 0..<2 {
                try snapshotWeb()
                _ = try opened.snapshot("other", at: UTCTimestamp(secondsSinceEpoch: 1_790_000_000 + minute * 60))
            }
            for round in 0..<2 {
                for other in 0..<12 { try opened.ensureSubvolume("other\(round)x\(other)") }
                try snapshotWeb()
            }
            let dir = "\(store)/snapshots/web"
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "-r", "\(store)/other1x1", "\(dir)/web.20270101T000000Z"])
            mkdir("\(dir)/web.20270102T000000Z", 0o700)
            let folder = try OwnedFD.open(dir, O_RDONLY | O_DIRECTORY)
            let children = try #require(try Btrfs.childSubvolumes(in: folder, path: dir)).byName
            // The control: the layout has ids next to each other, ids with another's between, and ids far apart.
            let ids = children.values.map(\.id).sorted()
            let gaps = zip(ids.dropFirst(), ids).map { $0 - $1 }
            #expect(children.count == 7 && gaps.contains(1) && gaps.contains { $0 > 1 && $0 <= 8 } && gaps.contains { $0 > 8 },
                    "ids \(ids)")
            for name in try DirectoryEntries.names(in: folder) where name != "web.20270102T000000Z" {
                let entry = try OwnedFD.open("\(dir)/\(name)", O_RDONLY | O_DIRECTORY)
                #expect(children[name] == (try Btrfs.info(entry, path: name)), "\(name)")
            }
            #expect(children["web.20270102T000000Z"] == nil, "a plain folder is not a subvolume")
            #expect(try opened.snapshots(of: "web").count == 6)
        }
    }

    /// btrfs puts a new entry's index item in the tree at the next commit, so for up to the commit
    /// interval the tree does not know an entry the directory shows: a subvolume made there, or
    /// moved in (a snapshot of ours cannot be: a read-only subvolume is not renamed, and making one
    /// commits). Each is still judged for what it is, not taken for a plain entry.
    @Test func anEntryTheTreeDoesNotShowYetIsJudgedForWhatItIs() throws {
        try Self.withSetup { store, _, _ in
            try Command.check(["mount", "-o", "remount,commit=3600", store])  // no periodic commit in between
            let opened = try Store(path: store)
            try opened.snapshot("web", at: UTCTimestamp(secondsSinceEpoch: 1_790_000_000))
            let dir = "\(store)/snapshots/web"
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(store)/web", "\(store)/aside"])  // commits
            #expect(rename("\(store)/aside", "\(dir)/web.20270101T000000Z") == 0)
            try Command.check(["btrfs", "-q", "subvolume", "create", "\(dir)/web.20270102T000000Z"])

            // The control: the tree does not show either yet.
            let children = try #require(try Btrfs.childSubvolumes(in: try OwnedFD.open(dir, O_RDONLY | O_DIRECTORY), path: dir)).byName
            #expect(children.keys.sorted() == ["web.20260921T141320Z"], "\(children.keys.sorted())")
            let inventory = try opened.inventory(of: "web")
            #expect(inventory.snapshots.map(\.name.description) == ["web.20260921T141320Z"])
            #expect(inventory.foreign.map(\.name) == ["web.20270101T000000Z", "web.20270102T000000Z"])
            #expect(inventory.foreign.allSatisfy { $0.reason == "writable, so not a snapshot we took" }, "\(inventory.foreign)")
        }
    }

    @Test func profilesDriveThePolicyAndJSONHasASchema() throws {
        try Self.withSetup { store, profiles, metrics in
            let fd = try OwnedFD.open("\(profiles)/web.service.conf", O_WRONLY | O_CREAT, mode: 0o644)
            try fd.writeAll(Array("[Snapshots]\nPreserve=2d\n".utf8))
            let common = ["--store", store, "--profiles", profiles, "--metrics-file", metrics]
            for day in 10...14 {
                let r = try Self.snap(["create"] + common + ["--now", "2026-11-\(day)T10:00:00Z", "web"])
                #expect(r.status == .exited(0), "\(r.output)")
            }
            // Counted once each, the one a create takes too (listed while it is taken), and the one
            // of a second already taken.
            #expect(try Self.snap(["create"] + common + ["--now", "2026-11-14T10:00:00Z", "web"]).status == .exited(0))
            let counted = String(decoding: try OwnedFD.open(metrics, O_RDONLY).readAll(), as: UTF8.self)
            #expect(counted.contains("replica_snapshot_count{subvolume=\"web\"} 5\n")
                    && counted.contains("replica_snapshot_newest_timestamp_seconds{subvolume=\"web\"} \(UTCTimestamp(iso8601: "2026-11-14T10:00:00Z")!.secondsSinceEpoch)\n")
                    && counted.contains("replica_snapshot_oldest_timestamp_seconds{subvolume=\"web\"} \(UTCTimestamp(iso8601: "2026-11-10T10:00:00Z")!.secondsSinceEpoch)\n"),
                    "\(counted)")
            let dry = try Self.snap(["prune", "--json", "--dry-run"] + common + ["--now", "2026-11-14T12:00:00Z", "web"])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(dry.output.utf8)) as? [String: Any])
            #expect(json["schema"] as? String == "replica.v1" && json["tool"] as? String == "replica-snap")
            let subvolume = try #require((json["subvolumes"] as? [[String: Any]])?.first)
            let decisions = try #require(subvolume["decisions"] as? [[String: Any]])
            let wouldDelete = decisions.filter { $0["action"] as? String == "delete" }.compactMap { $0["name"] as? String }
            #expect(wouldDelete == ["web.20261110T100000Z", "web.20261111T100000Z"])
            let real = try Self.snap(["prune"] + common + ["--now", "2026-11-14T12:00:00Z", "web"])
            #expect(real.status == .exited(0))
            let left = try Store(path: store).snapshots(of: "web").map(\.name.description)
            #expect(left == ["web.20261112T100000Z", "web.20261113T100000Z", "web.20261114T100000Z"])
            let prom = String(decoding: try OwnedFD.open(metrics, O_RDONLY).readAll(), as: UTF8.self)
            #expect(prom.contains("replica_snapshot_count{subvolume=\"web\"} 3\n"))
        }
    }

    @Test func checkJudgesFreshnessLikeAMonitoringPlugin() throws {
        try Self.withSetup { store, _, _ in
            let common = ["check", "--store", store, "--warning", "1h", "--critical", "1d"]
            let none = try Self.snap(common + ["web"])
            #expect(none.status == .exited(2) && none.output.hasPrefix("CRITICAL: web: no snapshots"))
            _ = try Self.snap(["create", "--store", store, "--metrics-file", "", "--now", "2026-11-22T00:00:00Z", "web"])
            #expect(try Self.snap(common + ["--now", "2026-11-22T00:30:00Z", "web"]).status == .exited(0))
            #expect(try Self.snap(common + ["--now", "2026-11-22T02:00:00Z", "web"]).status == .exited(1))
            #expect(try Self.snap(common + ["--now", "2026-11-23T02:00:00Z", "web"]).status == .exited(2))
        }
    }

    /// Two creates in one second: the first makes a snapshot and says so; the second makes none and
    /// says that (it once printed "created" for the first one's snapshot), in text and JSON.
    @Test func twoCreatesInOneSecondGiveOneResultEach() throws {
        try Self.withSetup { store, _, _ in
            let create = ["create", "--store", store, "--metrics-file", "", "--now", "2026-11-22T00:00:00Z", "web"]
            let first = try Self.snap(create)
            #expect(first.status == .exited(0) && first.output.contains("web: created web.20261122T000000Z"), "\(first.output)")
            let second = try Self.snap(create)
            #expect(second.status == .exited(0) && !second.output.contains("created")
                    && second.output.contains("web.20261122T000000Z of this second exists already; nothing made"), "\(second.output)")
            let json = try Self.snap(create + ["--json"])
            #expect(json.output.contains("\"created\": null") && json.output.contains("\"already_taken\": \"web.20261122T000000Z\""),
                    "\(json.output)")
            #expect(try Store(path: store).snapshots(of: "web").count == 1)
        }
    }

    /// `create` adds its snapshot to the count kept in the lock file instead of reading every
    /// snapshot again, but only while the folder is as it was counted: from the careless operator's
    /// side, a snapshot deleted, renamed or made by hand, the subvolume replaced by hand, or a
    /// record cut short each give the true count at the next `create`. The positive control: a
    /// forged count with the stamp left as it is shows in the metrics, so the checks after it
    /// cannot pass by counting afresh every time.
    @Test func createCountsAfreshWhenTheFolderChangedBehindIt() throws {
        try Self.withSetup { store, profiles, metrics in
            let lock = "\(store)/snapshots/web.lock", folder = "\(store)/snapshots/web"
            var minute = 0
            func create(metrics file: String = metrics) throws {
                minute += 1
                let r = try Self.snap(["create", "--store", store, "--profiles", profiles, "--metrics-file", file,
                                       "--now", "2026-11-22T10:\(String(minute).leftPadded(2)):00Z", "web"])
                #expect(r.status == .exited(0), "\(r.output)")
            }
            func shown() throws -> Int? {
                let text = String(decoding: try OwnedFD.open(metrics, O_RDONLY).readAll(), as: UTF8.self)
                let line = text.split(separator: "\n").first { $0.hasPrefix("replica_snapshot_count{subvolume=\"web\"} ") }
                return line.flatMap { Int($0.split(separator: " ").last!) }
            }
            func truth() throws -> Int { try Store(path: store).snapshots(of: "web").count }
            func record() throws -> [Substring] {
                String(decoding: try OwnedFD.open(lock, O_RDONLY).readAll(), as: UTF8.self).split(separator: " ")
            }
            /// The record with its count replaced, everything else (the stamp) as it was.
            func forge(_ count: Int, cutShort: Bool = false) throws {
                var fields = try record()
                #expect(fields.count == 10 && fields[0] == "replica-census", "\(fields)")
                fields[7] = "\(count)"
                let text = fields.joined(separator: " ")
                let fd = try OwnedFD.open(lock, O_WRONLY | O_TRUNC)
                try fd.writeAll(Array((cutShort ? String(text.dropLast()) : text).utf8))
            }

            try create()
            try create(metrics: "")  // one without metrics keeps the count too
            try create()
            #expect(try shown() == 3 && truth() == 3)
            #expect(try record()[7] == "3")
            // The control: a forged count is believed while the folder is as it was.
            try forge(40)
            try create()
            #expect(try shown() == 41, "the count kept in the lock file is not used")

            // A snapshot deleted by hand.
            try forge(40)
            try Command.check(["btrfs", "-q", "subvolume", "delete", "\(folder)/web.20261122T100100Z"])
            try create()
            #expect(try shown() == truth() && truth() == 4)
            // A writable subvolume named like a snapshot, made by hand (not ours).
            try forge(40)
            try Command.check(["btrfs", "-q", "subvolume", "snapshot", "\(store)/web", "\(folder)/web.20261122T095900Z"])
            try create()
            #expect(try shown() == truth() && truth() == 5)
            // A snapshot renamed by hand out of the naming scheme.
            try forge(40)
            #expect(rename("\(folder)/web.20261122T100200Z", "\(folder)/kept-by-hand") == 0)
            try create()
            #expect(try shown() == truth() && truth() == 5)
            // A record cut short is no record.
            try forge(40, cutShort: true)
            try create()
            #expect(try shown() == truth() && truth() == 6)
            // `prune`, which reads every snapshot, clears it (a snapshot made writable in place does
            // not change the folder; the next create counts it out).
            try Command.check(["btrfs", "property", "set", "\(folder)/web.20261122T100700Z", "ro", "false"])
            #expect(try Self.snap(["prune", "--store", store, "--profiles", profiles, "--metrics-file", metrics,
                                   "--preserve-min", "all", "--now", "2026-11-22T11:00:00Z", "web"]).status == .exited(0))
            #expect(try OwnedFD.open(lock, O_RDONLY).readAll().isEmpty)
            try create()
            #expect(try shown() == truth() && truth() == 6)
            // The subvolume replaced by hand: the old snapshots are no longer its own.
            try forge(40)
            try Command.check(["btrfs", "-q", "subvolume", "delete", "\(store)/web"])
            try Command.check(["btrfs", "-q", "subvolume", "create", "\(store)/web"])
            try create()
            #expect(try shown() == truth() && truth() == 1)
        }
    }

    /// One run over many subvolumes works on several at once (`--jobs`) and reads as if it had gone
    /// one by one: each reported in the order named, a name given twice snapshotted once (the second
    /// finds the first's snapshot, not its lock), nothing half-made.
    @Test func aRunOverManySubvolumesReportsEachInTheOrderNamed() throws {
        try Self.withSetup { store, profiles, metrics in
            let names = (1...11).map { "app\($0)" }
            for name in names { try Store(path: store).ensureSubvolume(name) }
            let common = ["--store", store, "--profiles", profiles, "--metrics-file", metrics, "--preserve", "24h",
                          "--now", "2026-11-22T00:00:00Z"]
            let run = try Self.snap(["run", "--jobs", "6"] + common + ["web"] + names + ["web"])
            #expect(run.status == .exited(0), "\(run.output)")
            let created = run.output.split(separator: "\n").filter { $0.contains(": created ") }.map { String($0.prefix { $0 != ":" }) }
            #expect(created == ["web"] + names, "\(run.output)")
            #expect(run.output.contains("web.20261122T000000Z of this second exists already"), "\(run.output)")
            for name in ["web"] + names {
                let inventory = try Store(path: store).inventory(of: name)
                #expect(inventory.snapshots.map(\.name.description) == ["\(name).20261122T000000Z"] && inventory.foreign.isEmpty)
            }
            let figures = String(decoding: try OwnedFD.open(metrics, O_RDONLY).readAll(), as: UTF8.self)
            #expect(names.allSatisfy { figures.contains("subvolume=\"\($0)\"") }, "every subvolume's figures in the one update")
            // A count of no threads is a usage error, and the run it refuses changes nothing.
            let later = ["run", "--store", store, "--profiles", profiles, "--metrics-file", metrics,
                         "--preserve-min", "no", "--preserve", "1h", "--now", "2026-11-22T01:00:00Z", "web"]
            let none = try Self.snap(later + ["--jobs", "0"])
            #expect(none.status == .exited(2) && none.output.contains("--jobs takes a count of 1 or more"), "\(none.output)")
            #expect(try Store(path: store).snapshots(of: "web").map(\.name.description) == ["web.20261122T000000Z"])
            #expect(String(decoding: try OwnedFD.open(metrics, O_RDONLY).readAll(), as: UTF8.self) == figures)
            // The control: with a count, the same run takes the hour's snapshot and rewrites the figures.
            let one = try Self.snap(later + ["--jobs", "1"])
            #expect(one.status == .exited(0), "\(one.output)")
            #expect(try Store(path: store).snapshots(of: "web").map(\.name.description).contains("web.20261122T010000Z"))
            #expect(String(decoding: try OwnedFD.open(metrics, O_RDONLY).readAll(), as: UTF8.self) != figures)
        }
    }

    /// Two `replica-snap run` on one subvolume at once, 1,000 times: in each pair exactly one writes.
    @Test func pairedRunsWriteExactlyOnce() throws {
        try Self.withSetup { store, _, metrics in
            let tool = try builtTool("replica-snap")
            let pairs = 1_000
            var outcomes: [String: Int] = [:]
            for pair in 0..<pairs {
                let now = UTCTimestamp(secondsSinceEpoch: 1_790_000_000 + Int64(pair) * 3600).description
                let arguments = [tool, "run", "--store", store, "--metrics-file", metrics, "--preserve-min", "all", "--now", now, "web"]
                let a = try Command.spawn(arguments), b = try Command.spawn(arguments)
                let codes = [try ExitStatus.wait(for: a), try ExitStatus.wait(for: b)].map { status -> String in
                    if case .exited(let code) = status { return String(code) }
                    return "\(status)"
                }.sorted()
                outcomes[codes.joined(separator: "+"), default: 0] += 1
            }
            // 0+3: they overlapped and the loser saw the lock. 0+0: the second ran after the first,
            // found that second's snapshot already taken (not an error) and pruned. Never two
            // writers, never none.
            #expect(Set(outcomes.keys).isSubset(of: ["0+3", "0+0"]), "\(outcomes)")
            let inventory = try Store(path: store).inventory(of: "web")
            #expect(inventory.snapshots.count == pairs)
            #expect(inventory.foreign.isEmpty, "no half-made or writable snapshot: \(inventory.foreign.prefix(3))")
            #expect(outcomes["0+3", default: 0] > 0, "the runs should overlap at least sometimes: \(outcomes)")
        }
    }
}

/// A check that cannot open its store judges nothing: UNKNOWN (3), never CRITICAL, which would page
/// someone about snapshots that may well be there. Without privileges: the store is not btrfs.
@Suite struct FreshnessCheckUnknownTests {
    @Test func aStoreThatCannotBeOpenedIsUnknown() throws {
        try withTemporaryDirectory { dir in
            for store in ["\(dir)/missing", dir] {
                let result = try ReplicaSnapToolTests.snap(["check", "--store", store, "web"])
                #expect(result.status == .exited(3) && result.output.hasPrefix("UNKNOWN: web: "), "\(store): \(result.output)")
                let json = try ReplicaSnapToolTests.snap(["check", "--store", store, "--json", "web"])
                #expect(json.status == .exited(3) && json.output.contains("\"status\": \"UNKNOWN\""), "\(json.output)")
            }
        }
    }

    @Test func criticalOutranksUnknown() {
        typealias Status = FreshnessCheck.Status
        #expect([Status.unknown, .critical, .ok].max() == .critical)
        #expect([Status.unknown, .warning, .ok].max() == .unknown)
    }
}
