import Glibc

/// Listing a directory by descriptor (`fdopendir(3)` + `readdir(3)`), without `.` and `..`.
public enum DirectoryEntries {
    /// The names in the directory `fd` refers to (which must be opened for reading, not `O_PATH`).
    public static func names(in directory: borrowing OwnedFD) throws(ReplicaError) -> [String] {
        try entries(in: directory).map(\.name)
    }

    /// The names and `d_ino`s in the directory: the inode each entry names as the directory holds
    /// it (on btrfs, a subvolume's entry gives the subvolume's id, where `stat` gives 256).
    public static func entries(in directory: borrowing OwnedFD) throws(ReplicaError) -> [(name: String, inode: UInt64)] {
        let fd = try directory.duplicate().release()  // fdopendir takes ownership of its fd
        guard let stream = fdopendir(fd) else {
            let error = ReplicaError.current("fdopendir", [directory.kernelPath() ?? ""])
            Glibc.close(fd)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var entries: [(name: String, inode: UInt64)] = []
        // readdir returns NULL both at the end and on an error (EBADF for an O_PATH descriptor):
        // errno tells them apart, so a failed listing is never taken for an empty directory.
        while true {
            Glibc.errno = 0
            guard let entry = readdir(stream) else {
                if Glibc.errno != 0 { throw ReplicaError.current("readdir", [directory.kernelPath() ?? ""]) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { entries.append((name, UInt64(entry.pointee.d_ino))) }
        }
        return entries
    }
}

/// Every entry below a directory (`find DIR` without following links).
public enum DirectoryTree {
    /// Calls `visit` with the path of each entry below `directory` (relative to it, `etc/passwd`)
    /// and its `fstatat(AT_SYMLINK_NOFOLLOW)`, a directory before its contents, names in order.
    /// Symbolic links are reported, never followed; a directory is entered through its open
    /// descriptor (`O_NOFOLLOW`), so a tree changed meanwhile cannot lead out of it. `path` is
    /// `directory`'s, for messages.
    public static func walk(_ directory: borrowing OwnedFD, path: String,
                            _ visit: (String, FileStatus) throws(ReplicaError) -> Void) throws(ReplicaError) {
        try walk(directory, path: path, relative: "", visit)
    }

    private static func walk(_ directory: borrowing OwnedFD, path: String, relative: String,
                             _ visit: (String, FileStatus) throws(ReplicaError) -> Void) throws(ReplicaError) {
        for name in try DirectoryEntries.names(in: directory).sorted() {
            var st = stat()
            _ = try syscall("fstatat", "\(path)/\(name)") { fstatat(directory.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }
            let entry = relative.isEmpty ? name : "\(relative)/\(name)"
            let status = FileStatus(st)
            try visit(entry, status)
            if status.kind == .directory {
                try walk(try directory.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: "\(path)/\(name)", relative: entry, visit)
            }
        }
    }
}
