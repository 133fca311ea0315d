import Glibc
import ReplicaKit

/// One writer per subvolume: an exclusive `flock(2)` on `snapshots/NAME.lock` in the store, a file
/// that is created once and never deleted (deleting a lock file lets two holders lock two different
/// inodes). The holder writes its pid into it, for the message another contender sees. The lock
/// goes with the holder's descriptor, so a holder killed with SIGKILL blocks nobody.
public struct SubvolumeLock: ~Copyable {
    private let fd: OwnedFD
    /// The subvolume locked.
    public let subvolume: String

    /// Takes the lock, waiting up to `wait` (nil: not at all). A held lock throws reason `lockHeld`
    /// (`EWOULDBLOCK`) naming the holder's pid.
    public static func acquire(_ subvolume: String, in store: borrowing Store, wait: Duration? = nil) throws(ReplicaError) -> SubvolumeLock {
        try Btrfs.validate(name: subvolume, in: store.path)
        let directory = try store.makeSnapshotsDirectory()
        let name = subvolume + SubvolumeName.lockSuffix
        let path = "\(store.path)/\(Store.snapshotsDirectory)/\(name)"
        let fd = try directory.openat(name, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        guard try fd.lockExclusively(wait: wait ?? .zero, name: path) else {
            let holder = (try? fd.readAll(limit: 64)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let who = holder.isEmpty ? "another process" : "process \(holder)"
            throw ReplicaError("lock", [path], errno: .EWOULDBLOCK,
                               hint: "\(who) is writing snapshots of \(subvolume); wait for it or pass --wait SECONDS", reason: .lockHeld)
        }
        _ = ftruncate(fd.rawValue, 0)
        _ = pwrite(fd.rawValue, "\(getpid())", "\(getpid())".utf8.count, 0)
        return SubvolumeLock(fd: fd, subvolume: subvolume)
    }
}
