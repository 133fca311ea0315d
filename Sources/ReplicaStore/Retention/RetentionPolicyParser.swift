import ReplicaKit

extension RetentionPolicy {
    /// The keys a policy is written with, in profiles (`[Snapshots]`) and as `replica-snap` flags.
    public static let keys = ["preserve_min", "preserve", "preserve_hour_of_day", "preserve_day_of_week",
                              "latest", "min_age", "min_free"]

    /// Sets one key from its text. Errors say which key, what was wrong and what is accepted.
    public mutating func set(_ key: String, _ value: String) throws(PolicyError) {
        let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        func fail(_ why: String) -> PolicyError { PolicyError(key: key, value: value, reason: why) }
        switch key {
        case "preserve_min":
            guard words.count == 1 else { throw fail("takes one of all, latest, no, or N followed by h d w m q y") }
            switch words[0] {
            case "all": minimum = .all
            case "latest": minimum = .latest
            case "no": minimum = .no
            default:
                guard let (n, unit) = Self.amount(words[0]) else {
                    throw fail("\"\(words[0])\" is not all, latest, no, or N followed by h d w m q y (e.g. 2d)")
                }
                minimum = .within(n, unit)
            }
        case "preserve":
            var counts: [Unit: Count] = [:]
            guard !words.isEmpty else { preserve = [:]; return }
            for word in words {
                let count: Count
                let unit: Unit
                if word.hasPrefix("*"), let u = Unit(rawValue: String(word.dropFirst())) {
                    (count, unit) = (.all, u)
                } else if let (n, u) = Self.amount(word) {
                    (count, unit) = (.last(n), u)
                } else {
                    throw fail("\"\(word)\" is not N or * followed by h d w m q y (e.g. 24h 14d 8w *m)")
                }
                guard counts[unit] == nil else { throw fail("\(unit.name) is given twice") }
                counts[unit] = count
            }
            preserve = counts
        case "preserve_hour_of_day":
            guard words.count == 1, let hour = Int(words[0]), (0...23).contains(hour) else {
                throw fail("takes an hour from 0 to 23")
            }
            hourOfDay = hour
        case "preserve_day_of_week":
            guard words.count == 1, let day = Self.weekdays.firstIndex(of: words[0].lowercased()) else {
                throw fail("takes a day name: \(Self.weekdays.joined(separator: ", "))")
            }
            dayOfWeek = day
        case "latest":
            guard words.count == 1, let n = Int(words[0]), n >= 0 else { throw fail("takes a whole number, 0 or more") }
            latest = n
        case "min_age":
            guard words.count == 1, let seconds = Self.duration(words[0]) else {
                throw fail("takes a duration: N followed by s, m (minutes), h, d or w (e.g. 30m)")
            }
            minimumAge = seconds
        case "min_free":
            guard words.count <= 1 else { throw fail("takes a size (10G, 500M) or a percentage (10%)") }
            guard let word = words.first else { minimumFree = nil; return }
            if word.hasSuffix("%"), let p = Int(word.dropLast()), (1...99).contains(p) {
                minimumFree = .percent(p)
            } else if let bytes = parseByteSize(word), bytes > 0 {
                minimumFree = .bytes(bytes)
            } else {
                throw fail("\"\(word)\" is not a size (10G, 500M, 4096) or a percentage from 1% to 99%")
            }
        default:
            throw fail("is not a retention key; known: \(Self.keys.joined(separator: ", "))")
        }
    }

    /// Parses `key value` lines (`#` comments allowed), e.g. the text of `description`.
    public static func parse(_ text: String) throws(PolicyError) -> RetentionPolicy {
        var policy = RetentionPolicy()
        for line in text.split(separator: "\n") {
            let trimmed = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let parts = trimmed.split(separator: " ", maxSplits: 1).map(String.init)
            guard let key = parts.first else { continue }
            try policy.set(key, parts.count > 1 ? parts[1] : "")
        }
        return policy
    }

    /// `14d` → (14, .day).
    static func amount(_ word: String) -> (Int, Unit)? {
        guard let last = word.last, let unit = Unit(rawValue: String(last)),
              let n = Int(word.dropLast()), n >= 0, word.count > 1 else { return nil }
        return (n, unit)
    }

    /// `30m` → 1800 seconds (units s m h d w); nil for anything else.
    public static func duration(_ word: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800]
        guard let last = word.last, let scale = units[last], let n = Int64(word.dropLast()), n >= 0,
              word.count > 1 else { return nil }
        return n.multipliedReportingOverflow(by: scale).overflow ? nil : n * scale
    }
}

/// A retention key whose value cannot take effect: a `ReplicaError` naming the key (`location`), the
/// value (`objects`) and what is accepted (`hint`).
public typealias PolicyError = ReplicaError

extension ReplicaError {
    /// The retention key `key` cannot take `value`: `reason` says what is accepted.
    public init(key: String, value: String, reason: String) {
        self.init("retention policy", [value], errno: .EINVAL, hint: reason, reason: .refused,
                  location: Location(file: "", line: 0, key: key))
    }
}
