import CSeccomp
import Glibc

/// Compiled seccomp filters, kept so a start loads them instead of compiling them:
/// `/var/cache/replica/seccomp/KEY.bpf`, KEY a hash of the confinement's settings, the system call
/// groups, the libseccomp version and how programs are made of filters (a change in any compiles
/// anew). The folder must be root's and writable by no one else, or it is not used; an entry that
/// does not parse is compiled again and replaced. Writing is best effort: a read-only /var only
/// costs the compile.
public struct SeccompCache: Sendable {
    /// Where compiled programs are kept, one file per key.
    public var directory: String
    /// `/var/cache/replica/seccomp`.
    public static let defaultDirectory = "/var/cache/replica/seccomp"

    /// A cache in `directory` (made on first store).
    public init(directory: String = SeccompCache.defaultDirectory) { self.directory = directory }

    /// The entry name for `confinement`: FNV-1a (64 bits) of what decides its filters, in hex.
    public static func key(_ confinement: Confinement) -> String {
        let version = seccomp_version().map { "\($0.pointee.major).\($0.pointee.minor).\($0.pointee.micro)" } ?? "?"
        let text = ([ "libseccomp \(version)", "groups \(groupsDigest)", "programs \(programsRevision)"]
                    + confinement.systemdDirectives).joined(separator: "\n")
        return String(FNV1a.hash64(text), radix: 16)
    }

    /// Raised when `Confinement.seccompPrograms()` makes other programs of the same filters
    /// (2: those deciding by number alone merged and compiled as runs).
    static let programsRevision = 2

    /// `tableDigest()` of the group table, written out: a start that finds its filters in the cache
    /// never builds the table (hashing it took a third of a cached start). A unit test fails when
    /// the table changes and this does not.
    public static let groupsDigest: UInt64 = 0xbaaa_efb4_9516_0949

    /// FNV-1a (64 bits) of the system call groups, sorted by name, as `@name:call,call;…`.
    public static func tableDigest() -> UInt64 {
        FNV1a.hash64(SyscallFilter.groups.sorted { $0.key < $1.key }
            .map { "\($0.key):\($0.value.joined(separator: ","))" }.joined(separator: ";"))
    }

    /// The filters of `confinement`, from the cache when it holds them, else compiled (and stored).
    public func programs(for confinement: Confinement) throws(ReplicaError) -> (programs: [SeccompProgram], cached: Bool) {
        guard confinement.usesSeccomp else { return ([], false) }
        return try programs(key: Self.key(confinement)) { () throws(ReplicaError) in try confinement.seccompPrograms() }
    }

    /// The filters kept under `key` (`KEY.bpf`), else those `make` gives, stored under it.
    public func programs(key: String, make: () throws(ReplicaError) -> [SeccompProgram]) throws(ReplicaError)
        -> (programs: [SeccompProgram], cached: Bool) {
        let name = "\(key).bpf"
        if let stored = load(name) { return (stored, true) }
        let programs = try make()
        store(programs, as: name)
        return (programs, false)
    }

    /// The folder, as opened, is a directory owned by root and not writable by group or others:
    /// checked on its descriptor (`fstat`), so the folder checked is the folder read.
    static func trusted(_ folder: borrowing RootDirectory) -> Bool {
        guard let status = try? folder.fd.status() else { return false }
        return status.kind == .directory && status.owner == 0 && status.mode & 0o022 == 0
    }

    /// "RSC1", the count, then each program's length and bytes (32-bit little-endian numbers).
    static func encode(_ programs: [SeccompProgram]) -> [UInt8] {
        func word(_ value: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(value).littleEndian) { Array($0) } }
        return Array("RSC1".utf8) + word(programs.count) + programs.flatMap { word($0.bpf.count) + $0.bpf }
    }

    static func decode(_ bytes: [UInt8]) -> [SeccompProgram]? {
        guard bytes.count >= 8, Array(bytes[0..<4]) == Array("RSC1".utf8) else { return nil }
        func word(_ at: Int) -> Int? {
            guard at + 4 <= bytes.count else { return nil }
            return Int(UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24)
        }
        guard let count = word(4), count <= 64 else { return nil }
        var offset = 8
        var programs: [SeccompProgram] = []
        for _ in 0..<count {
            guard let length = word(offset), length > 0, length % 8 == 0, offset + 4 + length <= bytes.count else { return nil }
            programs.append(SeccompProgram(bpf: Array(bytes[(offset + 4)..<(offset + 4 + length)])))
            offset += 4 + length
        }
        return offset == bytes.count ? programs : nil
    }

    func load(_ name: String) -> [SeccompProgram]? {
        guard let root = try? RootDirectory(directory), Self.trusted(root),
              let fd = try? root.openForReading(name, [.regularFile, .noSymlinks]),
              let bytes = try? fd.readAll(limit: 8 << 20, name: name) else { return nil }
        return Self.decode(bytes)
    }

    func store(_ programs: [SeccompProgram], as name: String) {
        if (try? FileStatus.of(directory)) == nil { _ = try? createDirectories(directory, mode: 0o700) }
        guard let root = try? RootDirectory(directory), Self.trusted(root) else { return }
        _ = try? root.writeFileAtomically(name, contents: Self.encode(programs), mode: 0o600)
    }
}
