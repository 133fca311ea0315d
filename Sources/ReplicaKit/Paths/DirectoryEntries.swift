import Glibc

/// Listing a directory by descriptor (`fdopendir(3)` + `readdir(3)`), without `.` and `..`.
public enum DirectoryEntries {
    /// The names in the directory `fd` refers to (which must be opened for reading, not `O_PATH`).
    public static func names(in directory: borrowing OwnedFD) throws(ReplicaError) -> [String] {
        let fd = try directory.duplicate().release()  // fdopendir takes ownership of its fd
        guard let stream = fdopendir(fd) else {
            let error = ReplicaError.current("fdopendir", [directory.kernelPath() ?? ""])
            Glibc.close(fd)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
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
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
