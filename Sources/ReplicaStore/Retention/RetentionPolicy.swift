/// A snapshot retention policy in btrbk's grammar, plus quarters, a `latest N` floor, a minimum age
/// and an optional free-space floor. A value: parsed from profile keys or flags, printed back.
///
/// ```
/// preserve_min 2d                  # keep everything from the last 2 days (also: all, latest, no)
/// preserve 24h 14d 8w 6m 4q *y     # first of each hour/day/week/month/quarter/year, N back (* = all)
/// preserve_hour_of_day 0           # days start at this hour (0-23)
/// preserve_day_of_week sunday      # weeks start on this day; months and years on the first one
/// latest 3                         # always keep the 3 newest
/// min_age 30m                      # never delete anything younger than this (exact elapsed time)
/// min_free 10%                     # then delete the oldest deletable ones until this much is free
/// ```
public struct RetentionPolicy: Equatable, Sendable, CustomStringConvertible {
    /// A calendar unit of `preserve` and `preserve_min`.
    public enum Unit: String, CaseIterable, Sendable, Comparable {
        /// `h`.
        case hour = "h"
        /// `d`: days start at `preserve_hour_of_day`.
        case day = "d"
        /// `w`: weeks start on `preserve_day_of_week`.
        case week = "w"
        /// `m`.
        case month = "m"
        /// `q`: quarters of the year (Replica's addition to btrbk's units).
        case quarter = "q"
        /// `y`.
        case year = "y"
        /// Shorter units are less.
        public static func < (a: Unit, b: Unit) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
        var name: String {
            switch self {
            case .hour: "hourly"
            case .day: "daily"
            case .week: "weekly"
            case .month: "monthly"
            case .quarter: "quarterly"
            case .year: "yearly"
            }
        }
    }

    /// How many of a unit to keep: the last N (0 keeps none) or all.
    public enum Count: Equatable, Sendable {
        /// The newest N representatives (`14d`).
        case last(Int)
        /// Every representative (`*d`).
        case all
    }

    /// btrbk's `preserve_min`: keep everything, the latest, nothing extra, or all within N units.
    public enum Minimum: Equatable, Sendable {
        /// No floor.
        case no
        /// Keep every snapshot.
        case all
        /// Keep the newest.
        case latest
        /// Keep every snapshot younger than N units (`2d`).
        case within(Int, Unit)
    }

    /// A floor of free space on the store's filesystem.
    public enum FreeSpace: Equatable, Sendable {
        /// This many bytes (`20G`).
        case bytes(UInt64)
        /// This share of the filesystem (`10%`).
        case percent(Int)

        /// The floor in bytes on a filesystem of `total` bytes.
        public func bytes(ofTotal total: UInt64) -> UInt64 {
            switch self {
            case .bytes(let value): value
            case .percent(let p): total / 100 * UInt64(p)
            }
        }
    }

    /// `preserve_min`: the floor kept whatever the calendar rules say.
    public var minimum: Minimum = .no
    /// `preserve`: how many of each calendar unit's representatives to keep.
    public var preserve: [Unit: Count] = [:]
    /// The hour days start at, 0–23 (`preserve_hour_of_day`).
    public var hourOfDay = 0
    /// The day weeks start on, 0 = Sunday (`preserve_day_of_week`).
    public var dayOfWeek = 0
    /// Keep this many of the newest whatever else says (`latest`).
    public var latest = 0
    /// Never delete a snapshot younger than this many seconds (`min_age`).
    public var minimumAge: Int64 = 0
    /// After the policy, delete the oldest deletable snapshots until this much space is free.
    public var minimumFree: FreeSpace?

    /// A policy that keeps only the newest snapshot.
    public init() {}

    /// Whether any rule keeps anything beyond the newest snapshot.
    public var keepsAnything: Bool {
        minimum != .no || preserve.values.contains { $0 != .last(0) } || latest > 0 || minimumAge > 0
    }

    /// Day names as `preserve_day_of_week` takes them, Sunday first.
    public static let weekdays = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

    /// The policy as profile lines, in the order the keys are documented.
    public var description: String {
        var lines: [String] = []
        switch minimum {
        case .no: break
        case .all: lines.append("preserve_min all")
        case .latest: lines.append("preserve_min latest")
        case .within(let n, let unit): lines.append("preserve_min \(n)\(unit.rawValue)")
        }
        let counts = Unit.allCases.compactMap { unit in
            preserve[unit].map { count in
                switch count {
                case .all: "*\(unit.rawValue)"
                case .last(let n): "\(n)\(unit.rawValue)"
                }
            }
        }
        if !counts.isEmpty { lines.append("preserve \(counts.joined(separator: " "))") }
        if hourOfDay != 0 { lines.append("preserve_hour_of_day \(hourOfDay)") }
        if dayOfWeek != 0 { lines.append("preserve_day_of_week \(Self.weekdays[dayOfWeek])") }
        if latest > 0 { lines.append("latest \(latest)") }
        if minimumAge > 0 { lines.append("min_age \(minimumAge)s") }
        switch minimumFree {
        case nil: break
        case .bytes(let b)?: lines.append("min_free \(b)")
        case .percent(let p)?: lines.append("min_free \(p)%")
        }
        return lines.joined(separator: "\n")
    }
}
