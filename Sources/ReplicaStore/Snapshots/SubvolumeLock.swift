import Glibc
import ReplicaKit

/// One writer per subvolume: an exclusive `flock(2)` on `snapshots/NAME.lock` in the store, a file
/// that is created once and never deleted (deleting a lock file lets two holders lock two different
/// inodes). A contender finds the holder's pid in `/proc/locks`, not in the file, which holds only
/// the count `create` keeps (`SnapshotCensus`), written after the snapshot so that it joins the next
/// transaction, not the snapshot's commit. The lock goes with the holder's descriptor, so a holder
/// killed with SIGKILL blocks nobody.
public struct SubvolumeLock: ~Copyable {
    let fd: OwnedFD
    /// The subvolume locked.
    public let subvolume: String
    /// The store's `snapshots/`, which holds the lock file.
    let snapshots: OwnedFD

    /// Takes the lock, waiting up to `wait` (nil: not at all). A held lock throws reason `lockHeld`
    /// (`EWOULDBLOCK`) naming the holder's pid.
    public static func acquire(_ subvolume: String, in store: borrowing Store, wait: Duration? = nil) throws(ReplicaError) -> SubvolumeLock {
        try Btrfs.validate(name: subvolume, in: store.path)
        let directory = try store.makeSnapshotsDirectory()
        let name = subvolume + SubvolumeName.lockSuffix
        let path = "\(store.path)/\(Store.snapshotsDirectory)/\(name)"
        let fd = try directory.openat(name, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        guard try fd.lockExclusively(wait: wait ?? .zero, name: path) else {
            let who = holder(of: fd).map { "process \($0)" } ?? "another process"
            throw ReplicaError("lock", [path], errno: .EWOULDBLOCK,
                               hint: "\(who) is writing snapshots of \(subvolume); wait for it or pass --wait SECONDS", reason: .lockHeld)
        }
        return SubvolumeLock(fd: fd, subvolume: subvolume, snapshots: directory)
    }

    /// `Store.snapshotSubject` through the `snapshots/` this holds open.
    func snapshotSubject(in store: borrowing Store, allowNested: Bool) throws(ReplicaError) -> SnapshotSubject {
        try store.snapshotSubject(subvolume, allowNested: allowNested, in: snapshots)
    }

    /// The pid holding a `flock` on the file `fd` is open on: its line in `/proc/locks`
    /// (`1: FLOCK  ADVISORY  WRITE PID MAJOR:MINOR:INODE 0 EOF`), whose device is the
    /// filesystem's, as mountinfo gives it for the descriptor's mount (`mnt_id` in fdinfo), not
    /// the subvolume's that `fstat` gives on btrfs. Nil when none is found.
    static func holder(of fd: borrowing OwnedFD) -> Int32? {
        let info = String(decoding: (try? OwnedFD.open("/proc/self/fdinfo/\(fd.rawValue)", O_RDONLY).readAll()) ?? [], as: UTF8.self)
        guard let mountID = info.split(separator: "\n").first(where: { $0.hasPrefix("mnt_id:") })
                .flatMap({ $0.split(whereSeparator: \.isWhitespace).last.flatMap { Int($0) } }),
              let mount = try? MountInfo.read(pid: "self").first(where: { $0.mountID == mountID }),
              let inode = try? fd.status().inode,
              let locks = try? OwnedFD.open("/proc/locks", O_RDONLY).readAll(limit: 1 << 22) else { return nil }
        let file = "\(String(mount.major, radix: 16).leftPadded(2)):\(String(mount.minor, radix: 16).leftPadded(2)):\(inode)"
        for line in String(decoding: locks, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count >= 6, fields[1] == "FLOCK", fields[5] == file { return Int32(fields[4]) }
        }
        return nil
    }
}
