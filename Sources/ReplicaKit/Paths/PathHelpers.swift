import Glibc

/// `readlinkat(2)`: the target of the symlink `name` in `directory` (`AT_FDCWD` for a path; an
/// empty name for an `O_PATH | O_NOFOLLOW` descriptor of the link itself), nil when it is not one.
public func readSymlink(_ name: String, in directory: Int32 = AT_FDCWD) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlinkat(directory, name, &buffer, buffer.count - 1)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `realpath(3)`: `path` absolute, every symlink, `.` and `..` resolved; `notFound` when no such
/// file exists.
public func resolvedPath(_ path: String) throws(ReplicaError) -> String {
    guard let resolved = realpath(path, nil) else { throw .current("realpath", [path]) }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// `dirname` and `basename` in one: `/var/lib/x.img` → (`/var/lib`, `x.img`); `x` → (`.`, `x`).
public func splitPath(_ path: String) -> (directory: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    return (slash == path.startIndex ? "/" : String(path[..<slash]), String(path[path.index(after: slash)...]))
}

extension Command {
    /// The file `posix_spawnp` runs for `program`: the first executable of that name in the folders
    /// of `PATH` (`/usr/bin:/bin` when unset), as `command -v` finds it; nil when none is.
    public static func path(of program: String) -> String? {
        let folders = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for folder in folders.split(separator: ":", omittingEmptySubsequences: true) {
            let path = "\(folder)/\(program)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// The path of a program installed in the same folder as this one (`/proc/self/exe`).
    public static func beside(_ name: String) -> String {
        "\(splitPath(readSymlink("/proc/self/exe") ?? "./\(name)").directory)/\(name)"
    }
}
