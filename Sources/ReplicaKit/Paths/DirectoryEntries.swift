import Glibc

/// Listing a directory by descriptor (`fdopendir(3)` + `readdir(3)`), without `.` and `..`.
public enum DirectoryEntries {
    /// The names in the directory `fd` refers to (which must be opened for reading, not `O_PATH`).
    public static func names(in directory: borrowing OwnedFD) throws(SystemError) -> [String] {
        let fd = try directory.duplicate().release()  // fdopendir takes ownership of its fd
        guard let stream = fdopendir(fd) else {
            let error = SystemError.current("fdopendir", [directory.kernelPath() ?? ""])
            Glibc.close(fd)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
