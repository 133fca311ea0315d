import Glibc
import ReplicaKit
import ReplicaStore

/// The users a machine's root is: by default a user namespace of its own, mapping the guest's
/// uids and gids 0…65535 onto a host range no other machine has (`systemd-nspawn
/// --private-users=BASE:65536`), so the guest's root holds no capability over the host and its
/// files on disk stay as the template has them (`--private-users-ownership=auto`: an idmapped
/// mount of the root where the file system has them, as btrfs does since Linux 5.15; a one-time
/// shift of every file's owner at the first start where it has not). The range is chosen at fork
/// and recorded with the machine, so every start (from a shell, its unit, its set) maps the same.
public enum MachineUsers: Equatable, Sendable, CustomStringConvertible {
    /// A user namespace mapping 0…65535 onto `base`…`base+65535` on the host.
    case range(base: UInt32)
    /// No user namespace: the guest's root is the host's (`--private-users=no`). The explicit,
    /// recorded opt-out, for a guest that must manage the host's devices; it is no boundary.
    case host

    /// The extended attribute recording a machine's users: `BASE` or `no`.
    public static let attribute = "user.replica.users"
    /// How many uids and gids a machine gets: systemd-nspawn's and the kernel's 16-bit set.
    public static let size: UInt32 = 0x10000
    /// Where machines' ranges are taken from: systemd-nspawn's own pool for containers,
    /// 0x00080000…0x6FFFFFFF (above the host's users and the usual subordinate ranges).
    public static let pool: ClosedRange<UInt32> = 0x0008_0000...0x6FFF_FFFF

    /// As recorded: `BASE` or `no`; `--private-users=` takes the same words.
    public var description: String {
        switch self {
        case .range(let base): "\(base)"
        case .host: "no"
        }
    }

    /// Reads a recorded or given value: a base in the pool, aligned to 65536, or `no`.
    public init(_ text: String) throws(ReplicaError) {
        if text == "no" {
            self = .host
            return
        }
        guard let base = UInt32(text), base % Self.size == 0, Self.pool.contains(base), Self.pool.contains(base + Self.size - 1) else {
            throw .usage("private users \"\(text)\": give no, or a base uid that is a multiple of 65536 from \(Self.pool.lowerBound) "
                         + "to \(Self.pool.upperBound - Self.size + 1)")
        }
        self = .range(base: base)
    }

    /// `systemd-nspawn`'s options for it.
    public var nspawnArguments: [String] {
        switch self {
        case .range(let base): ["--private-users=\(base):\(Self.size)", "--private-users-ownership=auto"]
        case .host: ["--private-users=no"]
        }
    }

    /// The host uid of the guest's root (0 without a user namespace).
    public var rootUID: UInt32 {
        switch self {
        case .range(let base): base
        case .host: 0
        }
    }

    /// The ranges the store's machines hold: `machines/.users`, one `BASE NAME` line each, read
    /// and rewritten under the lock of the machines folder. One small file read per fork, where
    /// opening every machine's subvolume to read its attribute cost a few milliseconds per fork
    /// at a hundred machines.
    static let index = ".users"

    /// Records `wanted` (or, nil, the first free range) for machine `name` on its subvolume `fd`
    /// in the machines folder `folder`, and in the folder's index, under a lock of that folder, so
    /// two forks at once never take the same range. Free: no machine holds it and it overlaps no
    /// subordinate range of `/etc/subuid` or `/etc/subgid`. A range given that another machine
    /// holds is refused.
    static func assign(_ wanted: MachineUsers?, to fd: borrowing OwnedFD, name: String, path: String, in folder: borrowing OwnedFD,
                       folderPath: String) throws(ReplicaError) -> MachineUsers {
        _ = try folder.lockExclusively(wait: .seconds(30), name: folderPath)
        defer { flock(folder.rawValue, LOCK_UN) }
        RootDirectory.removeStaleTemporaries(in: folder)  // a killed writer's
        var held = try entries(in: folder, folderPath: folderPath).filter { $0.name != name }
        let users: MachineUsers
        if let wanted {
            if case .range(let base) = wanted, let holder = held.first(where: { $0.base == base }) {
                throw ReplicaError("fork machine", [path], errno: .EEXIST, hint: "user range \(base) is machine \(holder.name)'s; leave "
                                   + "--private-users out to get a free one", reason: .refused)
            }
            users = wanted
        } else {
            let taken = Set(held.map(\.base))
            let subordinate = subordinateRanges()
            var base = pool.lowerBound
            while taken.contains(base) || subordinate.contains(where: { $0.overlaps(base...(base + size - 1)) }) {
                guard base <= pool.upperBound - 2 * size + 1 else {
                    throw ReplicaError("fork machine", [path], errno: .ENOSPC,
                                       hint: "every user range of the pool is taken; remove machines no longer needed", reason: .refused)
                }
                base += size
            }
            users = .range(base: base)
        }
        if case .range(let base) = users {
            held.append((base, name))
            try write(held, folderPath: folderPath)
        }
        try Btrfs.setAttribute(fd, attribute, users.description, path: path)
        return users
    }

    /// Moves machine `old`'s range to the name `new` (a claimed pool machine's), under the folder's lock.
    static func rename(_ old: String, to new: String, in folder: borrowing OwnedFD, folderPath: String) throws(ReplicaError) {
        _ = try folder.lockExclusively(wait: .seconds(30), name: folderPath)
        defer { flock(folder.rawValue, LOCK_UN) }
        let held = try entries(in: folder, folderPath: folderPath)
        if held.contains(where: { $0.name == old }) { try write(held.map { ($0.base, $0.name == old ? new : $0.name) }, folderPath: folderPath) }
    }

    /// Gives machine `name`'s range back (it was removed, or its fork failed).
    static func release(_ name: String, in folder: borrowing OwnedFD, folderPath: String) throws(ReplicaError) {
        _ = try folder.lockExclusively(wait: .seconds(30), name: folderPath)
        defer { flock(folder.rawValue, LOCK_UN) }
        RootDirectory.removeStaleTemporaries(in: folder)  // a killed writer's
        let held = try entries(in: folder, folderPath: folderPath)
        if held.contains(where: { $0.name == name }) { try write(held.filter { $0.name != name }, folderPath: folderPath) }
    }

    /// The index's entries. Without an index (a store whose index was lost), they are read from
    /// every machine's own attribute once, and the index is written from them by the next change.
    static func entries(in folder: borrowing OwnedFD, folderPath: String) throws(ReplicaError) -> [(base: UInt32, name: String)] {
        let file: OwnedFD
        do { file = try folder.openat(index, O_RDONLY | O_NOFOLLOW) } catch where error.errno == .ENOENT {
            var held: [(base: UInt32, name: String)] = []
            for entry in try DirectoryEntries.names(in: folder) where entry != index && !entry.contains(".replica-") {
                guard let machine = try? folder.openat(entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW),
                      let text = Btrfs.attribute(machine, attribute), case .range(let base)? = try? MachineUsers(text) else { continue }
                held.append((base, entry.hasPrefix(".forking-") ? String(entry.dropFirst(".forking-".count)) : entry))
            }
            return held
        }
        var held: [(base: UInt32, name: String)] = []
        for line in String(decoding: try file.readAll(limit: 16 << 20, name: "\(folderPath)/\(index)"), as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let base = UInt32(fields[0]) { held.append((base, String(fields[1]))) }
        }
        return held
    }

    /// Replaces the index (atomically: a reader sees the old one or the new one). Not synced on
    /// its own: a fork commits the store (`syncfs`) before the machine appears, and an entry a
    /// crash loses after a remove only keeps a range taken.
    static func write(_ held: [(base: UInt32, name: String)], folderPath: String) throws(ReplicaError) {
        try RootDirectory(folderPath).writeFileAtomically(index, contents: Array(held.map { "\($0.base) \($0.name)\n" }.joined().utf8),
                                                           mode: 0o600, sync: false)
    }

    /// The subordinate ranges of `/etc/subuid` and `/etc/subgid` (`USER:FIRST:COUNT` lines).
    static func subordinateRanges(files: [String] = ["/etc/subuid", "/etc/subgid"]) -> [ClosedRange<UInt32>] {
        var ranges: [ClosedRange<UInt32>] = []
        for file in files {
            guard let bytes = try? OwnedFD.open(file, O_RDONLY).readAll(limit: 1 << 20) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: ":")
                guard fields.count == 3, let first = UInt32(fields[1]), let count = UInt32(fields[2]), count > 0,
                      first <= UInt32.max - (count - 1) else { continue }
                ranges.append(first...(first + count - 1))
            }
        }
        return ranges
    }
}
