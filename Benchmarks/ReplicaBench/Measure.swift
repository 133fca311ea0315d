import Glibc

/// Times `body` over `iterations` in `rounds` rounds and returns the median time per iteration in
/// nanoseconds (the median resists one slow round on a shared 2-core machine).
func nanosecondsPerOperation(iterations: Int, rounds: Int = 5, _ body: (Int) throws -> Void) rethrows -> Double {
    var perRound: [Double] = []
    var counter = 0
    for _ in 0..<rounds {
        let start = monotonicNanoseconds()
        for _ in 0..<iterations {
            try body(counter)
            counter += 1
        }
        perRound.append(Double(monotonicNanoseconds() - start) / Double(iterations))
    }
    return perRound.sorted()[rounds / 2]
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// `1.23 µs`, `4.5 ms`.
func formatDuration(_ nanoseconds: Double) -> String {
    switch nanoseconds {
    case ..<1_000: return String(format3(nanoseconds)) + " ns"
    case ..<1_000_000: return format3(nanoseconds / 1_000) + " µs"
    default: return format3(nanoseconds / 1_000_000) + " ms"
    }
}

/// Three significant digits without Foundation.
func format3(_ value: Double) -> String {
    let decimals = value >= 100 ? 0 : value >= 10 ? 1 : 2
    var scaled = (value * pow(10, Double(decimals))).rounded()
    if scaled.isNaN || scaled.isInfinite { scaled = 0 }
    let integer = Int(scaled)
    guard decimals > 0 else { return String(integer) }
    let divisor = Int(pow(10, Double(decimals)))
    let fraction = String(integer % divisor)
    return "\(integer / divisor).\(String(repeating: "0", count: decimals - fraction.count))\(fraction)"
}

/// One line of the report: what Replica took, what the usual tool took, measured in the same run.
struct Comparison {
    var operation: String
    var replica: Double
    var tool: String
    var toolTime: Double

    var ratio: Double { toolTime / replica }

    static func printHeader() {
        print(pad("operation", 56) + pad("replica", 12) + pad("usual tool", 40) + "ratio")
    }

    func printRow() {
        print(pad(operation, 56) + pad(formatDuration(replica), 12)
              + pad("\(tool) \(formatDuration(toolTime))", 40)
              + (ratio >= 1 ? "\(format3(ratio))× faster" : "\(format3(1 / ratio))× slower"))
    }
}

func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(1, width - text.count)) }
