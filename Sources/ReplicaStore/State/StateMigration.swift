import CReplicaShim
import Glibc
import ReplicaKit

/// Moves a service's existing state directory (`/var/lib/web`) onto the store as its own
/// subvolume, once, without ever risking the original:
///
/// 1. copy into a hidden subvolume `.migrating-NAME`, reflinking (`FICLONE`) where source and store
///    share a filesystem, copying otherwise with holes kept (`SEEK_DATA`/`SEEK_HOLE`, as
///    `cp --sparse=always`); modes, owners, times, symlinks (never followed), hard links, FIFOs,
///    device nodes, extended attributes (ACLs, file capabilities, `user.*`, `trusted.*`) and the
///    `chattr` flags a service relies on (`InodeAttributes`) are kept, or the copy is refused
///    naming what the store cannot keep;
/// 2. verify by comparing every file byte for byte, and every type, mode, owner, link target,
///    extended attribute and kept flag;
/// 3. record the owner (`StateOwner`), `syncfs` the store, and rename `.migrating-NAME` to `NAME`
///    with `RENAME_NOREPLACE`: the subvolume appears whole, and only once its data is on disk.
///
/// The original is only read. A failure at any step deletes the staging copy before reporting;
/// a run killed at any point leaves the original intact and at most a partial `.migrating-NAME`
/// (listed by `Store.leftovers`), which the next run of its owner discards before copying again.
/// Once `NAME` exists and is the owner's, a run does nothing. Callers hold the subvolume's lock.
public enum StateMigration {
    /// What `shift` did.
    public enum Outcome: Equatable, Sendable {
        /// `NAME` existed: nothing to do.
        case alreadyShifted
        /// There was no state directory: an empty subvolume was made.
        case createdEmpty
        /// The state directory was copied and compared: how many files, bytes, and files reflinked.
        case migrated(files: Int, bytes: UInt64, reflinked: Int)
    }

    /// The staging subvolume of a migration into `name`: `.migrating-NAME`.
    public static func stagingName(_ name: String) -> String { ".migrating-\(name)" }

    /// Whether `shift` would copy `source` now: the store has no `name` yet and `source` is a
    /// directory. A caller asks before copying a directory a running daemon may be writing.
    public static func wouldCopy(_ name: String, from source: String, in store: borrowing Store) throws(ReplicaError) -> Bool {
        if (try? store.directory(name)) != nil { return false }
        return try openSource(source) != nil
    }

    /// Makes subvolume `name` hold the state of `source` for `owner`, migrating once: copy into the
    /// staging subvolume, compare every byte, sync, rename. `source` is left as it was.
    /// A state directory that does not exist yet becomes an empty subvolume owned by `user` (the
    /// service's `User=` and `Group=`, as systemd gives a `StateDirectory=`); nil keeps root's.
    public static func shift(_ name: String, from source: String, owner: StateOwner, user: (uid: uid_t, gid: gid_t)? = nil,
                             in store: borrowing Store) throws(ReplicaError) -> Outcome {
        try Btrfs.validate(name: name, in: store.path)
        let top = try store.directory(".")
        if let existing = try? store.directory(name) {
            guard Btrfs.isSubvolume(existing) else {
                throw ReplicaError("shift state", [store.path, name], errno: .EEXIST,
                                 hint: "exists in the store but is not a subvolume; move it aside")
            }
            try owner.requireOwns(name, in: store)
            return .alreadyShifted
        }
        if let moved = try owner.elsewhere(than: name, in: store) {
            throw ReplicaError("shift state", [source, "\(store.path)/\(name)"], errno: .EEXIST,
                             hint: "\(owner.unit)'s state of \(source) is already on the store as \(moved); the profile's "
                                 + "subvolume names changed (a state path added or removed, or Subvolume= changed). Restore "
                                 + "the profile, or rename the subvolume: mv \(store.path)/\(moved) \(store.path)/\(name); nothing was copied")
        }
        try store.requireWritable()
        // The state path must be a real directory reached without symlinks: a service could have
        // replaced it (or a parent) with a link to /etc or /.
        guard let sourceFD = try openSource(source) else {
            try publish(name, owner: owner, in: store) { (target: borrowing OwnedFD) throws(ReplicaError) in
                guard let user else { return }
                let fd = target.rawValue
                _ = try syscall("fchown", "\(store.path)/\(name)") { fchown(fd, user.uid, user.gid) }
            }
            return .createdEmpty
        }
        // The placeholder of state that was on the store: the subvolume has gone (deleted, or
        // another store is mounted). Copying the placeholder would start the service on nothing.
        var st = stat()
        if fstat(sourceFD.rawValue, &st) == 0 && StatePlaceholder.isPlaceholder(st) {
            throw ReplicaError("shift state", [source, "\(store.path)/\(name)"], errno: .ENOENT,
                               hint: "is the placeholder Replica left when this state moved onto a store, but the store has no \(name): "
                                   + "is the right store mounted? Restore the subvolume (replica-snap list, replica-snap receive), or, to "
                                   + "start on empty state, remove the placeholder (chattr -i \(source); rm -r \(source)); nothing was made",
                               reason: .refused)
        }
        // A mount point is another filesystem over the tree (another store, a disk): its content
        // would be copied while the mount stays, and the service would run on either by chance.
        if let mount = try MountInfo.read().last(where: { $0.mountPoint == source }) {
            throw ReplicaError("shift state", [source], errno: .EBUSY,
                               hint: "is a mount point (\(mount.fsType) from \(mount.source)), not a directory of the host's tree; "
                                   + "name a directory below it as the state path, or move its data into a plain directory; nothing was copied",
                               reason: .refused)
        }
        // A copy that cannot fit is refused before it starts. It takes what the tree occupies
        // (holes stay holes); a reflink on the same filesystem needs next to nothing.
        if (try? sourceFD.status().device) != (try? top.status().device) {
            let needed = try TreeCopier.allocatedBytes(sourceFD, path: source)
            let available = try store.space().available
            if needed > available {
                throw ReplicaError("shift state", [source, "\(store.path)/\(name)"], errno: .ENOSPC,
                                 hint: "the state takes \(needed) bytes and the store has \(available) free; "
                                     + "free space on the store (replica-snap prune) or grow it; nothing was copied")
            }
        }
        var copier = TreeCopier()
        try publish(name, owner: owner, in: store) { (target: borrowing OwnedFD) throws(ReplicaError) in
            do {
                try copier.copyContents(of: sourceFD, into: target, top: target, path: source)
                try copier.seal(in: target, path: source)
                try TreeComparer.requireEqual(sourceFD, target, path: source)
                try copyTopAttributes(from: sourceFD, to: target, path: source)
            }
        }
        return .migrated(files: copier.files, bytes: copier.bytes, reflinked: copier.reflinked)
    }

    /// Makes `.migrating-NAME` (discarding one an interrupted run of this owner left), records the
    /// owner on it, lets `fill` write it, syncs the store and renames it to `NAME`. On any failure
    /// the staging copy is deleted before the error is reported.
    static func publish(_ name: String, owner: StateOwner, in store: borrowing Store,
                        fill: (borrowing OwnedFD) throws(ReplicaError) -> Void) throws(ReplicaError) {
        let top = try store.directory(".")
        let staging = stagingName(name)
        try discardStaging(staging, of: owner, in: store)
        try Btrfs.publish(name, staging: staging, in: top, path: store.path) { (target) throws(ReplicaError) in
            try owner.record(on: target, path: "\(store.path)/\(staging)")
            try fill(target)
        }
    }

    /// Deletes a staging subvolume an interrupted run of this owner left. One recorded for another
    /// owner is refused; one with no owner yet (killed right after it was made) is this name's own.
    static func discardStaging(_ staging: String, of owner: StateOwner, in store: borrowing Store) throws(ReplicaError) {
        guard let leftover = try? store.directory(staging) else { return }
        guard Btrfs.isSubvolume(leftover) else {
            throw ReplicaError("shift state", ["\(store.path)/\(staging)"], errno: .EEXIST,
                             hint: "is not a subvolume, so not ours; move it aside")
        }
        if let recorded = StateOwner.of(leftover), recorded != owner {
            throw ReplicaError("shift state", ["\(store.path)/\(staging)"], errno: .EPERM,
                             hint: "a staging copy of \(recorded.unit)'s state, not \(owner.unit)'s; left alone")
        }
        try Btrfs.deleteSubvolume(in: try store.directory("."), named: staging, parentPath: store.path)
    }

    /// The state directory, or nil when there is none. It must be a real directory reached without
    /// symlinks: a service could have replaced it, or a directory above it, with a link to /etc or /.
    static func openSource(_ source: String) throws(ReplicaError) -> OwnedFD? {
        do throws(ReplicaError) {
            return try RootDirectory("/").openForReading(source, [.noSymlinks, .directory])
        } catch where error.errno == .ENOENT {
            return nil
        } catch {
            throw ReplicaError(error.operation, error.objects, errno: error.errno,
                             hint: error.errno == .ELOOP ? "the state path or a directory above it is a symlink; refusing to follow it" : error.hint)
        }
    }

    /// Owner, extended attributes (ACLs, file capabilities…), mode, times and then the kept inode
    /// flags of one directory or file onto another, in the order each survives the next (`chown`
    /// clears file capabilities; nothing changes an immutable inode). `kept` when read already.
    /// With `sealing` false the flags are only returned, for the caller to set once nothing else
    /// will change (a hard link to an immutable file cannot be made).
    @discardableResult
    static func copyAttributes(from source: borrowing OwnedFD, to target: borrowing OwnedFD, path: String,
                               kept: InodeAttributes? = nil, sealing: Bool = true) throws(ReplicaError) -> UInt32 {
        var st = stat()
        _ = try syscall("fstat", path) { fstat(source.rawValue, &st) }
        let attributes: InodeAttributes
        if let kept { attributes = kept } else { attributes = try InodeAttributes.read(.descriptor(source.rawValue), path: path) }
        _ = try syscall("fchown", path) { fchown(target.rawValue, st.st_uid, st.st_gid) }
        try attributes.writeExtended(.descriptor(target.rawValue), path: path)
        _ = try syscall("fchmod", path) { fchmod(target.rawValue, st.st_mode & 0o7777) }
        var times = [st.st_atim, st.st_mtim]
        _ = try syscall("futimens", path) { futimens(target.rawValue, &times) }
        if sealing { try attributes.seal(target.rawValue, path: path) }
        return attributes.flags
    }

    /// The state directory itself: as any directory, but it may not be immutable or append-only,
    /// which would stop the service (and Replica) from ever changing it.
    static func copyTopAttributes(from source: borrowing OwnedFD, to target: borrowing OwnedFD, path: String) throws(ReplicaError) {
        let kept = try InodeAttributes.read(.descriptor(source.rawValue), path: path)
        if kept.flags & replica_sealing_inode_flags != 0 {
            throw ReplicaError("keep attributes", [path], errno: .EPERM,
                               hint: "the state directory itself is immutable or append-only (lsattr -d: \(InodeAttributes.letters(kept.flags))), "
                                   + "so its service could not write it either; chattr -i -a \(path), then start again; nothing was switched",
                               reason: .refused)
        }
        try copyAttributes(from: source, to: target, path: path, kept: kept)
    }
}

/// Copies a directory tree by descriptor, never following a symlink.
struct TreeCopier {
    var files = 0
    var bytes: UInt64 = 0
    var reflinked = 0
    /// (device, inode) of files with several links → the first copy's path relative to the target.
    private var linked: [String: String] = [:]
    /// Copies whose inode flags are set last (`seal`), by path relative to the target.
    private var sealed: [(path: String, flags: UInt32)] = []

    /// Sets the kept inode flags of every copy that has some, once the whole tree is copied.
    func seal(in top: borrowing OwnedFD, path: String) throws(ReplicaError) {
        for (relative, flags) in sealed {
            let fd = try top.openat(relative, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            try InodeAttributes(flags: flags).seal(fd.rawValue, path: "\(path)/\(relative)")
        }
    }

    /// Bytes the tree occupies on disk (allocated blocks, each hard-linked file once).
    static func allocatedBytes(_ directory: borrowing OwnedFD, path: String) throws(ReplicaError) -> UInt64 {
        var seen: Set<String> = []
        var total: UInt64 = 0
        try DirectoryTree.walk(directory, path: path) { _, status in
            if status.kind != .directory, seen.insert("\(status.device):\(status.inode)").inserted { total += status.allocated }
        }
        return total
    }

    /// Copies what is in `source` into `target`; `top` is the copy's top directory, where hard links
    /// are made from (their first copy's path is relative to it).
    mutating func copyContents(of source: borrowing OwnedFD, into target: borrowing OwnedFD, top: borrowing OwnedFD,
                               path: String, relative: String = "") throws(ReplicaError) {
        for name in try DirectoryEntries.names(in: source).sorted() {
            let entryPath = "\(path)/\(name)"
            let rel = relative.isEmpty ? name : "\(relative)/\(name)"
            var st = stat()
            _ = try syscall("fstatat", entryPath) { fstatat(source.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                _ = try syscall("mkdirat", entryPath) { mkdirat(target.rawValue, name, 0o700) }
                let from = try source.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                let to = try target.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                try copyContents(of: from, into: to, top: top, path: entryPath, relative: rel)
                let flags = try StateMigration.copyAttributes(from: from, to: to, path: entryPath, sealing: false)
                if flags != 0 { sealed.append((rel, flags)) }
            case S_IFREG:
                let key = "\(st.st_dev):\(st.st_ino)"
                if st.st_nlink > 1, let first = linked[key] {
                    // Another name for a file already copied: link to the copy, as in the source.
                    _ = try syscall("linkat", first, entryPath) { linkat(top.rawValue, first, target.rawValue, name, 0) }
                    continue
                }
                let from = try source.openat(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
                let to = try target.openat(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
                let kept = try InodeAttributes.read(.descriptor(from.rawValue), path: entryPath)
                if kept.flags & replica_nocow_inode_flag != 0 {
                    // No copy-on-write is set on an empty file only, before its data.
                    try InodeAttributes(flags: replica_nocow_inode_flag).seal(to.rawValue, path: entryPath)
                }
                if replica_ficlone(to.rawValue, from.rawValue) == 0 {
                    reflinked += 1
                } else {
                    try copyBytes(from, to, entryPath)
                }
                let flags = try StateMigration.copyAttributes(from: from, to: to, path: entryPath, kept: kept, sealing: false)
                if flags != 0 { sealed.append((rel, flags)) }
                files += 1
                bytes += UInt64(st.st_size)
                if st.st_nlink > 1 { linked[key] = rel }
            case S_IFLNK:
                guard let link = readSymlink(name, in: source.rawValue) else { throw ReplicaError.current("readlinkat", [entryPath]) }
                _ = try syscall("symlinkat", entryPath) { symlinkat(link, target.rawValue, name) }
                _ = try syscall("fchownat", entryPath) { fchownat(target.rawValue, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) }
                try InodeAttributes.read(.entry(directory: source.rawValue, name: name), path: entryPath)
                    .writeExtended(.entry(directory: target.rawValue, name: name), path: entryPath)
            default:  // FIFOs, sockets, device nodes: the node itself, never its contents
                _ = try syscall("mknodat", entryPath) { mknodat(target.rawValue, name, st.st_mode, st.st_rdev) }
                _ = try syscall("fchownat", entryPath) { fchownat(target.rawValue, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) }
                try InodeAttributes.read(.entry(directory: source.rawValue, name: name), path: entryPath)
                    .writeExtended(.entry(directory: target.rawValue, name: name), path: entryPath)
            }
        }
    }

    /// Copies the data of `from` into `to`, skipping holes (`lseek SEEK_DATA`/`SEEK_HOLE`), so a
    /// sparse file stays sparse; the size is set with `ftruncate` for a trailing hole.
    /// One buffer for every file of the copy (allocating and zeroing 1 MiB per file dominated
    /// trees of many small files).
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)

    private mutating func copyBytes(_ from: borrowing OwnedFD, _ to: borrowing OwnedFD, _ path: String) throws(ReplicaError) {
        let (input, output) = (from.rawValue, to.rawValue)
        var st = stat()
        _ = try syscall("fstat", path) { fstat(input, &st) }
        let size = Int64(st.st_size)
        var offset: Int64 = 0
        while offset < size {
            let data = replica_seek_data(input, offset, 0)
            if data < 0 {
                if Errno.current == .ENXIO { break }  // only a hole is left
                throw ReplicaError.current("lseek(SEEK_DATA)", [path])
            }
            let hole = try syscall("lseek(SEEK_HOLE)", path) { replica_seek_data(input, data, 1) }
            var position = data
            while position < hole {
                let want = Int(min(Int64(buffer.count), hole - position))
                let n = try syscall("pread", path) { buffer.withUnsafeMutableBytes { pread(input, $0.baseAddress, want, off_t(position)) } }
                if n == 0 { break }
                var written = 0
                while written < n {
                    let w = try syscall("pwrite", path) {
                        buffer.withUnsafeBytes { pwrite(output, $0.baseAddress! + written, n - written, off_t(position) + off_t(written)) }
                    }
                    written += w
                }
                position += Int64(n)
            }
            offset = hole
        }
        _ = try syscall("ftruncate", path) { ftruncate(output, off_t(size)) }
    }
}

/// Compares two trees entry by entry: names, types, modes, owners, symlink targets, device
/// numbers, and file contents byte for byte.
enum TreeComparer {
    static func requireEqual(_ a: borrowing OwnedFD, _ b: borrowing OwnedFD, path: String) throws(ReplicaError) {
        var ba = [UInt8](repeating: 0, count: 1 << 20), bb = [UInt8](repeating: 0, count: 1 << 20)
        try requireEqual(a, b, path: path, &ba, &bb)
    }

    /// `requireEqual` with the two read buffers shared by the whole walk.
    private static func requireEqual(_ a: borrowing OwnedFD, _ b: borrowing OwnedFD, path: String,
                                     _ ba: inout [UInt8], _ bb: inout [UInt8]) throws(ReplicaError) {
        let namesA = try DirectoryEntries.names(in: a).sorted(), namesB = try DirectoryEntries.names(in: b).sorted()
        guard namesA == namesB else { throw mismatch(path, "the copy has different entries") }
        for name in namesA {
            let entryPath = "\(path)/\(name)"
            var sa = stat(), sb = stat()
            _ = try syscall("fstatat", entryPath) { fstatat(a.rawValue, name, &sa, AT_SYMLINK_NOFOLLOW) }
            _ = try syscall("fstatat", entryPath) { fstatat(b.rawValue, name, &sb, AT_SYMLINK_NOFOLLOW) }
            guard sa.st_mode == sb.st_mode, sa.st_uid == sb.st_uid, sa.st_gid == sb.st_gid else {
                throw mismatch(entryPath, "type, mode or owner differs")
            }
            switch sa.st_mode & S_IFMT {
            case S_IFDIR:
                let da = try a.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), db = try b.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                try requireSameAttributes(.descriptor(da.rawValue), .descriptor(db.rawValue), entryPath)
                try requireEqual(da, db, path: entryPath, &ba, &bb)
            case S_IFREG:
                guard sa.st_size == sb.st_size else { throw mismatch(entryPath, "size differs") }
                let fa = try a.openat(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK), fb = try b.openat(name, O_RDONLY | O_NOFOLLOW)
                try requireSameAttributes(.descriptor(fa.rawValue), .descriptor(fb.rawValue), entryPath)
                while true {
                    let na = try syscall("read", entryPath) { ba.withUnsafeMutableBytes { read(fa.rawValue, $0.baseAddress, $0.count) } }
                    var nb = 0
                    while nb < na {  // read the same amount from the copy
                        let got = try syscall("read", entryPath) { bb.withUnsafeMutableBytes { read(fb.rawValue, $0.baseAddress! + nb, na - nb) } }
                        if got == 0 { break }
                        nb += got
                    }
                    guard na == nb, ba[0..<na] == bb[0..<nb] else { throw mismatch(entryPath, "content differs") }
                    if na == 0 { break }
                }
            case S_IFLNK:
                guard readSymlink(name, in: a.rawValue) == readSymlink(name, in: b.rawValue) else {
                    throw mismatch(entryPath, "link target differs")
                }
                try requireSameAttributes(.entry(directory: a.rawValue, name: name), .entry(directory: b.rawValue, name: name), entryPath)
            default:
                guard sa.st_rdev == sb.st_rdev else { throw mismatch(entryPath, "device number differs") }
                try requireSameAttributes(.entry(directory: a.rawValue, name: name), .entry(directory: b.rawValue, name: name), entryPath)
            }
        }
    }

    /// The same extended attributes (names and values) and kept inode flags.
    static func requireSameAttributes(_ a: InodeAttributes.Inode, _ b: InodeAttributes.Inode, _ path: String) throws(ReplicaError) {
        let (ka, kb) = (try InodeAttributes.read(a, path: path), try InodeAttributes.read(b, path: path))
        guard ka.extended == kb.extended else {
            let names = Set(ka.extended.keys).symmetricDifference(kb.extended.keys).union(ka.extended.keys.filter { ka.extended[$0] != kb.extended[$0] })
            throw mismatch(path, "extended attributes differ (\(names.sorted().joined(separator: ", ")))")
        }
        guard ka.flags == kb.flags else {
            throw mismatch(path, "inode flags differ (\(InodeAttributes.letters(ka.flags)) vs \(InodeAttributes.letters(kb.flags)))")
        }
    }

    static func mismatch(_ path: String, _ what: String) -> ReplicaError {
        ReplicaError("verify copy", [path], errno: .EIO, hint: "\(what); the original is untouched and nothing was switched")
    }
}
