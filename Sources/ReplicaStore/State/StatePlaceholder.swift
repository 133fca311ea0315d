import CReplicaShim
import Glibc
import ReplicaKit

/// Once a service's state is on the store, its state path holds a placeholder instead of data: an
/// empty directory, root's, mode 0000, immutable where the filesystem keeps flags (`chattr +i`),
/// holding only `README.replica`, which says where the state went. systemd and `replica-run` bind
/// the subvolume over it, so the service never sees it; a start without Replica (its profile
/// removed) finds nothing it can read or write and fails, where the kept original would have let
/// it run on stale data. What was at the path is moved aside, never deleted:
/// `PATH.replica-original.YYYYMMDDTHHMMSSZ`, beside it.
public enum StatePlaceholder {
    /// What `seal` did.
    public enum Outcome: Equatable, Sendable {
        /// The placeholder was there.
        case kept
        /// Nothing (or an empty directory) was at the path; the placeholder is there now.
        case made
        /// What was at the path was moved aside to this path; the placeholder is there now.
        case movedAside(String)
    }

    /// The note inside the placeholder.
    public static let noteName = "README.replica"

    /// Where the original at `path` goes when moved aside at `time`.
    public static func asidePath(_ path: String, at time: UTCTimestamp) -> String {
        SnapshotName(subvolume: "\(path).replica-original", time: time).description
    }

    /// Makes `path` the placeholder of subvolume `subvolume` of `store`, moving what is there
    /// aside (`renameat2(RENAME_NOREPLACE)`): a directory with entries is kept whole, an empty
    /// one becomes the placeholder itself. A symlink or any other file at the path is refused, as
    /// is a parent reached through a symlink. Missing parents are made (0755), as systemd makes a bind's mount point.
    public static func seal(_ path: String, subvolume: String, store: String, at time: UTCTimestamp) throws(ReplicaError) -> Outcome {
        let (parentPath, name) = split(path)
        let host = try hostTree()
        try host.makeDirectories(parentPath)
        let parent = try host.openForReading(parentPath, [.directory, .noSymlinks])
        // A new directory at the path, made the placeholder.
        func makeNew(_ outcome: Outcome) throws(ReplicaError) -> Outcome {
            _ = try syscall("mkdirat", path) { mkdirat(parent.rawValue, name, 0o700) }
            try make(try parent.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: path,
                     note: note(subvolume: subvolume, store: store, aside: outcome))
            return outcome
        }
        var st = stat()
        guard fstatat(parent.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            guard Errno.current == .ENOENT else { throw ReplicaError.current("fstatat", [path]) }
            return try makeNew(.made)
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw ReplicaError("seal state path", [path], errno: .EEXIST,
                               hint: "is not a directory (a symlink or a file); its state is on the store as \(store)/\(subvolume): "
                                   + "move it away, then start again", reason: .refused)
        }
        if isPlaceholder(st) { return .kept }
        // An empty directory becomes the placeholder where it is: under systemd it may be a mount
        // point in this namespace (the subvolume bound over it), which cannot be removed or renamed.
        let existing = try parent.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        var outcome = Outcome.made
        if try !DirectoryEntries.names(in: existing).isEmpty {
            let aside = asidePath(path, at: time)
            let asideName = split(aside).name
            outcome = .movedAside(aside)
            if replica_renameat2(parent.rawValue, name, parent.rawValue, asideName, replica_RENAME_NOREPLACE) == 0 {
                return try makeNew(outcome)
            }
            // overlayfs cannot rename a directory of its lower layer (EXDEV); a mount point cannot
            // be renamed (EBUSY): the original is copied aside and the directory emptied instead.
            guard [Errno.EXDEV, .EBUSY].contains(Errno.current) else { throw ReplicaError.current("renameat2(RENAME_NOREPLACE)", [path, aside]) }
            try copyAside(existing, in: parent, to: asideName, path: path, aside: aside)
        }
        try make(existing, path: path, note: note(subvolume: subvolume, store: store, aside: outcome))
        return outcome
    }

    /// The tree as PID 1 sees it. Under systemd, `ExecStartPre=+` runs in the unit's own mount
    /// namespace, where from the second start on the subvolume is already bound over the state
    /// path; the placeholder is the host's, under that bind (`/proc/1/root`).
    static func hostTree() throws(ReplicaError) -> RootDirectory {
        if !SystemdManager.mountsReachHost, let root = try? RootDirectory("/proc/1/root") { return root }
        return try RootDirectory("/")
    }

    /// Moves a directory's content aside where the directory cannot be renamed (overlayfs, for a
    /// directory of its lower layer: EXDEV; a mount point: EBUSY): copied as a migration copies
    /// (everything kept, then compared), and only then the original emptied, entry by entry, never
    /// following a link. The emptied directory then becomes the placeholder.
    static func copyAside(_ original: borrowing OwnedFD, in parent: borrowing OwnedFD, to asideName: String,
                          path: String, aside: String) throws(ReplicaError) {
        _ = try syscall("mkdirat", aside) { mkdirat(parent.rawValue, asideName, 0o700) }
        let target = try parent.openat(asideName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        var copier = TreeCopier()
        try copier.copyContents(of: original, into: target, top: target, path: path)
        try copier.seal(in: target, path: aside)
        try TreeComparer.requireEqual(original, target, path: path)
        try StateMigration.copyAttributes(from: original, to: target, path: aside)
        do throws(ReplicaError) { try removeContents(of: original, path: path) } catch {
            throw ReplicaError(error.operation, error.objects, errno: error.errno,
                               hint: "the original is copied whole to \(aside), but \(path) could not be emptied; empty it by hand "
                                   + "(chattr -R -i \(path); find \(path) -mindepth 1 -delete) and start again")
        }
    }

    /// `rm -r` of what a directory holds, by descriptor, without following symlinks.
    static func removeContents(of directory: borrowing OwnedFD, path: String) throws(ReplicaError) {
        for entry in try DirectoryEntries.names(in: directory) {
            var st = stat()
            _ = try syscall("fstatat", "\(path)/\(entry)") { fstatat(directory.rawValue, entry, &st, AT_SYMLINK_NOFOLLOW) }
            if st.st_mode & S_IFMT == S_IFDIR {
                try removeContents(of: try directory.openat(entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: "\(path)/\(entry)")
            }
            _ = try syscall("unlinkat", "\(path)/\(entry)") { unlinkat(directory.rawValue, entry, st.st_mode & S_IFMT == S_IFDIR ? AT_REMOVEDIR : 0) }
        }
    }

    /// A directory only root could have made this way: root's, mode 0000.
    static func isPlaceholder(_ st: stat) -> Bool { st.st_uid == 0 && st.st_mode & 0o7777 == 0 }

    /// The note, then root's, mode 0000, then `chattr +i` where the filesystem has it (a filesystem
    /// without inode flags keeps a mode-0000 root directory, still unusable to every other user).
    static func make(_ directory: borrowing OwnedFD, path: String, note: String) throws(ReplicaError) {
        let file = try directory.openat(noteName, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o444)
        try file.writeAll(Array(note.utf8), name: "\(path)/\(noteName)")
        _ = try syscall("fchown", path) { fchown(directory.rawValue, 0, 0) }
        _ = try syscall("fchmod", path) { fchmod(directory.rawValue, 0) }
        _ = replica_set_inode_flags(directory.rawValue, replica_immutable_inode_flag)
    }

    static func note(subvolume: String, store: String, aside: Outcome) -> String {
        var lines = ["This directory is a placeholder left by Replica: the service's state is on the store, as subvolume",
                     "\(subvolume) of \(store), bound here in the service's own mount namespace at every start."]
        if case .movedAside(let path) = aside { lines.append("What was here before is kept, unchanged, at \(path).") }
        lines.append("It is empty and immutable so that the service cannot start on it without Replica.")
        lines.append("To take the service off Replica: stop it, remove its profile, systemctl daemon-reload, then")
        lines.append("chattr -i THIS; rm -r THIS; cp -a --reflink=auto \(store)/\(subvolume) THIS")
        return lines.joined(separator: "\n") + "\n"
    }

    static func split(_ path: String) -> (parent: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let parent = String(path[..<slash])
        return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
    }
}
