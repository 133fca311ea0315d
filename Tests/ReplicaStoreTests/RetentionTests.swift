import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// Builds a policy from profile lines, failing the test on a parse error.
func policy(_ text: String) throws -> RetentionPolicy { try RetentionPolicy.parse(text) }

func utc(_ y: Int, _ mo: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Int = 0) -> UTCTimestamp {
    UTCTimestamp(year: y, month: mo, day: d, hour: h, minute: mi, second: s)!
}

/// The times the engine keeps.
func kept(_ times: [UTCTimestamp], _ policy: RetentionPolicy, now: UTCTimestamp) -> Set<UTCTimestamp> {
    Set(Retention.decide(times, policy: policy, now: now).filter(\.keep).map(\.time))
}

@Suite struct RetentionPolicyTests {
    @Test func parsesBtrbksGrammarAndOurs() throws {
        let p = try policy("""
            preserve_min 2d
            preserve 24h 14d 8w *m 4q 2y   # a comment
            preserve_hour_of_day 3
            preserve_day_of_week monday
            latest 3
            min_age 30m
            min_free 10%
            """)
        #expect(p.minimum == .within(2, .day))
        #expect(p.preserve == [.hour: .last(24), .day: .last(14), .week: .last(8), .month: .all,
                               .quarter: .last(4), .year: .last(2)])
        #expect(p.hourOfDay == 3 && p.dayOfWeek == 1 && p.latest == 3 && p.minimumAge == 1800)
        #expect(p.minimumFree == .percent(10))
        #expect(try RetentionPolicy.parse(p.description) == p, "description round-trips")
    }

    @Test(arguments: [
        ("preserve 24x", "preserve", "is not N or * followed by h d w m q y"),
        ("preserve 24h 3h", "preserve", "hourly is given twice"),
        ("preserve_min soon", "preserve_min", "is not all, latest, no"),
        ("preserve_hour_of_day 24", "preserve_hour_of_day", "from 0 to 23"),
        ("preserve_day_of_week funday", "preserve_day_of_week", "takes a day name"),
        ("latest -1", "latest", "whole number"),
        ("min_age 5", "min_age", "takes a duration"),
        ("min_free 100%", "min_free", "percentage from 1% to 99%"),
        ("keep 3", "keep", "is not a retention key"),
    ])
    func aPolicyThatCannotTakeEffectIsRefusedWithTheReason(text: String, key: String, reason: String) {
        let error = #expect(throws: PolicyError.self) { _ = try RetentionPolicy.parse(text) }
        #expect(error?.location?.key == key)
        #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
    }
}

@Suite struct RetentionPinnedTests {
    @Test func theNewestIsKeptEvenByAnEmptyPolicy() {
        let now = utc(2026, 11, 22, 12)
        let times = [utc(2026, 11, 20), utc(2026, 11, 21), utc(2026, 11, 22, 11)]
        #expect(kept(times, RetentionPolicy(), now: now) == [utc(2026, 11, 22, 11)])
        let decisions = Retention.decide(times, policy: RetentionPolicy(), now: now)
        #expect(decisions[2].reasons == ["newest; always kept"])
        #expect(decisions[0].explanation == "delete: no rule keeps it")
    }

    @Test func hourlyBoundaryIsInclusiveAsInBtrbk() throws {
        // preserve 2h keeps the first snapshot of the hours 0, 1 and 2 hours back (delta <= 2).
        let now = utc(2026, 11, 22, 12, 30)
        let times = (0..<5).map { utc(2026, 11, 22, 12 - $0, 10) }
        #expect(kept(times, try policy("preserve 2h"), now: now) == Set(times.prefix(3)))
    }

    @Test func exactlyAtTheMinimumAge() throws {
        let now = utc(2026, 11, 22, 12)
        let p = try policy("min_age 1h")
        let atLimit = UTCTimestamp(secondsSinceEpoch: now.secondsSinceEpoch - 3600)
        let inside = UTCTimestamp(secondsSinceEpoch: now.secondsSinceEpoch - 3599)
        let newest = UTCTimestamp(secondsSinceEpoch: now.secondsSinceEpoch - 10)
        #expect(kept([atLimit, inside, newest], p, now: now) == [inside, newest])
    }

    @Test func firstOfDayRespectsTheHourDaysStartAt() throws {
        // Days start at 06:00: the 05:00 snapshot belongs to the day before.
        let now = utc(2026, 11, 22, 23)
        let times = [utc(2026, 11, 21, 7), utc(2026, 11, 22, 5), utc(2026, 11, 22, 6), utc(2026, 11, 22, 22)]
        let p = try policy("preserve 1d\npreserve_hour_of_day 6")
        #expect(kept(times, p, now: now) == [utc(2026, 11, 21, 7), utc(2026, 11, 22, 6), utc(2026, 11, 22, 22)])
    }

    @Test func aDSTChangeMakesNoAmbiguousOrDuplicateNames() {
        // Europe's clocks went back at 01:00 UTC on 2026-10-25: local 02:30 happened twice.
        // In UTC the two moments have different names, and an hour of snapshots has 60 distinct ones.
        let start = utc(2026, 10, 25, 0, 0).secondsSinceEpoch
        let names = (0..<180).map { SnapshotName(subvolume: "svc", time: UTCTimestamp(secondsSinceEpoch: start + Int64($0) * 60)).description }
        #expect(Set(names).count == 180)
        #expect(names == names.sorted(), "names sort in time order")
        #expect(names.allSatisfy { SnapshotName(parsing: $0) != nil })
    }

    @Test func theClockJumpedBackFutureSnapshotsAreNeverDeleted() throws {
        // Snapshots were taken with a clock 3 days fast; now the clock is right again.
        let now = utc(2026, 11, 22, 12)
        let future = [utc(2026, 11, 24), utc(2026, 11, 25)]
        let past = [utc(2026, 1, 1), utc(2026, 11, 22, 11)]
        let decisions = Retention.decide(past + future, policy: try policy("preserve 1h"), now: now)
        #expect(decisions[2].keep && decisions[3].keep)
        #expect(decisions[2].reasons.contains { $0.contains("after now (a clock jumped?)") })
        #expect(decisions[2].isProtected)
        #expect(!decisions[0].keep)
    }

    @Test func theClockJumpedTenYearsForwardTheFloorHolds() throws {
        let taken = (0..<48).map { UTCTimestamp(secondsSinceEpoch: utc(2026, 11, 20).secondsSinceEpoch + Int64($0) * 3600) }
        let tenYearsLater = utc(2036, 11, 22)
        let p = try policy("preserve 24h 7d\nlatest 3")
        #expect(kept(taken, p, now: tenYearsLater) == Set(taken.suffix(3)))
        // Without a latest floor the newest alone survives.
        #expect(kept(taken, try policy("preserve 24h 7d"), now: tenYearsLater) == [taken.last!])
    }

    @Test func quartersKeepTheFirstMonthlyOfEachQuarter() throws {
        let now = utc(2026, 11, 22)
        let times = (1...11).map { utc(2026, $0, 15) }  // mid-month, so the week rule cannot move them
        let result = kept(times, try policy("preserve 2q"), now: now)
        // Q4 (Oct), Q3 (Jul), Q2 (Apr) are 0, 1, 2 quarters back; plus the newest.
        #expect(result == [utc(2026, 4, 15), utc(2026, 7, 15), utc(2026, 10, 15), utc(2026, 11, 15)])
    }
}

/// Random (history, policy, now) cases from a seed.
struct RetentionCase {
    var times: [UTCTimestamp]
    var policy: RetentionPolicy
    var now: UTCTimestamp

    static func random(_ rng: inout SeededRandom, btrbkGrammarOnly: Bool) -> RetentionCase {
        let now = UTCTimestamp(secondsSinceEpoch: Int64.random(in: 1_600_000_000...2_000_000_000, using: &rng))
        var times = Set<Int64>()
        let count = Int.random(in: 0...40, using: &rng)
        let scale = [3_600, 86_400, 30 * 86_400, 400 * 86_400][Int.random(in: 0...3, using: &rng)]
        for _ in 0..<count {
            var offset = Int64.random(in: 0...Int64(scale) * 3, using: &rng)
            if Int.random(in: 0..<20, using: &rng) == 0 { offset = -Int64.random(in: 1...200_000, using: &rng) }
            times.insert(now.secondsSinceEpoch - offset)
        }
        var policy = RetentionPolicy()
        let units: [RetentionPolicy.Unit] = btrbkGrammarOnly ? [.hour, .day, .week, .month, .year] : RetentionPolicy.Unit.allCases
        let minUnits: [RetentionPolicy.Unit] = [.hour, .day, .week, .month, .year]
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: policy.minimum = .all
        case 1: policy.minimum = .latest
        case 2, 3: policy.minimum = .within(Int.random(in: 0...6, using: &rng), minUnits.randomElement(using: &rng)!)
        default: policy.minimum = .no
        }
        if Int.random(in: 0..<8, using: &rng) == 0 { policy.minimum = .all }
        else if policy.minimum == .all { policy.minimum = .no }
        for unit in units where Bool.random(using: &rng) {
            policy.preserve[unit] = Int.random(in: 0..<6, using: &rng) == 0 ? .all : .last(Int.random(in: 0...30, using: &rng))
        }
        policy.hourOfDay = Int.random(in: 0...23, using: &rng)
        policy.dayOfWeek = Int.random(in: 0...6, using: &rng)
        if !btrbkGrammarOnly {
            policy.latest = Int.random(in: 0...4, using: &rng)
            policy.minimumAge = Bool.random(using: &rng) ? Int64.random(in: 0...200_000, using: &rng) : 0
        }
        return RetentionCase(times: times.sorted().map { UTCTimestamp(secondsSinceEpoch: $0) }.shuffled(using: &rng),
                             policy: policy, now: now)
    }
}

@Suite struct RetentionPropertyTests {
    static let cases = 100_000

    @Test func invariantsHoldOverOneHundredThousandRandomCases() {
        var rng = SeededRandom(seed: 0x5EED_2026)
        var failures: [String] = []
        var deletions = 0
        for index in 0..<Self.cases where failures.count < 5 {
            let c = RetentionCase.random(&rng, btrbkGrammarOnly: false)
            let decisions = Retention.decide(c.times, policy: c.policy, now: c.now)
            let keep = decisions.filter(\.keep).map(\.time)
            deletions += decisions.count - keep.count
            func fail(_ what: String) { failures.append("case \(index): \(what)\n\(c.policy)\nnow \(c.now) times \(c.times)") }
            // 1. The newest and any future-dated snapshot are never deleted.
            if let newest = c.times.max(), !keep.contains(newest) { fail("newest deleted") }
            if c.times.contains(where: { $0 > c.now && !keep.contains($0) }) { fail("future deleted") }
            // 2. A second prune deletes nothing.
            if Retention.decide(keep, policy: c.policy, now: c.now).contains(where: { !$0.keep }) { fail("second prune deletes") }
            // 3. Adding a newer snapshot never deletes an older one the policy still keeps (other
            //    than by being the newest or among the latest, which the new one takes over).
            if let newest = c.times.max(), newest < c.now {
                let added = UTCTimestamp(secondsSinceEpoch: Int64.random(in: newest.secondsSinceEpoch + 1...c.now.secondsSinceEpoch, using: &rng))
                let after = kept(c.times + [added], c.policy, now: c.now)
                for d in decisions where d.keep && !after.contains(d.time) {
                    let takenOver = ["newest", "latest", "preserve_min latest"]
                    if d.reasons.contains(where: { reason in !takenOver.contains { reason.hasPrefix($0) } }) {
                        fail("adding \(added) deleted \(d.time) kept for \(d.reasons)")
                    }
                }
            }
            // 4. Decisions come back in input order, one per snapshot.
            if decisions.map(\.time) != c.times { fail("decisions out of order") }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
        #expect(deletions > Self.cases, "the generator must produce real deletions, got \(deletions)")
    }
}

/// btrbk installed and perl present: the differential test runs against the real scheduler.
let hasBtrbk = access("/usr/bin/btrbk", R_OK) == 0 && access("/usr/bin/perl", X_OK) == 0

@Suite struct RetentionMatchesBtrbkTests {
    static let oracle = String(#filePath.dropLast("ReplicaStoreTests/RetentionTests.swift".count)) + "Oracles/btrbk-schedule.pl"

    @Test(.enabled(if: hasBtrbk, "needs perl and btrbk (apt-get install btrbk) to run btrbk's own scheduler"))
    func theKeepSetIsTheOneBtrbkComputes() throws {
        var rng = SeededRandom(seed: 0xB7B4)
        let cases = (0..<5_000).map { _ in RetentionCase.random(&rng, btrbkGrammarOnly: true) }
        let input = cases.map { c -> String in
            let p = c.policy
            let minimum: String = switch p.minimum {
            case .no: ""
            case .all: "all"
            case .latest: "latest"
            case .within(let n, let unit): "\(n)\(unit.rawValue)"
            }
            let counts = [RetentionPolicy.Unit.hour, .day, .week, .month, .year].map { unit -> String in
                switch p.preserve[unit] {
                case nil: ""
                case .all?: "all"
                case .last(let n)?: "\(n)"
                }
            }.joined(separator: ",")
            return [String(c.now.secondsSinceEpoch), RetentionPolicy.weekdays[p.dayOfWeek], String(p.hourOfDay),
                    minimum, counts, c.times.map { String($0.secondsSinceEpoch) }.joined(separator: ",")]
                .joined(separator: "|")
        }.joined(separator: "\n") + "\n"
        let output = try runOracle(input)
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        try #require(lines.count >= cases.count, "the oracle answered \(lines.count) of \(cases.count) cases")
        var mismatches: [String] = []
        var btrbkDeletions = 0
        for (c, line) in zip(cases, lines) where mismatches.count < 5 {
            var theirs = Set(line.split(separator: ",").map { UTCTimestamp(secondsSinceEpoch: Int64($0)!) })
            btrbkDeletions += c.times.count - theirs.count
            // Documented differences: Replica always keeps the newest, and anything dated after now
            // (btrbk: only from the next hour on).
            if let newest = c.times.max() { theirs.insert(newest) }
            theirs.formUnion(c.times.filter { $0 > c.now })
            let ours = kept(c.times, c.policy, now: c.now)
            if ours != theirs {
                mismatches.append("\(c.policy)\nnow \(c.now)\nonly ours: \(ours.subtracting(theirs).sorted())\nonly btrbk: \(theirs.subtracting(ours).sorted())")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n\n"))")
        #expect(btrbkDeletions > cases.count, "btrbk must delete plenty for the comparison to mean anything")
    }

    func runOracle(_ input: String) throws -> String {
        try withTemporaryDirectory { dir in
            let fd = try OwnedFD.open("\(dir)/cases", O_WRONLY | O_CREAT, mode: 0o600)
            try fd.writeAll(Array(input.utf8))
            return try Command.check(["sh", "-c", "TZ=UTC perl '\(Self.oracle)' < '\(dir)/cases'"])
        }
    }
}
