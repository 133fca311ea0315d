import CReplicaShim
import Glibc
import ReplicaKit

/// Moves a service's existing state directory (`/var/lib/web`) onto the store as its own
/// subvolume, once, without ever risking the original:
///
/// 1. copy into a hidden subvolume `.migrating-NAME`, reflinking (`FICLONE`) where source and store
///    share a filesystem, copying otherwise; modes, owners, times, symlinks (never followed), hard
///    links, FIFOs and device nodes are kept;
/// 2. verify by comparing every file byte for byte, and every type, mode, owner and link target;
/// 3. rename `.migrating-NAME` to `NAME` with `RENAME_NOREPLACE`: the subvolume appears whole.
///
/// The original is only read. A run killed at any point leaves it intact and at most a partial
/// `.migrating-NAME`, which the next run discards before copying again. Once `NAME` exists, a run
/// does nothing.
public enum StateMigration {
    public enum Outcome: Equatable, Sendable {
        /// `NAME` existed: nothing to do.
        case alreadyShifted
        /// There was no state directory: an empty subvolume was made.
        case createdEmpty
        case migrated(files: Int, bytes: UInt64, reflinked: Int)
    }

    public static func stagingName(_ name: String) -> String { ".migrating-\(name)" }

    public static func shift(_ name: String, from source: String, in store: borrowing Store) throws(StoreError) -> Outcome {
        try Btrfs.validate(name: name, in: store.path)
        let top = try store.directory(".")
        if let existing = try? store.directory(name) {
            guard Btrfs.isSubvolume(existing) else {
                throw StoreError("shift state", [store.path, name], errno: .EEXIST,
                                 hint: "exists in the store but is not a subvolume; move it aside")
            }
            return .alreadyShifted
        }
        // The state path must be a real directory reached without symlinks: a service could have
        // replaced it (or a parent) with a link to /etc or /.
        try store.requireWritable()
        guard let sourceFD = try openSource(source) else {
            try Btrfs.createSubvolume(in: top, named: name, parentPath: store.path)
            return .createdEmpty
        }
        // A copy that cannot fit is refused before it starts (a reflink on the same filesystem
        // needs next to nothing, so the check only applies across filesystems).
        let sameFilesystem = (try? sourceFD.status().device) == (try? top.status().device)
        if !sameFilesystem {
            let needed = try kit { () throws(SystemError) in try TreeCopier.allocatedBytes(sourceFD, path: source) }
            let available = try store.space().available
            if needed > available {
                throw StoreError("shift state", [source, "\(store.path)/\(name)"], errno: .ENOSPC,
                                 hint: "the state takes \(needed) bytes and the store has \(available) free; "
                                     + "free space on the store (replica-snap prune) or grow it; nothing was copied")
            }
        }
        let staging = stagingName(name)
        if (try? store.directory(staging)) != nil {  // an interrupted run: discard its partial copy
            try Btrfs.deleteSubvolume(in: top, named: staging, parentPath: store.path)
        }
        try Btrfs.createSubvolume(in: top, named: staging, parentPath: store.path)
        let target = try store.directory(staging)
        var copier = TreeCopier()
        try kit { () throws(SystemError) in
            try copier.copyContents(of: sourceFD, into: target, top: target, path: source)
            try TreeComparer.requireEqual(sourceFD, target, path: source)
            try copyAttributes(from: sourceFD, to: target)
        }
        _ = try kit { () throws(SystemError) in
            try syscall("renameat2(RENAME_NOREPLACE)", staging, name) {
                replica_renameat2(top.rawValue, staging, top.rawValue, name, replica_RENAME_NOREPLACE)
            }
        }
        return .migrated(files: copier.files, bytes: copier.bytes, reflinked: copier.reflinked)
    }

    /// The state directory, or nil when there is none. It must be a real directory reached without
    /// symlinks: a service could have replaced it, or a directory above it, with a link to /etc or /.
    static func openSource(_ source: String) throws(StoreError) -> OwnedFD? {
        do throws(SystemError) {
            return try RootDirectory("/").openForReading(source, [.noSymlinks, .directory])
        } catch where error.errno == .ENOENT {
            return nil
        } catch {
            throw StoreError(error.call, error.paths, errno: error.errno,
                             hint: error.errno == .ELOOP ? "the state path or a directory above it is a symlink; refusing to follow it" : error.hint)
        }
    }

    /// Mode, owner and times of one directory or file onto another.
    static func copyAttributes(from source: borrowing OwnedFD, to target: borrowing OwnedFD) throws(SystemError) {
        var st = stat()
        _ = try syscall("fstat") { fstat(source.rawValue, &st) }
        _ = try syscall("fchown") { fchown(target.rawValue, st.st_uid, st.st_gid) }
        _ = try syscall("fchmod") { fchmod(target.rawValue, st.st_mode & 0o7777) }
        var times = [st.st_atim, st.st_mtim]
        _ = try syscall("futimens") { futimens(target.rawValue, &times) }
    }
}

/// Copies a directory tree by descriptor, never following a symlink.
struct TreeCopier {
    var files = 0
    var bytes: UInt64 = 0
    var reflinked = 0
    /// (device, inode) of files with several links → the first copy's path relative to the target.
    private var linked: [String: String] = [:]

    /// Bytes the tree occupies on disk (allocated blocks, each hard-linked file once).
    static func allocatedBytes(_ directory: borrowing OwnedFD, path: String) throws(SystemError) -> UInt64 {
        var seen: Set<String> = []
        func walk(_ directory: borrowing OwnedFD, _ path: String) throws(SystemError) -> UInt64 {
            var total: UInt64 = 0
            for name in try DirectoryEntries.names(in: directory) {
                var st = stat()
                _ = try syscall("fstatat", "\(path)/\(name)") { fstatat(directory.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }
                if st.st_mode & S_IFMT == S_IFDIR {
                    total += try walk(try directory.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), "\(path)/\(name)")
                } else if seen.insert("\(st.st_dev):\(st.st_ino)").inserted {
                    total += UInt64(st.st_blocks) * 512
                }
            }
            return total
        }
        return try walk(directory, path)
    }

    /// Copies what is in `source` into `target`; `top` is the copy's top directory, where hard links
    /// are made from (their first copy's path is relative to it).
    mutating func copyContents(of source: borrowing OwnedFD, into target: borrowing OwnedFD, top: borrowing OwnedFD,
                               path: String, relative: String = "") throws(SystemError) {
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
                try StateMigration.copyAttributes(from: from, to: to)
            case S_IFREG:
                let key = "\(st.st_dev):\(st.st_ino)"
                if st.st_nlink > 1, let first = linked[key] {
                    // Another name for a file already copied: link to the copy, as in the source.
                    _ = try syscall("linkat", first, entryPath) { linkat(top.rawValue, first, target.rawValue, name, 0) }
                    continue
                }
                let from = try source.openat(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
                let to = try target.openat(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
                if replica_ficlone(to.rawValue, from.rawValue) == 0 {
                    reflinked += 1
                } else {
                    try copyBytes(from, to, entryPath)
                }
                try StateMigration.copyAttributes(from: from, to: to)
                files += 1
                bytes += UInt64(st.st_size)
                if st.st_nlink > 1 { linked[key] = rel }
            case S_IFLNK:
                guard let link = readSymlink(name, in: source.rawValue) else { throw SystemError.current("readlinkat", [entryPath]) }
                _ = try syscall("symlinkat", entryPath) { symlinkat(link, target.rawValue, name) }
                _ = try syscall("fchownat", entryPath) { fchownat(target.rawValue, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) }
            default:  // FIFOs, sockets, device nodes: the node itself, never its contents
                _ = try syscall("mknodat", entryPath) { mknodat(target.rawValue, name, st.st_mode, st.st_rdev) }
                _ = try syscall("fchownat", entryPath) { fchownat(target.rawValue, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) }
            }
        }
    }

    private func copyBytes(_ from: borrowing OwnedFD, _ to: borrowing OwnedFD, _ path: String) throws(SystemError) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let input = from.rawValue
        while true {
            let n = try syscall("read", path) { buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) } }
            if n == 0 { return }
            try to.writeAll(buffer[0..<n], name: path)
        }
    }
}

/// Compares two trees entry by entry: names, types, modes, owners, symlink targets, device
/// numbers, and file contents byte for byte.
enum TreeComparer {
    static func requireEqual(_ a: borrowing OwnedFD, _ b: borrowing OwnedFD, path: String) throws(SystemError) {
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
                try requireEqual(try a.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW),
                                 try b.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: entryPath)
            case S_IFREG:
                guard sa.st_size == sb.st_size else { throw mismatch(entryPath, "size differs") }
                let fa = try a.openat(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK), fb = try b.openat(name, O_RDONLY | O_NOFOLLOW)
                var ba = [UInt8](repeating: 0, count: 1 << 20), bb = [UInt8](repeating: 0, count: 1 << 20)
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
            default:
                guard sa.st_rdev == sb.st_rdev else { throw mismatch(entryPath, "device number differs") }
            }
        }
    }

    static func mismatch(_ path: String, _ what: String) -> SystemError {
        SystemError("verify copy", [path], errno: .EIO, hint: "\(what); the original is untouched and nothing was switched")
    }
}
