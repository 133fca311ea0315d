import CReplicaShim
import Glibc

extension RootDirectory {
    /// Replaces `relativePath` inside the root with `contents` atomically: a reader sees the old file
    /// or the new one, never a mix. The parent directory is resolved inside the root with no symlinks
    /// allowed; the data goes to a temporary file beside the target, is fsync'ed, then renamed over it
    /// (`renameat(2)`). On failure the temporary file is removed and the target is untouched. A
    /// writer killed before its rename leaves its temporary file; folders where that matters clear
    /// them with `removeStaleTemporaries(in:)`. `sync: false` leaves out the `fsync` for a caller
    /// that commits the whole file system next (`syncfs`), as a fork does, or whose file is made
    /// again at its next run (name records; a file rewritten at every run of a timer is better served
    /// by `rewriteFileAtomically`). Such a file is swapped with the old one
    /// (`renameat2(RENAME_EXCHANGE)`), which is then unlinked: as atomic for a reader, but without
    /// the write-back ext4 starts when a rename replaces a file (`auto_da_alloc`), a tenth of the
    /// cost there. A plain rename when the old file is missing or not a regular file, or the file
    /// system cannot swap.
    public func writeFileAtomically(_ relativePath: String, contents: [UInt8], mode: mode_t = 0o644, sync: Bool = true) throws(ReplicaError) {
        try inParent(of: relativePath, "write") { (parent, name) throws(ReplicaError) in
            let temporary = ".\(name).replica-\(getpid())-\(replica_gettid())"
            let file = try parent.openat(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
            do throws(ReplicaError) {
                try file.writeAll(contents, name: relativePath)
                if sync { _ = try syscall("fsync", relativePath) { fsync(file.rawValue) } }
                // Only a regular file is swapped: a rename refuses a directory, a swap would move it aside.
                var old = stat()
                if !sync, fstatat(parent.rawValue, name, &old, AT_SYMLINK_NOFOLLOW) == 0, FileStatus(old).kind == .regular,
                   replica_renameat2(parent.rawValue, temporary, parent.rawValue, name, replica_RENAME_EXCHANGE) == 0 {
                    unlinkat(parent.rawValue, temporary, 0)  // now the old file
                    return
                }
                _ = try syscall("renameat", temporary, relativePath) {
                    renameat(parent.rawValue, temporary, parent.rawValue, name)
                }
            } catch {
                unlinkat(parent.rawValue, temporary, 0)
                throw error
            }
        }
    }

    /// Replaces `relativePath` as `writeFileAtomically(sync: false)` does, for a file made again at
    /// every run of a timer (metrics): the contents go into `.NAME.spare`, the old file the last
    /// rewrite swapped out, written over in place and swapped in (`renameat2(RENAME_EXCHANGE)`).
    /// Nothing is unlinked, so no blocks are freed: where a filesystem discards freed blocks at once
    /// (ext4 `-o discard`), unlinking the old file took 0.3 ms of a 4 ms snapshot run. A reader still
    /// sees the old file or the new one, never a mix: the spare is written only under a write lease
    /// (`fcntl(F_SETLEASE, F_WRLCK)`), which the kernel grants only while no one else has the file
    /// open, and with mode 0600 meanwhile, so no one else can open it then (an open that got past the
    /// mode just before breaks the lease, which signals no one: `takeWriteLease`). A spare someone still reads, one that is not a plain file of one link,
    /// or a filesystem without leases, and the write falls back to a new temporary file. `mode` is
    /// set exactly (`fchmod`, no umask). Not synced: a crash may leave the file half old, half new,
    /// until the next run rewrites it.
    public func rewriteFileAtomically(_ relativePath: String, contents: [UInt8], mode: mode_t = 0o644) throws(ReplicaError) {
        let rewritten = try inParent(of: relativePath, "write") { (parent, name) throws(ReplicaError) -> Bool in
            var old = stat()
            let oldExists = fstatat(parent.rawValue, name, &old, AT_SYMLINK_NOFOLLOW) == 0
            guard !oldExists || FileStatus(old).kind == .regular else { return false }
            let spareName = ".\(name).spare"
            let raw = Glibc.openat(parent.rawValue, spareName, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard raw >= 0 else { return false }
            let spare = OwnedFD(adopting: raw)  // closing it gives up the lease too
            guard let status = try? spare.status(), status.kind == .regular, status.linkCount == 1,
                  fchmod(raw, 0o600) == 0, spare.takeWriteLease() else { return false }
            guard (try? spare.writeAll(contents, name: spareName)) != nil,
                  status.size <= contents.count || ftruncate(raw, off_t(contents.count)) == 0,
                  replica_set_lease(raw, Int32(F_UNLCK)) == 0, fchmod(raw, mode) == 0 else { return false }
            if oldExists { return replica_renameat2(parent.rawValue, spareName, parent.rawValue, name, replica_RENAME_EXCHANGE) == 0 }
            return renameat(parent.rawValue, spareName, parent.rawValue, name) == 0
        }
        if !rewritten { try writeFileAtomically(relativePath, contents: contents, mode: mode, sync: false) }
    }

    /// Unlinks `.NAME.replica-PID-TID` files in `folder` whose writer process no longer exists
    /// (`kill(PID, 0)` fails with ESRCH): what a write killed between create and rename left.
    public static func removeStaleTemporaries(in folder: borrowing OwnedFD) {
        guard let names = try? DirectoryEntries.names(in: folder) else { return }
        for name in names where name.hasPrefix(".") && name.contains(".replica-") {
            let ids = name.split(separator: "-").suffix(2)
            guard ids.count == 2, let pid = Int32(ids.first!), Int32(ids.last!) != nil, pid > 0 else { continue }
            if kill(pid, 0) != 0 && Errno.current.rawValue == ESRCH { unlinkat(folder.rawValue, name, 0) }
        }
    }
}

extension OwnedFD {
    /// `fcntl(F_SETLEASE, F_WRLCK)`, then `fcntl(F_SETOWN, 0)`: a write lease, which the kernel grants
    /// only while no other descriptor has the file open, and whose break signals no one (the lease's
    /// owner would get `SIGIO`, which kills by default). An open that breaks it waits until it is
    /// given up (`F_UNLCK`, or this descriptor closed), or fails with `EWOULDBLOCK` if non-blocking.
    /// False when the kernel refuses it: the file open elsewhere, not this user's, or no leases there.
    public borrowing func takeWriteLease() -> Bool {
        replica_set_lease(rawValue, Int32(F_WRLCK)) == 0 && fcntl(rawValue, F_SETOWN, 0) == 0
    }
}
