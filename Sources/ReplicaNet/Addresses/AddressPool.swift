import Glibc
import ReplicaKit

/// The addresses of a bridge's IPv4 subnet, handed out by owner name as CNI's host-local plugin
/// does, so nobody assigns them by hand: one file per leased address,
/// `/var/lib/replica/net/leases/10.88.0.0-24/10.88.0.5`, holding its owner, written under an
/// exclusive `flock` of the subnet's `.lock` so concurrent leases never hand out one twice. The
/// first host address is the gateway (the bridge's own); leases start after it.
public struct AddressPool: Sendable {
    /// The subnet addresses are leased from.
    public let subnet: IPPrefix
    /// Where its leases are kept: one file per leased address.
    public let directory: String
    /// `/var/lib/replica/net/leases`: one folder per subnet.
    public static let defaultRoot = "/var/lib/replica/net/leases"

    /// The pool of `subnet` (IPv4, /8 to /30), keeping its leases below `root`.
    public init(subnet: IPPrefix, root: String = defaultRoot) throws(ReplicaError) {
        guard subnet.family == AF_INET, (8...30).contains(subnet.length) else {
            throw ReplicaError("address pool", [subnet.description], errno: .EINVAL, hint: "an IPv4 subnet from /8 to /30")
        }
        self.subnet = subnet.network
        directory = "\(root)/\(self.subnet.addressText)-\(subnet.length)"
    }

    /// The subnet's first host address, with the subnet's length: the bridge's address.
    public var gateway: IPPrefix { host(1) }

    /// The address an empty pool leases first (the host after the gateway): what a plan is checked
    /// with before any lease is taken.
    public var firstLease: IPPrefix { host(2) }

    func host(_ n: UInt32) -> IPPrefix {
        let base = subnet.address.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } + n
        return IPPrefix(address: [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: base >> $0) }, length: subnet.length)
    }

    /// The owner's address: the one it already holds, else the lowest free one. `dryRun` only
    /// says which it would be.
    public func lease(for owner: String, dryRun: Bool = false) throws(ReplicaError) -> IPPrefix {
        try take(for: owner, dryRun: dryRun).address
    }

    /// `lease`, also saying whether this call made the lease, so that an attempt that fails gives
    /// back only what it took — never the address a running service already holds.
    public func take(for owner: String, dryRun: Bool = false) throws(ReplicaError) -> (address: IPPrefix, isNew: Bool) {
        _ = try LeaseOwner(owner)
        return try locked { () throws(ReplicaError) -> (address: IPPrefix, isNew: Bool) in
            let current = try leases()
            if let held = current.first(where: { $0.owner == owner }) { return (held.address, false) }
            // Every entry named as an address is taken, lease or not: a stray folder or file there
            // would otherwise be the lowest free address for ever, and every new lease would fail on it.
            let taken = Set(try entries().map(\.address)).union(current.map(\.address.address))
            let hosts = UInt32(1) << (32 - subnet.length) - 2
            for n in 2...hosts where !taken.contains(host(n).address) {
                let address = host(n)
                if dryRun { return (address, true) }
                try RootDirectory(directory).writeFileAtomically(address.addressText, contents: Array("\(owner)\n".utf8), mode: 0o644)
                return (address, true)
            }
            throw ReplicaError("lease address", [subnet.description, owner], errno: .EADDRNOTAVAIL,
                           hint: "every address of \(subnet) is leased; release some (replica-net down) or use a larger subnet")
        }
    }

    /// Every pool under `root` (`10.88.0.0-24`, …), by subnet.
    public static func all(root: String = defaultRoot) throws(ReplicaError) -> [AddressPool] {
        guard let top = try? OwnedFD.open(root, O_RDONLY | O_DIRECTORY) else { return [] }
        return try DirectoryEntries.names(in: top).sorted().compactMap { name in
            let parts = name.split(separator: "-")
            guard parts.count == 2, let subnet = try? IPPrefix("\(parts[0])/\(parts[1])") else { return nil }
            return try? AddressPool(subnet: subnet, root: root)
        }
    }

    /// Gives the owner's address back; nothing to give back is fine.
    public func release(_ owner: String) throws(ReplicaError) {
        _ = try LeaseOwner(owner)
        try locked { () throws(ReplicaError) in
            for lease in try leases() where lease.owner == owner { unlink("\(directory)/\(lease.address.addressText)") }
        }
    }

    /// Every lease, by address.
    public func leases() throws(ReplicaError) -> [(address: IPPrefix, owner: String)] {
        guard let fd = try? OwnedFD.open(directory, O_RDONLY | O_DIRECTORY) else { return [] }
        RootDirectory.removeStaleTemporaries(in: fd)  // a lease a killed `take` was writing is no lease
        var found: [(address: IPPrefix, owner: String)] = []
        for entry in try entries() {
            guard let file = try? fd.openat(entry.name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK), (try? file.status().kind) == .regular,
                  let owner = try? file.readLine() else { continue }
            found.append((IPPrefix(address: entry.address, length: subnet.length), owner))
        }
        return found.sorted { $0.address.address.lexicographicallyPrecedes($1.address.address) }
    }

    /// The entries of the pool's folder named as an IPv4 address, whatever they are.
    func entries() throws(ReplicaError) -> [(name: String, address: [UInt8])] {
        guard let fd = try? OwnedFD.open(directory, O_RDONLY | O_DIRECTORY) else { return [] }
        return try DirectoryEntries.names(in: fd).compactMap { name in
            guard let bytes = IPPrefix.parseAddress(name), bytes.count == 4 else { return nil }
            return (name, bytes)
        }
    }

    private func locked<T>(_ body: () throws(ReplicaError) -> T) throws(ReplicaError) -> T {
        try createDirectories(directory, mode: 0o755)
        let lock = try OwnedFD.open("\(directory)/.lock", O_RDWR | O_CREAT, mode: 0o644)
        _ = try lock.lockExclusively(wait: nil, name: "\(directory)/.lock")
        return try body()
    }
}

