import Glibc

/// One line of `/proc/PID/mountinfo` (see proc(5)):
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
public struct MountInfoEntry: Equatable, Sendable {
    /// Field 1: the mount's unique id.
    public var mountID: Int
    /// Field 2: the id of its parent mount.
    public var parentID: Int
    /// Field 3: the major device number of the mounted filesystem.
    public var major: UInt32
    /// Field 3: the minor device number.
    public var minor: UInt32
    /// The path inside the filesystem that forms the root of this mount (`/` for a whole filesystem).
    public var root: String
    /// Where it is mounted, relative to the reading process's root.
    public var mountPoint: String
    /// Per-mount options as the kernel writes them: `rw,nosuid,relatime`.
    public var mountOptionsText: String
    /// Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    public var optionalFields: [String]
    /// Field 9: the filesystem type (`btrfs`, `tmpfs`).
    public var fsType: String
    /// Field 10: the mount source (`/dev/loop0`, `tmpfs`).
    public var source: String
    /// Per-superblock options as the kernel writes them.
    public var superOptionsText: String

    /// Per-mount options: `rw`, `ro`, `nosuid`, `nodev`, `noexec`, `relatime` … (split on use: a
    /// sandbox reads the whole table on its start path and rarely needs them).
    public var mountOptions: [String] { mountOptionsText.split(separator: ",").map(String.init) }
    /// Per-superblock options.
    public var superOptions: [String] { superOptionsText.split(separator: ",").map(String.init) }
    /// Whether the mount itself is read-only (the kernel always writes `ro` or `rw` first).
    public var isReadOnly: Bool { mountOptionsText == "ro" || mountOptionsText.hasPrefix("ro,") }
    /// The peer group when the mount is `shared:N`.
    public var sharedPeerGroup: Int? { optionalFields.lazy.compactMap { $0.fieldValue("shared:") }.first }
    /// The peer group it receives from when `master:N` (a slave mount).
    public var masterPeerGroup: Int? { optionalFields.lazy.compactMap { $0.fieldValue("master:") }.first }
}

private extension String {
    func fieldValue(_ prefix: String) -> Int? { hasPrefix(prefix) ? Int(dropFirst(prefix.count)) : nil }
}

/// Parses mountinfo text. The input is a parameter, so tests feed it fixtures; `read(pid:)` takes
/// it from procfs. Bounded: a line longer than `maxLineLength` is an error, not a crash.
public enum MountInfo {
    /// Longest accepted line. The kernel escapes space, tab, newline and backslash as `\ooo`, so a
    /// line with three `PATH_MAX` paths is at most about 50 KiB; 64 KiB leaves room for options.
    public static let maxLineLength = 64 * 1024
    /// Largest file `read(pid:)` accepts (about 100,000 mounts).
    public static let maxFileSize = 64 << 20

    /// Parses the whole text; `source` names it in errors (`/proc/self/mountinfo:12`).
    public static func parse(_ bytes: [UInt8], source: String = "mountinfo") throws(ReplicaError) -> [MountInfoEntry] {
        var entries: [MountInfoEntry] = []
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            lineNumber += 1
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") {
                end += 1
                if end - start > maxLineLength {
                    throw ReplicaError("mountinfo", ["\(source):\(lineNumber)"], errno: .E2BIG,
                                      hint: "line is longer than \(maxLineLength) bytes")
                }
            }
            if end > start {
                entries.append(try parseLine(bytes[start..<end], source: source, line: lineNumber))
            }
            start = end + 1
        }
        return entries
    }

    /// Parses text given as a string.
    public static func parse(_ text: String, source: String = "mountinfo") throws(ReplicaError) -> [MountInfoEntry] {
        try parse(Array(text.utf8), source: source)
    }

    /// Reads and parses `/proc/PID/mountinfo` (`self` by default).
    public static func read(pid: String = "self") throws(ReplicaError) -> [MountInfoEntry] {
        let path = "/proc/\(pid)/mountinfo"
        let fd = try OwnedFD.open(path, O_RDONLY)
        return try parse(try fd.readAll(limit: maxFileSize, name: path), source: path)
    }

    static func parseLine(_ line: ArraySlice<UInt8>, source: String, line number: Int) throws(ReplicaError) -> MountInfoEntry {
        let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        func invalid(_ why: String) -> ReplicaError {
            ReplicaError("mountinfo", ["\(source):\(number)"], errno: .EINVAL, hint: why)
        }
        guard let dash = fields.firstIndex(where: { $0.count == 1 && $0.first == UInt8(ascii: "-") }) else {
            throw invalid("no \" - \" separator before the filesystem type")
        }
        guard dash >= 6 else { throw invalid("expected 6 fields before \" - \", found \(dash)") }
        guard fields.count - dash - 1 >= 3 else { throw invalid("expected type, source and options after \" - \"") }
        guard let mountID = Int(ascii: fields[0]), let parentID = Int(ascii: fields[1]) else {
            throw invalid("mount ID and parent ID must be numbers")
        }
        let device = fields[2]
        guard let colon = device.firstIndex(of: UInt8(ascii: ":")), let major = UInt32(ascii: device[..<colon]),
              let minor = UInt32(ascii: device[(colon + 1)...]) else {
            throw invalid("device must be MAJOR:MINOR")
        }
        return MountInfoEntry(
            mountID: mountID, parentID: parentID, major: major, minor: minor,
            root: unescape(fields[3]), mountPoint: unescape(fields[4]),
            mountOptionsText: unescape(fields[5]),
            optionalFields: fields[6..<dash].map { unescape($0) },
            fsType: unescape(fields[dash + 1]), source: unescape(fields[dash + 2]),
            superOptionsText: unescape(fields[dash + 3]))
    }

    /// Undoes the kernel's `\ooo` octal escapes (`\040` is a space).
    static func unescape(_ field: ArraySlice<UInt8>) -> String {
        guard field.contains(UInt8(ascii: "\\")) else { return String(decoding: field, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var i = field.startIndex
        while i < field.endIndex {
            let byte = field[i]
            if byte == UInt8(ascii: "\\"), field.endIndex - i >= 4,
               let value = octal(field[(i + 1)...(i + 3)]) {
                out.append(value)
                i += 4
            } else {
                out.append(byte)
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func octal(_ digits: ArraySlice<UInt8>) -> UInt8? {
        var value: UInt32 = 0
        for d in digits {
            guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "7") else { return nil }
            value = value * 8 + UInt32(d - UInt8(ascii: "0"))
        }
        return value <= 255 ? UInt8(value) : nil
    }
}

private extension FixedWidthInteger {
    /// A decimal number of ASCII digits only; nil for anything else or one too large.
    init?(ascii: ArraySlice<UInt8>) {
        guard !ascii.isEmpty else { return nil }
        var value: Self = 0
        for byte in ascii {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (sum, carried) = shifted.addingReportingOverflow(Self(byte - UInt8(ascii: "0")))
            guard !overflowed, !carried else { return nil }
            value = sum
        }
        self = value
    }
}
