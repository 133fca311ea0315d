import Glibc
import ReplicaKit

/// A moment in UTC at one-second resolution, as snapshot names carry it.
public struct UTCTimestamp: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Seconds since the Unix epoch.
    public var secondsSinceEpoch: Int64
    /// The time `secondsSinceEpoch` seconds after 1970-01-01T00:00:00Z.
    public init(secondsSinceEpoch: Int64) { self.secondsSinceEpoch = secondsSinceEpoch }

    /// The wall clock now, `clock_gettime(CLOCK_REALTIME)`.
    public static var now: UTCTimestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UTCTimestamp(secondsSinceEpoch: Int64(ts.tv_sec))
    }

    public static func < (a: UTCTimestamp, b: UTCTimestamp) -> Bool { a.secondsSinceEpoch < b.secondsSinceEpoch }

    /// Broken-down UTC fields, as `gmtime_r(3)` gives them. Counted here: glibc reads the time-zone
    /// file on its first conversion, even to UTC, and every snapshot name is one.
    public var fields: (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        let remainder = Int(secondsSinceEpoch) % 86_400  // floored without overflow, before 1970 too
        let days = Int(secondsSinceEpoch) / 86_400 - (remainder < 0 ? 1 : 0)
        let time = remainder < 0 ? remainder + 86_400 : remainder
        let date = Self.civil(days: days)
        return (date.year, date.month, date.day, time / 3600, time / 60 % 60, time % 60)
    }

    /// From UTC fields, as `timegm(3)`; nil when a field is out of range (Feb 30, hour 24 …).
    public init?(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(hour),
              (0...59).contains(minute), (0...59).contains(second), (-1_000_000...1_000_000).contains(year) else { return nil }
        self.init(secondsSinceEpoch: Int64(Self.days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second))
        let check = fields  // Feb 30 counts as Mar 2; such input is not a real date
        guard check.year == year, check.month == month, check.day == day else { return nil }
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
    /// `days_from_civil`: years counted from March, in 400-year eras).
    static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        return era * 146_097 + yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear - 719_468
    }

    /// The date `days` days after 1970-01-01 (`civil_from_days`, the inverse of `days`).
    static func civil(days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let m = (5 * dayOfYear + 2) / 153
        let month = m < 10 ? m + 3 : m - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, dayOfYear - (153 * m + 2) / 5 + 1)
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (what `description` prints); nil for anything else,
    /// a date that does not exist included.
    public init?(iso8601 text: String) {
        let bytes = Array(text.utf8)
        let layout = Array("0000-00-00T00:00:00Z".utf8)
        guard bytes.count == layout.count, zip(bytes, layout).allSatisfy({ b, l in
            l == UInt8(ascii: "0") ? (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) : b == l
        }) else { return nil }
        func value(_ range: Range<Int>) -> Int { bytes[range].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) } }
        self.init(year: value(0..<4), month: value(5..<7), day: value(8..<10), hour: value(11..<13), minute: value(14..<16),
                  second: value(17..<19))
    }

    /// ISO 8601 with `Z`, e.g. `2026-11-22T02:30:00Z`.
    public var description: String { text(separated: true) }

    /// `2026-11-22T02:30:00Z`, or `20261122T023000Z` unseparated (a snapshot name's), each field
    /// zero-padded, written into the string's own bytes: a listing writes one or two per snapshot.
    func text(separated: Bool) -> String {
        let f = fields
        guard (0...9999).contains(f.year) else {
            let (date, time) = separated ? ("-", ":") : ("", "")
            let two = [f.month, f.day, f.hour, f.minute, f.second].map { String($0).leftPadded(2) }
            return "\(String(f.year).leftPadded(4))\(date)\(two[0])\(date)\(two[1])T\(two[2])\(time)\(two[3])\(time)\(two[4])Z"
        }
        return String(unsafeUninitializedCapacity: 20) { out in
            var i = 0
            func put(_ value: Int, width: Int = 2, then next: UInt8?) {
                var rest = value
                for k in (0..<width).reversed() {
                    out[i + k] = UInt8(ascii: "0") + UInt8(rest % 10)
                    rest /= 10
                }
                i += width
                if let next { out[i] = next; i += 1 }
            }
            let date: UInt8? = separated ? UInt8(ascii: "-") : nil, time: UInt8? = separated ? UInt8(ascii: ":") : nil
            put(f.year, width: 4, then: date)
            put(f.month, then: date)
            put(f.day, then: UInt8(ascii: "T"))
            put(f.hour, then: time)
            put(f.minute, then: time)
            put(f.second, then: UInt8(ascii: "Z"))
            return i
        }
    }
}

/// A snapshot name, `NAME.YYYYMMDDTHHMMSSZ` in UTC: unambiguous across DST and sortable as text.
public struct SnapshotName: Hashable, Sendable, CustomStringConvertible {
    /// The subvolume it is a snapshot of.
    public var subvolume: String { didSet { description = Self.text(subvolume, time) } }
    /// When it was taken, to the second.
    public var time: UTCTimestamp { didSet { description = Self.text(subvolume, time) } }
    /// The name, `web.20261122T023000Z`: made once (a listing prints, sorts and compares names).
    public private(set) var description: String

    /// The name of a snapshot of `subvolume` taken at `time`: `web.20261122T023000Z`.
    public init(subvolume: String, time: UTCTimestamp) {
        (self.subvolume, self.time, description) = (subvolume, time, Self.text(subvolume, time))
    }

    /// Parses a full name; nil unless every character matches the format (`svc.20261122T023000Z`).
    /// A name that parses is the one `init(subvolume:time:)` makes, so it is kept as it came.
    public init?(parsing name: String) {
        let utf8 = Array(name.utf8)
        guard utf8.count > 17, utf8[utf8.count - 17] == UInt8(ascii: "."),
              let time = UTCTimestamp(compact: utf8.suffix(16)) else { return nil }
        (subvolume, self.time, description) = (String(decoding: utf8.prefix(utf8.count - 17), as: UTF8.self), time, name)
    }

    private static func text(_ subvolume: String, _ time: UTCTimestamp) -> String {
        subvolume + "." + time.text(separated: false)
    }
}

extension UTCTimestamp {
    /// Parses the compact form snapshot names carry, `20261122T023000Z`; nil unless every
    /// character matches it and the date exists.
    public init?(compact text: some Collection<UInt8>) {
        let digits = Array(text)
        guard digits.count == 16, digits[8] == UInt8(ascii: "T"), digits[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in digits[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15) else { return nil }
        self.init(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
    }
}
