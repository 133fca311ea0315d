import CReplicaShim
import Glibc
import ReplicaKit

extension Btrfs {
    /// How every subvolume of ours appears under its name — a migrated state, a fork, an imported
    /// template, a Nomad volume: `make` creates `staging` in the open `folder` (a fork makes a
    /// snapshot; the other `publish` an empty subvolume), `fill` writes it, the filesystem is synced (`syncfs`),
    /// so nothing appears under `name` that a power loss could take back, and
    /// `renameat2(RENAME_NOREPLACE)` gives it its name, whose commit is started without waiting for
    /// it: while a subvolume's rename is uncommitted, btrfs makes any `fsync` on the filesystem a
    /// whole commit, and a fork's systemd fsyncs `/etc/machine-id` early in its first boot (a commit
    /// of 10–18 ms here, which its boot would wait for). On any failure the staging subvolume is
    /// deleted (made writable first, if `fill` made it read-only) before the error is reported, so
    /// nothing partial holds the store's space or a name. A staging subvolume a killed run left is
    /// the caller's to judge before calling (its owner decides whether it goes).
    public static func publish(
        _ name: String, staging: String, in folder: borrowing OwnedFD, path: String,
        make: (borrowing OwnedFD) throws(ReplicaError) -> Void,
        fill: (borrowing OwnedFD) throws(ReplicaError) -> Void
    ) throws(ReplicaError) {
        try validate(name: name, in: path)
        try make(folder)
        do throws(ReplicaError) {
            let staged = try folder.openat(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            try fill(staged)
            let fd = staged.rawValue
            _ = try syscall("syncfs", "\(path)/\(staging)") { replica_syncfs(fd) }
            let parent = folder.rawValue
            _ = try syscall("renameat2(RENAME_NOREPLACE)", "\(path)/\(staging)", "\(path)/\(name)") {
                replica_renameat2(parent, staging, parent, name, replica_RENAME_NOREPLACE)
            }
            try? startSync(folder, path: path)  // only sooner: btrfs's periodic commit would do it too
        } catch {
            if let staged = try? folder.openat(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) {
                try? setReadOnly(staged, false, path: "\(path)/\(staging)")
            }
            try? deleteSubvolume(in: folder, named: staging, parentPath: path)
            throw error
        }
    }

    /// `publish` of a new, empty subvolume (`btrfs subvolume create`) that `fill` writes.
    public static func publish(
        _ name: String, staging: String, in folder: borrowing OwnedFD, path: String,
        fill: (borrowing OwnedFD) throws(ReplicaError) -> Void
    ) throws(ReplicaError) {
        try publish(name, staging: staging, in: folder, path: path, make: { (folder) throws(ReplicaError) in
            try createSubvolume(in: folder, named: staging, parentPath: path)
        }, fill: fill)
    }
}
