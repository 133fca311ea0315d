import CReplicaShim
import Glibc

/// A service's configuration overlay, kept as numbered generations of single files and whole
/// directory trees:
///
/// ```
/// /var/lib/replica/config/web.service/
///   generations/1/etc/app.conf
///   generations/2/etc/app.conf
///   generations/2/etc/nginx/…                (a tree: bound whole)
///   generations/2/.replica-trees             ("/etc/nginx")
///   current -> generations/2
/// ```
///
/// Each file of the current generation is bound read-only over its path (`/etc/app.conf`) and each
/// tree over its directory (`/etc/nginx`), so the read-only root stays read-only and rolling back
/// is one step. A tree keeps its symlinks that stay inside it (Debian's
/// `sites-enabled/default -> ../sites-available/default`, or `-> /etc/nginx/sites-available/default`)
/// and refuses those that leave it. A generation is written whole in a hidden directory and renamed
/// into place; switching replaces the `current` symlink with `rename(2)`. Both are atomic: a start
/// sees the old generation or the new one.
public struct ConfigStore: Equatable, Sendable {
    /// The unit's directory, e.g. `/var/lib/replica/config/web.service`.
    public let directory: String

    /// Where a service's generations live by default: `/var/lib/replica/config/UNIT`.
    public static let defaultParent = "/var/lib/replica/config"

    /// The file in a generation that lists its trees, one target per line.
    static let treesFile = ".replica-trees"
    /// Largest file a generation takes, and most entries and bytes in all.
    static let fileLimit = 16 << 20, entryLimit = 100_000, byteLimit = 256 << 20

    /// The generations kept in `directory` (`generations/N/…` and a `current` link).
    public init(directory: String) { self.directory = directory }

    /// One entry of a generation, by its target path.
    public enum Entry: Equatable, Sendable {
        /// A regular file: its bytes, permission bits, owner and group.
        case file([UInt8], Attributes)
        /// A directory, with its permission bits, owner and group.
        case directory(Attributes)
        /// A symbolic link and its target, kept as it is.
        case symlink(String)
    }

    /// What a generation keeps of a source besides its bytes: permission bits, owner and group
    /// (Debian's `/etc/postgresql` is `postgres:postgres 0640`; root's copy would lock the service out).
    public struct Attributes: Equatable, Sendable {
        /// The permission bits (`0o640`).
        public var mode: mode_t
        /// The owner's user id.
        public var owner: uid_t
        /// The group's id.
        public var group: gid_t

        /// These bits, owner and group.
        public init(mode: mode_t, owner: uid_t = 0, group: gid_t = 0) { (self.mode, self.owner, self.group) = (mode, owner, group) }

        /// The permission bits, owner and group of a source file or directory.
        public init(_ status: FileStatus) { self.init(mode: mode_t(status.mode & 0o777), owner: status.owner, group: status.group) }

        /// A file given by its bytes: root's, readable by all.
        public static let file = Attributes(mode: 0o644)
        /// A directory made on the way to a target: root's, open to all.
        public static let directory = Attributes(mode: 0o755)
    }

    /// Generation numbers present, ascending.
    public func generations() throws(ReplicaError) -> [Int] {
        guard let fd = try? OwnedFD.open("\(directory)/generations", O_RDONLY | O_DIRECTORY) else { return [] }
        return try DirectoryEntries.names(in: fd).compactMap { Int($0) }.filter { $0 > 0 }.sorted()
    }

    /// The generation `current` points at, or nil before the first switch.
    public func current() throws(ReplicaError) -> Int? {
        guard let target = readSymlink("\(directory)/current") else { return nil }
        guard target.hasPrefix("generations/"), let number = Int(target.dropFirst("generations/".count)) else {
            throw ReplicaError("readlink", ["\(directory)/current"], errno: .EINVAL,
                              hint: "current must point at generations/N; it points at \(target)")
        }
        return number
    }

    /// Writes a new generation from file contents keyed by target path (`/etc/app.conf`), and
    /// returns its number. It does not become current until `switchTo`.
    public func writeGeneration(_ files: [String: [UInt8]]) throws(ReplicaError) -> Int {
        try writeGeneration(entries: files.mapValues { .file($0, .file) }, trees: [])
    }

    /// Writes a new generation copying each target from its source: a regular file, or a directory
    /// copied whole as a tree (files with their permission bits, directories, symlinks that stay
    /// inside it). Refused: sources reached through a symlink, hard links to other files, FIFOs,
    /// sockets and devices, symlinks leaving their tree, files over 16 MiB.
    public func writeGeneration(copying sources: [(target: String, source: String)]) throws(ReplicaError) -> Int {
        var entries: [String: Entry] = [:]
        var trees: [String] = []
        var budget = (entries: Self.entryLimit, bytes: Self.byteLimit)
        let host = try RootDirectory("/")
        for (target, source) in sources {
            try Self.validateTarget(target)
            let fd = try host.open(source, [.noSymlinks, .noSpecialFiles])
            let status = try fd.status()
            if status.kind == .directory {
                trees.append(target)
                entries[target] = .directory(Attributes(status))
                try Self.collect(tree: try fd.reopen(O_RDONLY | O_DIRECTORY), source: source, target: target, below: target,
                                 into: &entries, budget: &budget)
            } else {
                try Self.refuseHardlink(fd, source)
                entries[target] = .file(try fd.reopen(O_RDONLY).readAll(limit: Self.fileLimit, name: source), Attributes(status))
            }
        }
        return try writeGeneration(entries: entries, trees: trees)
    }

    /// Walks a source directory by descriptor (never following a symlink) into `entries`.
    static func collect(tree: borrowing OwnedFD, source: String, target root: String, below path: String,
                        into entries: inout [String: Entry], budget: inout (entries: Int, bytes: Int)) throws(ReplicaError) {
        for name in try DirectoryEntries.names(in: tree) {
            let (from, to) = ("\(source)/\(name)", "\(path)/\(name)")
            budget.entries -= 1
            guard budget.entries >= 0 else {
                throw ReplicaError("config tree", [from], errno: .EFBIG, hint: "more than \(entryLimit) entries; a config tree is small")
            }
            var st = stat()
            _ = try syscall("fstatat", from) { fstatat(tree.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) }
            let status = FileStatus(st)
            switch status.kind {
            case .directory:
                entries[to] = .directory(Attributes(status))
                let child = try tree.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                try collect(tree: child, source: from, target: root, below: to, into: &entries, budget: &budget)
            case .regular:
                let file = try tree.openat(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
                try refuseHardlink(file, from)
                let bytes = try file.readAll(limit: fileLimit, name: from)
                budget.bytes -= bytes.count
                guard budget.bytes >= 0 else {
                    throw ReplicaError("config tree", [from], errno: .EFBIG, hint: "more than \(byteLimit >> 20) MiB in all; a config tree is small")
                }
                entries[to] = .file(bytes, Attributes(status))
            case .symlink:
                guard let destination = readSymlink(name, in: tree.rawValue) else { throw ReplicaError.current("readlinkat", [from]) }
                try refuseEscape(destination, link: to, tree: root, source: from)
                entries[to] = .symlink(destination)
            default:
                throw ReplicaError("config tree", [from], errno: .EINVAL,
                                  hint: "is \(status.kind); a config tree holds files, directories and symlinks only")
            }
        }
    }

    /// Refuses a symlink of a tree that could resolve outside it. Accepted: relative targets that
    /// climb with leading `..` no higher than the tree, then only descend; absolute targets inside the
    /// tree's own path (where the service sees it), without `..`. A `..` after a name is refused: the
    /// name may itself be a link, and the kernel would climb from where it points.
    static func refuseEscape(_ destination: String, link: String, tree: String, source: String) throws(ReplicaError) {
        let parts = destination.split(separator: "/").filter { $0 != "." }
        let climbs = parts.prefix { $0 == ".." }.count
        let depth = link.split(separator: "/").count - tree.split(separator: "/").count - 1
        let inside: Bool
        if destination.hasPrefix("/") {
            let normal = "/" + parts.joined(separator: "/")
            inside = !parts.contains("..") && (normal == tree || StatePath.isBelow(normal, tree))
        } else {
            inside = !parts.isEmpty && !parts.dropFirst(climbs).contains("..") && climbs <= depth
        }
        guard inside else {
            throw ReplicaError("config tree", [source], errno: .EXDEV,
                              hint: "is a symlink to \(destination), which leaves the tree \(tree); copy what it points to into the tree, "
                                  + "or link inside it (../sites-available/default)")
        }
    }

    /// Writes `entries` as a new generation in a staging directory renamed into place.
    func writeGeneration(entries: [String: Entry], trees: [String]) throws(ReplicaError) -> Int {
        for target in entries.keys { try Self.validateTarget(target) }
        try createDirectories("\(directory)/generations", mode: 0o755)
        let number = (try generations().last ?? 0) + 1
        let staging = "\(directory)/generations/.staging-\(number)-\(getpid())"
        _ = try syscall("mkdir", staging) { mkdir(staging, 0o755) }
        do throws(ReplicaError) {
            let root = try RootDirectory(staging)
            // Sorted: a directory before what is in it.
            for (target, entry) in entries.sorted(by: { $0.key < $1.key }) {
                let parent = target.split(separator: "/").dropLast().joined(separator: "/")
                if !parent.isEmpty { try createDirectories("\(staging)/\(parent)") }
                switch entry {
                case .file(let contents, let attributes):
                    try root.writeFileAtomically(target, contents: contents, mode: attributes.mode)
                    try Self.give(staging + target, attributes)
                case .directory(let attributes):
                    try createDirectories(staging + target)
                    try Self.give(staging + target, attributes)
                case .symlink(let destination): _ = try syscall("symlink", staging + target) { symlink(destination, staging + target) }
                }
            }
            if !trees.isEmpty {
                try root.writeFileAtomically(Self.treesFile, contents: Array(trees.sorted().map { $0 + "\n" }.joined().utf8), mode: 0o644)
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

    /// Gives what was just written in the (root's, fresh) staging folder its owner, group and
    /// bits (`fchownat(2)` without following a link, then `chmod(2)`: chown clears set-id bits).
    static func give(_ path: String, _ attributes: Attributes) throws(ReplicaError) {
        if attributes.owner != 0 || attributes.group != 0 {
            _ = try syscall("fchownat", path) { fchownat(AT_FDCWD, path, attributes.owner, attributes.group, AT_SYMLINK_NOFOLLOW) }
        }
        _ = try syscall("chmod", path) { chmod(path, attributes.mode) }
    }

    /// Makes `generation` current: a new symlink renamed over `current` in one step.
    public func switchTo(_ generation: Int) throws(ReplicaError) {
        guard try generations().contains(generation) else {
            throw ReplicaError("switch config", ["\(directory)/generations/\(generation)"], errno: .ENOENT,
                              hint: "no such generation; have \(try generations().map(String.init).joined(separator: ", "))")
        }
        let staging = "\(directory)/.current-\(getpid())"
        unlink(staging)
        _ = try syscall("symlink", staging) { symlink("generations/\(generation)", staging) }
        _ = try syscall("rename", staging, "\(directory)/current") { rename(staging, "\(directory)/current") }
    }

    /// Switches back to the newest generation older than the current one, and returns it.
    @discardableResult
    public func rollback() throws(ReplicaError) -> Int {
        guard let now = try current(), let previous = try generations().last(where: { $0 < now }) else {
            throw ReplicaError("rollback config", [directory], errno: .ENOENT, hint: "no generation before the current one")
        }
        try switchTo(previous)
        return previous
    }

    /// The trees of a generation (bound whole), sorted.
    public func trees(in generation: Int) throws(ReplicaError) -> [String] {
        let path = "\(directory)/generations/\(generation)/\(Self.treesFile)"
        guard let fd = try? OwnedFD.open(path, O_RDONLY | O_NOFOLLOW) else { return [] }
        return String(decoding: try fd.readAll(limit: 1 << 20, name: path), as: UTF8.self).split(separator: "\n").map(String.init).sorted()
    }

    /// Target paths of the files and symlinks in a generation (inside its trees too), sorted.
    public func files(in generation: Int) throws(ReplicaError) -> [String] {
        let base = "\(directory)/generations/\(generation)"
        var found: [String] = []
        try DirectoryTree.walk(try OwnedFD.open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: base) { relative, status in
            if status.kind != .directory && relative != Self.treesFile { found.append("/" + relative) }
        }
        return found.sorted()
    }

    /// One generation as `replica-shift config` lists it: its trees, and the files outside them.
    public struct Generation: Sendable {
        /// Its number.
        public var number: Int
        /// The trees bound whole.
        public var trees: [String]
        /// The files not inside a tree.
        public var files: [String]

        /// `{"generation": N, "trees": […], "files": […]}`.
        public var json: JSON {
            .object([("generation", .int(Int64(number))), ("trees", .array(trees.map(JSON.string))), ("files", .array(files.map(JSON.string)))])
        }
    }

    /// Every generation, oldest first.
    public func listing() throws(ReplicaError) -> [Generation] {
        var listed: [Generation] = []
        for generation in try generations() {
            let trees = try trees(in: generation)
            let files = try files(in: generation).filter { file in !trees.contains { file.hasPrefix($0 + "/") } }
            listed.append(Generation(number: generation, trees: trees, files: files))
        }
        return listed
    }

    /// `--file TARGET=SOURCE`: a file or tree of a new generation, and where to copy it from.
    public static func source(parsing spec: String) throws(ReplicaError) -> (target: String, source: String) {
        let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw .usage("--file \(spec): give TARGET=SOURCE, e.g. /etc/app.conf=./app.conf") }
        return (parts[0], parts[1])
    }

    /// Read-only, non-recursive binds of each tree of `generation` (the current one by default)
    /// over its directory and each other file over its target, each source checked: reached without
    /// symlinks, a file with one link. Concrete paths (`generations/N/...`), so a switch during a
    /// start cannot mix two.
    public func binds(generation: Int? = nil) throws(ReplicaError) -> [Bind] {
        let chosen: Int? = if let generation { generation } else { try current() }
        guard let number = chosen else { return [] }
        let base = "\(directory)/generations/\(number)"
        let host = try RootDirectory("/")
        let trees = try trees(in: number)
        var binds: [Bind] = []
        for tree in trees {
            _ = try host.open(base + tree, [.noSymlinks, .directory])
            binds.append(Bind(base + tree, to: tree, readOnly: true, recursive: false))
        }
        for target in try files(in: number) where !trees.contains(where: { StatePath.isBelow(target, $0) }) {
            let fd = try host.open(base + target, [.noSymlinks, .regularFile])
            try Self.refuseHardlink(fd, base + target)
            binds.append(Bind(base + target, to: target, readOnly: true, recursive: false))
        }
        return binds
    }

    /// Where what a process sees differs from the current generation: reads each target through
    /// `root` (`/proc/PID/root` for a running service) and compares it with the generation's file.
    public func drift(seenThrough root: String) throws(ReplicaError) -> [(path: String, reason: String)] {
        guard let number = try current() else { return [] }
        let base = "\(directory)/generations/\(number)"
        var differences: [(path: String, reason: String)] = []
        for target in try files(in: number) {
            if let link = readSymlink(base + target) {
                if readSymlink(root + target) != link { differences.append((target, "is not the link of generation \(number)")) }
                continue
            }
            let expected = try OwnedFD.open(base + target, O_RDONLY | O_NOFOLLOW).readAll(name: target)
            guard let seen = try? OwnedFD.open(root + target, O_RDONLY | O_NONBLOCK).readAll(name: target) else {
                differences.append((target, "missing where the service looks"))
                continue
            }
            if seen != expected { differences.append((target, "differs from generation \(number)")) }
        }
        return differences
    }

    static func validateTarget(_ target: String) throws(ReplicaError) {
        let parts = target.split(separator: "/")
        guard target.hasPrefix("/"), !parts.isEmpty, !parts.contains(where: { $0 == ".." || $0 == "." }) else {
            throw ReplicaError("config file", [target], errno: .EINVAL, hint: "a target is an absolute path without . or ..")
        }
        guard parts[0] != Self.treesFile else {
            throw ReplicaError("config file", [target], errno: .EINVAL, hint: "\(Self.treesFile) is the generation's own list of trees")
        }
    }

    static func refuseHardlink(_ fd: borrowing OwnedFD, _ path: String) throws(ReplicaError) {
        let status = try fd.status()
        guard status.linkCount == 1 else {
            throw ReplicaError("config file", [path], errno: .EMLINK,
                              hint: "has \(status.linkCount) hard links; a config source must be a file of its own")
        }
    }
}
