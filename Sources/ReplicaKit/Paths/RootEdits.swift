import CReplicaShim
import Glibc

extension RootDirectory {
    /// Removes the file (or empty directory, with `directory`) at `relativePath` inside the root
    /// (`unlinkat(2)` in its parent, resolved inside the root without symlinks): the last component
    /// itself is removed, never followed.
    public func remove(_ relativePath: String, directory: Bool = false) throws(ReplicaError) {
        try inParent(of: relativePath, "remove") { (parent, name) throws(ReplicaError) in
            _ = try syscall("unlinkat", relativePath) { unlinkat(parent.rawValue, name, directory ? AT_REMOVEDIR : 0) }
        }
    }

    /// Replaces the file at `relativePath` inside the root with a new one holding `contents`: the
    /// old name (a file, or a symlink, which is never followed) is removed and a new file made in
    /// its parent, resolved inside the root without symlinks. Not atomic and not synced: for a root
    /// no one else uses yet (a fork being made), which its maker syncs once (`syncfs`) when done.
    /// With `owner`, the new file is theirs (`fchown`): a running guest's, whose root is not the host's.
    public func replaceFile(_ relativePath: String, contents: [UInt8], mode: mode_t = 0o644,
                            owner: (uid: uid_t, gid: gid_t)? = nil) throws(ReplicaError) {
        try replacing(relativePath, "write") { (parent, name) throws(ReplicaError) in
            let file = try parent.openat(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
            try file.writeAll(contents, name: relativePath)
            if let owner { _ = try syscall("fchown", relativePath) { fchown(file.rawValue, owner.uid, owner.gid) } }
            _ = fchmod(file.rawValue, mode)  // whatever the umask took away
        }
    }

    /// Replaces what is at `relativePath` inside the root with a symbolic link to `target`
    /// (`ln -sfn TARGET PATH`; the old name is removed, never followed; the parent resolved inside
    /// the root without symlinks).
    public func replaceSymlink(_ relativePath: String, target: String) throws(ReplicaError) {
        try replacing(relativePath, "symlink") { (parent, name) throws(ReplicaError) in
            _ = try syscall("symlinkat", relativePath) { symlinkat(target, parent.rawValue, name) }
        }
    }

    /// Removes what is at `relativePath` (never followed), then has `make` put the replacement in
    /// its parent (resolved inside the root without symlinks) under the last name.
    private func replacing(_ relativePath: String, _ operation: String,
                           _ make: (borrowing OwnedFD, String) throws(ReplicaError) -> Void) throws(ReplicaError) {
        try inParent(of: relativePath, operation) { (parent, name) throws(ReplicaError) in
            if unlinkat(parent.rawValue, name, 0) != 0 && Errno.current != .ENOENT {
                throw ReplicaError.current("unlinkat", [path, relativePath])
            }
            try make(parent, name)
        }
    }

    /// `body` given the folder holding `relativePath`'s last name (resolved inside the root without
    /// symlinks) and that name; a path that ends in `..` or has no name is refused, for `operation`.
    func inParent<Value>(of relativePath: String, _ operation: String,
                         _ body: (borrowing OwnedFD, String) throws(ReplicaError) -> Value) throws(ReplicaError) -> Value {
        var components = RootDirectory.components(relativePath)
        guard let name = components.popLast(), name != ".." else {
            throw ReplicaError(operation, [path, relativePath], errno: .EINVAL, hint: "the path must end in a name")
        }
        return try body(try openForReading(components.joined(separator: "/"), [.directory, .noSymlinks]), name)
    }

    /// The names in the directory at `relativePath` inside the root (no symlinks followed).
    public func names(in relativePath: String) throws(ReplicaError) -> [String] {
        try DirectoryEntries.names(in: try openForReading(relativePath, [.directory, .noSymlinks]))
    }

    /// `mkdir -p` inside the root: each missing component made with `mode`, each existing one
    /// required to be a directory (a symlink on the way is refused, not followed).
    /// With `owner`, the folders made are theirs (`fchownat`).
    public func makeDirectories(_ relativePath: String, mode: mode_t = 0o755, owner: (uid: uid_t, gid: gid_t)? = nil) throws(ReplicaError) {
        var done: [String] = []
        for component in RootDirectory.components(relativePath) where component != "." {
            guard component != ".." else {
                throw ReplicaError("mkdir", [path, relativePath], errno: .EINVAL, hint: "write the path without ..")
            }
            let parent = try openForReading(done.joined(separator: "/"), [.directory, .noSymlinks])
            if mkdirat(parent.rawValue, component, mode) != 0 {
                if Errno.current != .EEXIST { throw ReplicaError.current("mkdir", [path, (done + [component]).joined(separator: "/")]) }
            } else if let owner {
                _ = try syscall("fchownat", component) { fchownat(parent.rawValue, component, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) }
            }
            done.append(component)
        }
        _ = try openForReading(done.joined(separator: "/"), [.directory, .noSymlinks])
    }
}
