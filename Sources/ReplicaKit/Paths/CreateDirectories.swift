import Glibc

/// `mkdir -p PATH` for trusted paths (configuration, not a confined service's): creates each
/// missing component with `mode`; existing ones are fine.
public func createDirectories(_ path: String, mode: mode_t = 0o755) throws(ReplicaError) {
    // Most often the whole path exists: one call then, the walk only when a parent is missing.
    if mkdir(path, mode) == 0 || Errno.current == .EEXIST { return }
    if Errno.current != .ENOENT { throw ReplicaError.current("mkdir", [path]) }
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/\(component)"
        if mkdir(current, mode) != 0 && Errno.current != .EEXIST { throw ReplicaError.current("mkdir", [current]) }
    }
}
