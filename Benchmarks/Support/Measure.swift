// What both benchmark executables share: timing, medians and the report's rows.
import Glibc

/// Times `body` over `iterations` in `rounds` rounds and returns the median time per iteration in
/// nanoseconds (the median resists one slow round on a shared 2-core machine).
public func nanosecondsPerOperation(iterations: Int, rounds: Int = 5, _ body: (Int) throws -> Void) rethrows -> Double {
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

/// The middle value: what a typical run took, untouched by one slow outlier.
public func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// `1.23 µs`, `4.5 ms`.
public func formatDuration(_ nanoseconds: Double) -> String {
    switch nanoseconds {
    case ..<1_000: return String(format3(nanoseconds)) + " ns"
    case ..<1_000_000: return format3(nanoseconds / 1_000) + " µs"
    default: return format3(nanoseconds / 1_000_000) + " ms"
    }
}

/// Three significant digits without Foundation.
public func format3(_ value: Double) -> String {
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
/// How the program at `path` is linked, for rows that time a whole process: `static` (what the
/// package ships: no loader, no Swift runtime libraries to map) or `dynamic` (a plain `swift build`,
/// which loads the runtime at every start: about 2.4 ms more here). An ELF with a `PT_INTERP`
/// program header is dynamic.
public func linkage(of path: String) -> String {
    guard let file = fopen(path, "r") else { return "unknown" }
    defer { fclose(file) }
    var header = [UInt8](repeating: 0, count: 64)
    guard fread(&header, 1, 64, file) == 64, header[0..<4] == [0x7f, 0x45, 0x4c, 0x46] else { return "unknown" }
    func number(_ bytes: ArraySlice<UInt8>) -> Int { bytes.reversed().reduce(0) { $0 << 8 | Int($1) } }
    let (offset, size, count) = (number(header[32..<40]), number(header[54..<56]), number(header[56..<58]))
    for index in 0..<count {
        var entry = [UInt8](repeating: 0, count: 4)
        fseek(file, offset + index * size, SEEK_SET)
        guard fread(&entry, 1, 4, file) == 4 else { break }
        if number(entry[0..<4]) == 3 { return "dynamic" }  // PT_INTERP
    }
    return "static"
}

/// Drops the file at `path` from the page cache (written out first with `fsync`, then
/// `posix_fadvise(POSIX_FADV_DONTNEED)`; pages a process maps stay), so the next start reads it
/// again as after a reboot: a few pages at a time, as its faults ask.
public func evictFromPageCache(_ path: String) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    close(fd)
}

/// Writes each tool in `folder` (the executable files named `replica-*`) again with write(2), as a
/// package's install does: the linker writes through a mapping, which leaves the page cache holding
/// a binary in 4 KiB pages, as does a start that reads it back after an eviction; a file written
/// whole is held in large folios, and a start maps its pages in fewer, larger pieces (replica-run
/// into a namespace: 1.54-1.61 ms as linked, 1.34-1.37 as installed, here). So the figures are
/// those of the installed tools, whatever the page cache went through since the build.
public func writeToolsAgainAsInstalled(in folder: String) {
    guard let listing = opendir(folder) else { return }
    var names: [String] = []
    while let entry = readdir(listing) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name.hasPrefix("replica-") { names.append(name) }
    }
    closedir(listing)
    for name in names {
        let path = "\(folder)/\(name)", staging = "\(folder)/.\(name).installing"
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_mode & 0o111 != 0 else { continue }
        let source = open(path, O_RDONLY | O_CLOEXEC), copy = open(staging, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, status.st_mode & 0o7777)
        defer { close(source); close(copy) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20), whole = source >= 0 && copy >= 0
        while whole, case let count = read(source, &buffer, buffer.count), count != 0 {
            whole = count > 0 && write(copy, buffer, count) == count
        }
        precondition(whole && rename(staging, path) == 0, "could not write \(path) again")
    }
}

public struct Comparison {
    public var operation: String
    public var replica: Double
    public var tool: String
    public var toolTime: Double

    public init(operation: String, replica: Double, tool: String, toolTime: Double) {
        (self.operation, self.replica, self.tool, self.toolTime) = (operation, replica, tool, toolTime)
    }

    public var ratio: Double { toolTime / replica }

    public static func printHeader() {
        print(pad("operation", 56) + pad("replica", 12) + pad("usual tool", 40) + "ratio")
    }

    public func printRow() {
        print(pad(operation, 56) + pad(formatDuration(replica), 12)
              + pad("\(tool) \(formatDuration(toolTime))", 40)
              + (ratio >= 1 ? "\(format3(ratio))× faster" : "\(format3(1 / ratio))× slower"))
    }
}

public func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(1, width - text.count)) }
