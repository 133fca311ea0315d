import CReplicaShim
import Glibc

/// A directory that paths are resolved inside of, never outside: `..` stops at it, absolute paths
/// and absolute symlink targets start from it, magic links (`/proc/self/fd/N`) are refused.
///
/// Equivalent to `openat2(rootfd, path, {O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS})`, with a
/// per-component `O_NOFOLLOW` walk giving the same answers where openat2 is missing. The result is a
/// descriptor, so the caller acts on the object that was checked, not on a path string.
public struct RootDirectory: ~Copyable, Sendable {
    /// The root as the caller named it, for messages.
    public let path: String
    /// An `O_PATH | O_DIRECTORY` descriptor for the root.
    public let fd: OwnedFD

    /// Opens `path` as a root. The root itself is named by the caller (configuration, not the
    /// confined service) and may be reached through symlinks unless `followSymlinks` is false.
    public init(_ path: String, followSymlinks: Bool = true) throws(ReplicaError) {
        self.path = path
        let flags = replica_O_PATH | O_DIRECTORY | (followSymlinks ? 0 : O_NOFOLLOW)
        fd = try OwnedFD.open(path, flags)
    }

    /// Adopts an already open directory descriptor as the root.
    public init(adopting fd: consuming OwnedFD, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Resolves `relativePath` inside the root and returns an `O_PATH` descriptor for the result,
    /// after checking its type against `options` (from `fstat`, never by opening it for I/O).
    public func open(
        _ relativePath: String, _ options: ResolveOptions = [], method: ResolveMethod = .automatic
    ) throws(ReplicaError) -> OwnedFD {
        var kind: FileStatus.Kind?
        return try open(relativePath, options, method: method, kind: &kind)
    }

    /// `open`, also giving the type its check found (nil when `options` asked for none), so a
    /// caller that needs the type does not `fstat` again.
    public func open(
        _ relativePath: String, _ options: ResolveOptions = [], method: ResolveMethod = .automatic, kind: inout FileStatus.Kind?
    ) throws(ReplicaError) -> OwnedFD {
        var options = options
        if relativePath.hasSuffix("/") && !relativePath.allSatisfy({ $0 == "/" }) { options.insert(.directory) }
        let result: OwnedFD
        switch method {
        case .openat2:
            result = try resolveWithOpenat2(relativePath, options)
        case .componentWalk:
            result = try resolveByWalking(relativePath, options)
        case .automatic:
            if RootDirectory.hasOpenat2 {
                do throws(ReplicaError) { result = try resolveWithOpenat2(relativePath, options) } catch where error.errno == .EAGAIN {
                    // Renames and mounts elsewhere kept invalidating the lookup; the walk gives the
                    // same answer without depending on them.
                    result = try resolveByWalking(relativePath, options)
                }
            } else {
                result = try resolveByWalking(relativePath, options)
            }
        }
        kind = try check(result, relativePath, options)
        return result
    }

    /// Resolves and reopens the result for reading (`O_RDONLY`), e.g. for ioctls or reading a file.
    /// FIFOs and devices are refused before anything opens them for I/O. A directory is opened
    /// for reading at once where openat2 resolves (`O_RDONLY | O_DIRECTORY` opens nothing else):
    /// one call instead of an `O_PATH` descriptor checked and reopened.
    public func openForReading(
        _ relativePath: String, _ options: ResolveOptions = [], method: ResolveMethod = .automatic
    ) throws(ReplicaError) -> OwnedFD {
        if options.contains(.directory) && method != .componentWalk && RootDirectory.hasOpenat2,
           let directory = try? resolveWithOpenat2(relativePath, options, flags: O_RDONLY | O_DIRECTORY) {
            return directory  // on any failure, the path below gives the full answer
        }
        let fd = try open(relativePath, options.union(.noSpecialFiles), method: method)
        let status = try fd.status()
        return try fd.reopen(O_RDONLY | (status.kind == .directory ? O_DIRECTORY : 0))
    }

    /// Whether this kernel has openat2(2); probed once per process.
    public static let hasOpenat2: Bool = {
        let fd = replica_openat2(AT_FDCWD, "/", UInt64(replica_O_PATH | O_CLOEXEC), 0, replica_RESOLVE_IN_ROOT)
        if fd >= 0 { Glibc.close(fd); return true }
        return false
    }()

    private func fail(_ relativePath: String, _ errno: Errno, _ call: String, hint: String? = nil) -> ReplicaError {
        ReplicaError(call, [path, relativePath], errno: errno, hint: hint ?? RootDirectory.hint(for: errno))
    }

    static func hint(for errno: Errno) -> String? {
        switch errno {
        case .ELOOP: "a symlink loop, more than \(maxSymlinkHops) symlinks, a magic link, or a symlink where none is allowed"
        case .EXDEV: "the path would leave its root"
        case .ENOTDIR: "a component is not a directory"
        default: nil
        }
    }

    private func resolveWithOpenat2(
        _ relativePath: String, _ options: ResolveOptions, flags openFlags: Int32 = replica_O_PATH
    ) throws(ReplicaError) -> OwnedFD {
        var resolve = replica_RESOLVE_IN_ROOT | replica_RESOLVE_NO_MAGICLINKS
        if options.contains(.noSymlinks) { resolve |= replica_RESOLVE_NO_SYMLINKS }
        var flags = openFlags | O_CLOEXEC
        if options.contains(.noFollowLast) { flags |= O_NOFOLLOW }
        let root = fd.rawValue
        let target = relativePath.isEmpty ? "." : relativePath
        // With "..", RESOLVE_IN_ROOT returns EAGAIN when any rename or mount on the system happened
        // during the lookup (it could have let ".." escape): retry, backing off, for up to a second.
        var deadline: ContinuousClock.Instant?  // set at the first retry: most lookups need none
        var attempt = 0
        while true {
            let result = replica_openat2(root, target, UInt64(flags), 0, resolve)
            if result >= 0 { return OwnedFD(adopting: result) }
            let errno = Errno.current
            guard errno == .EAGAIN || errno == .EINTR else { throw fail(relativePath, errno, "openat2") }
            let until = deadline ?? .now + .seconds(1)
            deadline = until
            attempt += 1
            if attempt > 64 {
                guard ContinuousClock.now < until else {
                    throw fail(relativePath, .EAGAIN, "openat2", hint: "renames or mounts elsewhere kept interrupting the lookup for a second")
                }
                usleep(UInt32(min(attempt, 1000)))
            }
        }
    }

    /// The walk: one `openat(O_PATH | O_NOFOLLOW)` per component from a stack of directory
    /// descriptors. `..` pops the stack (never above the root), a symlink's target is spliced into the
    /// remaining components (an absolute one restarts at the root), at most `maxSymlinkHops` links.
    private func resolveByWalking(_ relativePath: String, _ options: ResolveOptions) throws(ReplicaError) -> OwnedFD {
        var stack: [Int32] = [try fd.duplicate().release()]  // stack.last is the current directory
        defer { for raw in stack { Glibc.close(raw) } }
        var remaining = ArraySlice(RootDirectory.components(relativePath))
        var hops = 0
        while let name = remaining.first {
            remaining = remaining.dropFirst()
            if name == ".." {
                if stack.count > 1 { Glibc.close(stack.removeLast()) }
                continue
            }
            let current = stack[stack.count - 1]
            let next = Glibc.openat(current, name, replica_O_PATH | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 { throw fail(relativePath, .current, "openat") }
            var st = stat()
            if fstat(next, &st) != 0 {
                let errno = Errno.current
                Glibc.close(next)
                throw fail(relativePath, errno, "fstat")
            }
            let isLast = remaining.isEmpty
            if st.st_mode & S_IFMT == S_IFLNK && !(isLast && options.contains(.noFollowLast)) {
                defer { Glibc.close(next) }
                if options.contains(.noSymlinks) { throw fail(relativePath, .ELOOP, "openat") }
                if RootDirectory.isMagicLink(next, parent: current) { throw fail(relativePath, .ELOOP, "openat") }
                hops += 1
                if hops > maxSymlinkHops { throw fail(relativePath, .ELOOP, "openat") }
                guard let target = readSymlink("", in: next) else { throw fail(relativePath, .current, "readlinkat") }
                if target.hasPrefix("/") {
                    for raw in stack.dropFirst() { Glibc.close(raw) }
                    stack.removeSubrange(1...)
                }
                remaining = ArraySlice(RootDirectory.components(target) + remaining)
                if target.hasSuffix("/") && isLast { remaining.append(".") }
                continue
            }
            if !isLast && st.st_mode & S_IFMT != S_IFDIR {
                Glibc.close(next)
                throw fail(relativePath, .ENOTDIR, "openat")
            }
            stack.append(next)
        }
        return OwnedFD(adopting: fcntl(stack[stack.count - 1], F_DUPFD_CLOEXEC, 3))
    }

    /// The components of a path; empty ones and `.` are dropped (both mean "here").
    static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
    }

    /// A procfs symlink below the procfs root (`/proc/PID/fd/N`, `exe`, `cwd`, `root`, `ns/*`,
    /// `map_files/*`) is a magic link: following it jumps to an object, not a path. The plain links at
    /// the procfs root (`self`, `thread-self`, `mounts`, `net`) are ordinary. This is conservative: a
    /// plain symlink deeper in procfs is refused too, where openat2 would follow it.
    static func isMagicLink(_ link: Int32, parent: Int32) -> Bool {
        var type: Int64 = 0
        guard replica_fstatfs_type(link, &type) == 0, type == FilesystemMagic.proc else { return false }
        var parentStatus = stat()
        guard fstat(parent, &parentStatus) == 0 else { return true }
        let procRootInode: UInt = 1  // PROC_ROOT_INO
        return UInt(parentStatus.st_ino) != procRootInode
    }

    /// Refuses `result` unless its type is what `options` ask for (one `fstat`, none when they ask
    /// nothing); returns the type when it looked.
    @discardableResult
    func check(_ result: borrowing OwnedFD, _ relativePath: String, _ options: ResolveOptions) throws(ReplicaError) -> FileStatus.Kind? {
        guard !options.intersection([.directory, .regularFile, .noSpecialFiles]).isEmpty else { return nil }
        let kind = try result.status().kind
        if options.contains(.directory) && kind != .directory {
            throw fail(relativePath, .ENOTDIR, "resolve", hint: "is \(kind); expected a directory")
        }
        if options.contains(.regularFile) && kind != .regular {
            throw fail(relativePath, kind == .directory ? .EISDIR : .EINVAL, "resolve",
                       hint: "is \(kind); expected a regular file")
        }
        if options.contains(.noSpecialFiles) && [.fifo, .socket, .characterDevice, .blockDevice].contains(kind) {
            throw fail(relativePath, .EINVAL, "resolve", hint: "is \(kind); FIFOs, sockets and devices are refused")
        }
        return kind
    }
}
