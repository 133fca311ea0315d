/// What the policy says about one snapshot, and every reason it says so.
public struct RetentionDecision: Equatable, Sendable {
    /// When the snapshot was taken.
    public var time: UTCTimestamp
    /// Whether the policy keeps it.
    public var keep: Bool
    /// Why it is kept, one line per rule that keeps it; empty when it is deleted.
    public var reasons: [String]
    /// Kept by a floor that free-space pruning never overrides: the newest, a future date,
    /// `latest`, `preserve_min` or `min_age`. Snapshots kept only by `preserve` are not protected.
    public var isProtected: Bool

    /// One line for `--explain`.
    public var explanation: String { keep ? "keep: " + reasons.joined(separator: "; ") : "delete: no rule keeps it" }
}

/// The retention engine: a pure function from (snapshot times, policy, now) to one decision per
/// snapshot. `--dry-run` prints exactly what a real run deletes, because both call this.
///
/// The calendar rules are btrbk's `schedule()`, computed in UTC: every snapshot falls in an hour,
/// day (starting at `preserve_hour_of_day`), week (starting on `preserve_day_of_week`), month and
/// year (starting on the first such day). Each bucket is represented by its oldest snapshot, and
/// the buckets cascade: days are chosen among hourly representatives, weeks among daily ones,
/// months among weekly ones, quarters and years among monthly ones. A representative within the
/// last N buckets of a `preserve` unit is kept.
public enum Retention {
    /// One decision per time, in the order given: which snapshots `policy` keeps at `now`, and why.
    public static func decide(_ times: [UTCTimestamp], policy: RetentionPolicy, now: UTCTimestamp) -> [RetentionDecision] {
        guard !times.isEmpty else { return [] }
        let order = times.indices.sorted { (times[$0], $0) < (times[$1], $1) }  // oldest first, stable
        let buckets = order.map { Buckets(times[$0], policy: policy, now: now) }
        var reasons = [[String]](repeating: [], count: order.count)  // indexed by position in `order`
        var protected = [Bool](repeating: false, count: order.count)
        func keep(_ position: Int, _ reason: String, protect: Bool = false) {
            reasons[position].append(reason)
            if protect { protected[position] = true }
        }

        // preserve_min: everything within N units (or all), protected.
        for (position, b) in buckets.enumerated() {
            switch policy.minimum {
            case .all: keep(position, "preserve_min all", protect: true)
            case .within(let n, let unit) where b.delta(unit) <= n:
                keep(position, "preserve_min \(n)\(unit.rawValue): \(b.delta(unit)) \(unitWord(unit)) ago", protect: true)
            default: break
            }
        }
        if policy.minimum == .latest { keep(order.count - 1, "preserve_min latest", protect: true) }

        // The cascade of representatives, as btrbk builds it: each level picks, per bucket, the
        // first (oldest) representative of the level below, walking buckets oldest first.
        func representatives(_ candidates: [Int], _ unit: RetentionPolicy.Unit) -> [Int: Int] {
            var first: [Int: Int] = [:]
            for position in candidates where first[buckets[position].delta(unit)] == nil {
                first[buckets[position].delta(unit)] = position
            }
            return first
        }
        func oldestFirst(_ reps: [Int: Int]) -> [Int] { reps.keys.sorted(by: >).map { reps[$0]! } }
        func apply(_ reps: [Int: Int], _ unit: RetentionPolicy.Unit, _ label: (Buckets) -> String) {
            guard let count = policy.preserve[unit] else { return }
            for (delta, position) in reps {
                switch count {
                case .all: keep(position, "\(unit.name): \(label(buckets[position])) (preserve *\(unit.rawValue))")
                case .last(let n) where n > 0 && delta <= n:
                    keep(position, "\(unit.name): \(label(buckets[position])) (preserve \(n)\(unit.rawValue))")
                default: break
                }
            }
        }
        let hourly = representatives(Array(order.indices), .hour)
        apply(hourly, .hour) { "first of hour, \($0.hours) hours ago" }
        let daily = representatives(oldestFirst(hourly), .day)
        apply(daily, .day) { "first of day, \($0.days) days ago" }
        let weekly = representatives(oldestFirst(daily), .week)
        apply(weekly, .week) { "first of week, \($0.weeks) weeks ago" }
        let monthly = representatives(oldestFirst(weekly), .month)
        apply(monthly, .month) { "first weekly of month \($0.monthLabel), \($0.months) months ago" }
        let quarterly = representatives(oldestFirst(monthly), .quarter)
        apply(quarterly, .quarter) { "first monthly of quarter \($0.quarterLabel), \($0.quarters) quarters ago" }
        let yearly = representatives(oldestFirst(monthly), .year)
        apply(yearly, .year) { "first monthly of year \($0.year), \($0.years) years ago" }

        // Replica's floors, all protected.
        for position in order.indices.suffix(policy.latest) {
            keep(position, "latest \(policy.latest): one of the \(policy.latest) newest", protect: true)
        }
        for (position, original) in order.enumerated() {
            let age = now.secondsSinceEpoch - times[original].secondsSinceEpoch
            if age < 0 {
                keep(position, "dated \(describe(seconds: -age)) after now (a clock jumped?); never deleted", protect: true)
            } else if age < policy.minimumAge {
                keep(position, "min_age \(describe(seconds: policy.minimumAge)): \(describe(seconds: age)) old", protect: true)
            }
        }
        keep(order.count - 1, "newest; always kept", protect: true)

        var decisions = [RetentionDecision?](repeating: nil, count: times.count)
        for (position, original) in order.enumerated() {
            decisions[original] = RetentionDecision(time: times[original], keep: !reasons[position].isEmpty,
                                                    reasons: reasons[position], isProtected: protected[position])
        }
        return decisions.map { $0! }
    }

    /// Indexes of snapshots free-space pruning may delete, in the order it deletes them (oldest
    /// first): kept by `preserve` only. Deleted ones are not listed; they go anyway.
    public static func spaceCandidates(_ decisions: [RetentionDecision]) -> [Int] {
        decisions.indices.filter { decisions[$0].keep && !decisions[$0].isProtected }
            .sorted { decisions[$0].time < decisions[$1].time }
    }

    static func unitWord(_ unit: RetentionPolicy.Unit) -> String {
        switch unit {
        case .hour: "hours"
        case .day: "days"
        case .week: "weeks"
        case .month: "months"
        case .quarter: "quarters"
        case .year: "years"
        }
    }

    /// `3h 20m`, `45s`, `2d 4h`.
    static func describe(seconds: Int64) -> String {
        let parts: [(Int64, String)] = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")]
        var rest = seconds
        var out: [String] = []
        for (size, unit) in parts where rest >= size && out.count < 2 {
            out.append("\(rest / size)\(unit)")
            rest %= size
        }
        return out.isEmpty ? "0s" : out.joined(separator: " ")
    }
}

/// Where one snapshot falls relative to now, in btrbk's calendar arithmetic (UTC).
struct Buckets {
    let hours, days, weeks, months, quarters, years: Int
    let year: Int
    let month: Int  // 1-12, after the "months start on the first day of week" correction

    init(_ time: UTCTimestamp, policy: RetentionPolicy, now: UTCTimestamp) {
        let t = time.fields
        let n = now.fields
        let weekday = Int(((floorDivide(time.secondsSinceEpoch, 86400) % 7) + 7 + 4) % 7)  // 1970-01-01 was a Thursday
        var hoursFromStartOfDay = t.hour - policy.hourOfDay
        var daysFromStartOfWeek = weekday - policy.dayOfWeek
        if hoursFromStartOfDay < 0 {
            hoursFromStartOfDay += 24
            daysFromStartOfWeek -= 1
        }
        if daysFromStartOfWeek < 0 { daysFromStartOfWeek += 7 }
        var month0 = t.month - 1
        var year = t.year
        if t.day <= daysFromStartOfWeek {  // months start on the first day-of-week: still last month
            month0 -= 1
            if month0 < 0 {
                month0 = 11
                year -= 1
            }
        }
        let nowHour = floorDivide(now.secondsSinceEpoch, 3600)
        let thisHour = floorDivide(time.secondsSinceEpoch, 3600)
        hours = Int(nowHour - thisHour)
        days = (hours + hoursFromStartOfDay) / 24  // truncating, as Perl's int()
        weeks = (days + daysFromStartOfWeek) / 7
        years = n.year - year
        months = years * 12 + (n.month - 1 - month0)
        quarters = years * 4 + ((n.month - 1) / 3 - month0 / 3)
        self.year = year
        self.month = month0 + 1
    }

    func delta(_ unit: RetentionPolicy.Unit) -> Int {
        switch unit {
        case .hour: hours
        case .day: days
        case .week: weeks
        case .month: months
        case .quarter: quarters
        case .year: years
        }
    }

    var monthLabel: String { "\(year)-\(String(month).leftPadded(2))" }
    var quarterLabel: String { "\(year)-Q\((month - 1) / 3 + 1)" }
}

func floorDivide(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
