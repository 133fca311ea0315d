import CReplicaShim
import Glibc

/// A service's configuration overlay files, kept as numbered generations:
///
/// ```
/// /var/lib/replica/config/web.service/
///   generations/1/etc/nginx/nginx.conf
///   generations/2/etc/nginx/nginx.conf
///   current -> generations/2
/// ```
///
/// Each file of the current generation is bound read-only over its path (`/etc/nginx/nginx.conf`),
/// so the read-only root stays read-only and rolling back is one step. A generation is written
/// whole in a hidden directory and renamed into place; switching replaces the `current` symlink
/// with `rename(2)`. Both are atomic: a start sees the old generation or the new one.
public struct ConfigStore: Equatable, Sendable {
    /// The unit's directory, e.g. `/var/lib/replica/config/web.service`.
    public let directory: String

    public static let defaultParent = "/var/lib/replica/config"

    public init(directory: String) { self.directory = directory }

    /// Generation numbers present, ascending.
    public func generations() throws(SystemError) -> [Int] {
        guard let fd = try? OwnedFD.open("\(directory)/generations", O_RDONLY | O_DIRECTORY) else { return [] }
        return try DirectoryEntries.names(in: fd).compactMap { Int($0) }.filter { $0 > 0 }.sorted()
    }

    /// The generation `current` points at, or nil before the first switch.
    public func current() throws(SystemError) -> Int? {
        guard let target = readSymlink("\(directory)/current") else { return nil }
        guard target.hasPrefix("generations/"), let number = Int(target.dropFirst("generations/".count)) else {
            throw SystemError("readlink", ["\(directory)/current"], errno: .EINVAL,
                              hint: "current must point at generations/N; it points at \(target)")
        }
        return number
    }

    /// Writes a new generation from file contents keyed by target path (`/etc/app.conf`), and
    /// returns its number. It does not become current until `switchTo`.
    public func writeGeneration(_ files: [String: [UInt8]]) throws(SystemError) -> Int {
        for target in files.keys { try Self.validateTarget(target) }
        try createDirectories("\(directory)/generations", mode: 0o755)
        let number = (try generations().last ?? 0) + 1
        let staging = "\(directory)/generations/.staging-\(number)-\(getpid())"
        _ = try syscall("mkdir", staging) { mkdir(staging, 0o755) }
        do throws(SystemError) {
            let root = try RootDirectory(staging)
            for (target, contents) in files.sorted(by: { $0.key < $1.key }) {
                let parent = target.split(separator: "/").dropLast().joined(separator: "/")
                if !parent.isEmpty { try createDirectories("\(staging)/\(parent)") }
                try root.writeFileAtomically(target, contents: contents, mode: 0o644)
            }
            // rename(2) of a directory onto a new name is atomic: the generation appears complete.
            let final = "\(directory)/generations/\(number)"
            _ = try syscall("renameat2(RENAME_NOREPLACE)", staging, final) {
                replica_renameat2(AT_FDCWD, staging, AT_FDCWD, final, replica_RENAME_NOREPLACE)
            }
        } catch {
            _ = try? Command.run(["rm", "-rf", "--one-file-system", staging])
            throw error
        }
        return number
    }

    /// Writes a new generation copying each target's content from a source file, refusing sources
    /// that are symlinks (anywhere on the path), hardlinks to other files, FIFOs or devices.
    public func writeGeneration(copying sources: [(target: String, source: String)]) throws(SystemError) -> Int {
        var files: [String: [UInt8]] = [:]
        let host = try RootDirectory("/")
        for (target, source) in sources {
            let fd = try host.open(source, [.noSymlinks, .regularFile])
            try Self.refuseHardlink(fd, source)
            files[target] = try fd.reopen(O_RDONLY).readAll(limit: 16 << 20, name: source)
        }
        return try writeGeneration(files)
    }

    /// Makes `generation` current: a new symlink renamed over `current` in one step.
    public func switchTo(_ generation: Int) throws(SystemError) {
        guard try generations().contains(generation) else {
            throw SystemError("switch config", ["\(directory)/generations/\(generation)"], errno: .ENOENT,
                              hint: "no such generation; have \(try generations().map(String.init).joined(separator: ", "))")
        }
        let staging = "\(directory)/.current-\(getpid())"
        unlink(staging)
        _ = try syscall("symlink", staging) { symlink("generations/\(generation)", staging) }
        _ = try syscall("rename", staging, "\(directory)/current") { rename(staging, "\(directory)/current") }
    }

    /// Switches back to the newest generation older than the current one, and returns it.
    @discardableResult
    public func rollback() throws(SystemError) -> Int {
        guard let now = try current(), let previous = try generations().last(where: { $0 < now }) else {
            throw SystemError("rollback config", [directory], errno: .ENOENT, hint: "no generation before the current one")
        }
        try switchTo(previous)
        return previous
    }

    /// Target paths in a generation, sorted.
    public func files(in generation: Int) throws(SystemError) -> [String] {
        let base = "\(directory)/generations/\(generation)"
        var found: [String] = []
        func walk(_ relative: String) throws(SystemError) {
            let fd = try OwnedFD.open(base + relative, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            for name in try DirectoryEntries.names(in: fd) {
                let path = "\(relative)/\(name)"
                let status = try FileStatus.of(base + path)
                if status.kind == .directory { try walk(path) } else { found.append(path) }
            }
        }
        try walk("")
        return found.sorted()
    }

    /// Read-only, non-recursive binds of each file of `generation` (the current one by default)
    /// over its target, with each source checked: a regular file with one link, reached without
    /// symlinks. Concrete paths (`generations/N/...`), so a switch during a start cannot mix two.
    public func binds(generation: Int? = nil) throws(SystemError) -> [Bind] {
        let chosen: Int? = if let generation { generation } else { try current() }
        guard let number = chosen else { return [] }
        let base = "\(directory)/generations/\(number)"
        let host = try RootDirectory("/")
        var binds: [Bind] = []
        for target in try files(in: number) {
            let fd = try host.open(base + target, [.noSymlinks, .regularFile])
            try Self.refuseHardlink(fd, base + target)
            binds.append(Bind(base + target, to: target, readOnly: true, recursive: false))
        }
        return binds
    }

    /// Where what a process sees differs from the current generation: reads each target through
    /// `root` (`/proc/PID/root` for a running service) and compares it with the generation's file.
    public func drift(seenThrough root: String) throws(SystemError) -> [(path: String, reason: String)] {
        guard let number = try current() else { return [] }
        let base = "\(directory)/generations/\(number)"
        var differences: [(path: String, reason: String)] = []
        for target in try files(in: number) {
            let expected = try OwnedFD.open(base + target, O_RDONLY | O_NOFOLLOW).readAll(name: target)
            guard let seen = try? OwnedFD.open(root + target, O_RDONLY | O_NONBLOCK).readAll(name: target) else {
                differences.append((target, "missing where the service looks"))
                continue
            }
            if seen != expected { differences.append((target, "differs from generation \(number)")) }
        }
        return differences
    }

    static func validateTarget(_ target: String) throws(SystemError) {
        let parts = target.split(separator: "/")
        guard target.hasPrefix("/"), !parts.isEmpty, !parts.contains(where: { $0 == ".." || $0 == "." }) else {
            throw SystemError("config file", [target], errno: .EINVAL, hint: "a target is an absolute path without . or ..")
        }
    }

    static func refuseHardlink(_ fd: borrowing OwnedFD, _ path: String) throws(SystemError) {
        let status = try fd.status()
        guard status.linkCount == 1 else {
            throw SystemError("config file", [path], errno: .EMLINK,
                              hint: "has \(status.linkCount) hard links; a config source must be a file of its own")
        }
    }
}
