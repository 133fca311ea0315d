/// Parses a size as operators write it: `4096`, `512K`, `64M`, `10G`, `2T` (powers of 1024).
/// Nil for anything else or on overflow.
public func parseByteSize(_ text: String) -> UInt64? {
    if let n = UInt64(text) { return n }
    let scale: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    guard let last = text.last?.uppercased().first, let s = scale[last], let n = UInt64(text.dropLast()) else { return nil }
    let (product, overflow) = n.multipliedReportingOverflow(by: s)
    return overflow ? nil : product
}

/// A size as `parseByteSize` reads it back: the largest unit it is a whole number of (`512M`,
/// `2G`), else bytes.
public func formatByteSize(_ bytes: UInt64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] where bytes != 0 && bytes % (1 << UInt64(shift)) == 0 {
        return "\(bytes >> UInt64(shift))\(unit)"
    }
    return "\(bytes)"
}
