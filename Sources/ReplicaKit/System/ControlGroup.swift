import Glibc

/// A cgroup of Replica's own, for a host where no systemd runs to make one (a container without
/// systemd, a bare host of a test): the same relative path, `replica.slice/NAME`, made in every
/// cgroup hierarchy mounted — the unified one and each v1 one (`name=systemd`, `memory`, `pids`,
/// `cpu`, `blkio`, `devices` …) — as systemd makes a unit's on a hybrid host.
public struct ControlGroup: Sendable {
    /// One mounted hierarchy: where, and what it controls.
    public struct Hierarchy: Equatable, Sendable {
        /// Its mount point (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/unified`).
        public var path: String
        /// v1: its controllers (`memory`, `name=systemd`); unified: those `cgroup.controllers` lists.
        public var controllers: [String]
        /// Whether it is cgroup2.
        public var unified: Bool
    }

    /// Its path below each hierarchy's root: `replica.slice/NAME`.
    public let path: String
    /// The hierarchies it is made in.
    public let hierarchies: [Hierarchy]

    /// The folder every cgroup of Replica's own is in.
    public static let slice = "replica.slice"

    /// The v1 controllers a machine's cgroup is made in: systemd's own hierarchy and those that
    /// hold limits or the device policy (not `cpuset`, whose new cgroups take no process until
    /// given CPUs, nor the others systemd leaves alone).
    static let used: Set<String> = ["name=systemd", "memory", "pids", "cpu", "cpuacct", "blkio", "devices"]

    /// The writable cgroup hierarchies mounted below `/sys/fs/cgroup` (`/proc/self/mountinfo`):
    /// the unified one, and the v1 ones of `used` controllers.
    public static func mounted() throws(ReplicaError) -> [Hierarchy] {
        var found: [Hierarchy] = []
        for entry in try MountInfo.read() where entry.mountPoint.hasPrefix("/sys/fs/cgroup") && !entry.isReadOnly {
            if entry.fsType == "cgroup2" {
                let text = (try? OwnedFD.open("\(entry.mountPoint)/cgroup.controllers", O_RDONLY).readAll(limit: 4096)) ?? []
                found.append(Hierarchy(path: entry.mountPoint, controllers: String(decoding: text, as: UTF8.self).split(whereSeparator: \.isWhitespace)
                    .map(String.init), unified: true))
            } else if entry.fsType == "cgroup" {
                let controllers = entry.superOptions.filter { !["rw", "ro", "relatime", "noexec", "nosuid", "nodev"].contains($0) }
                guard !used.isDisjoint(with: controllers) else { continue }
                found.append(Hierarchy(path: entry.mountPoint, controllers: controllers, unified: false))
            }
        }
        return found
    }

    /// Makes it in every writable hierarchy where missing (`mkdir`), with the unified hierarchy's
    /// controllers enabled down to it (`cgroup.subtree_control`).
    /// Another machine's cgroup going at the same time may take `replica.slice` away between its
    /// `mkdir` and ours (`remove`: the last one out): made again then.
    public func make() throws(ReplicaError) {
        for hierarchy in hierarchies {
            for attempt in 1...10 {
                do throws(ReplicaError) {
                    try createDirectories("\(hierarchy.path)/\(path)", mode: 0o755)
                    break
                } catch where error.errno == .ENOENT && attempt < 10 {}
            }
            if hierarchy.unified && !hierarchy.controllers.isEmpty {
                let enable = hierarchy.controllers.filter { ["memory", "pids", "cpu", "io"].contains($0) }.map { "+\($0)" }.joined(separator: " ")
                for parent in [hierarchy.path, "\(hierarchy.path)/\(Self.slice)"] where !enable.isEmpty {
                    try Self.write(enable, to: "\(parent)/cgroup.subtree_control")
                }
            }
        }
    }

    /// The cgroup `replica.slice/name` (`name` one path component) in every writable hierarchy,
    /// as it is, made or not: to look in, `make`, or `remove`.
    public static func existing(_ name: String) throws(ReplicaError) -> ControlGroup {
        precondition(!name.contains("/") && !name.hasPrefix("."), "a cgroup name is one component")
        return ControlGroup(path: "\(slice)/\(name)", hierarchies: try mounted())
    }

    /// Moves the calling process, all its threads, into it (`echo 0 > cgroup.procs` in each
    /// hierarchy): what it starts from now on starts there.
    public func enter() throws(ReplicaError) {
        for hierarchy in hierarchies { try Self.write("0", to: "\(hierarchy.path)/\(path)/cgroup.procs") }
    }

    /// Runs `body` with the calling process in it (`enter`), then moves the process back where it
    /// was: what `body` starts, starts here, and never in the caller's cgroup.
    public func whileEntered<T>(_ body: () throws(ReplicaError) -> T) throws(ReplicaError) -> T {
        let back = current()
        try enter()
        defer { Self.enter(back) }
        return try body()
    }

    /// Moves the calling process back to `other` (the cgroup it came from, `ControlGroup.current`).
    public static func enter(_ paths: [(hierarchy: String, path: String)]) {
        for (hierarchy, path) in paths { try? write("0", to: "\(hierarchy)\(path)/cgroup.procs") }
    }

    /// Where the calling process is in each hierarchy, to come back to after `enter`.
    public func current() -> [(hierarchy: String, path: String)] {
        guard let text = try? OwnedFD.open("/proc/self/cgroup", O_RDONLY).readAll(limit: 1 << 16) else { return [] }
        var paths: [(String, String)] = []
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3 else { continue }
            let controllers = fields[1].split(separator: ",").map(String.init)
            guard let hierarchy = hierarchies.first(where: { $0.unified ? fields[1].isEmpty : Set($0.controllers) == Set(controllers) })
            else { continue }
            paths.append((hierarchy.path, fields[2]))
        }
        return paths
    }

    /// Writes `value` to `file` of the hierarchy holding `controller` (v1: the one mounted for it;
    /// unified: where it is enabled). False when no hierarchy has that controller.
    @discardableResult
    public func set(_ controller: String, _ file: String, _ value: String) throws(ReplicaError) -> Bool {
        guard let hierarchy = hierarchies.first(where: { $0.controllers.contains(controller) }) else { return false }
        try Self.write(value, to: "\(hierarchy.path)/\(path)/\(file)")
        return true
    }

    /// Whether it has the v1 `devices` controller, so `set("devices", …)` can close it.
    public var hasDeviceController: Bool { hierarchies.contains { !$0.unified && $0.controllers.contains("devices") } }

    /// Whether a process is in it, or below it, in any hierarchy.
    public var isPopulated: Bool {
        hierarchies.contains { hierarchy in
            tree(in: hierarchy).contains { folder in
                !((try? OwnedFD.open("\(folder)/cgroup.procs", O_RDONLY).readAll(limit: 4096)) ?? []).isEmpty
            }
        }
    }

    /// Removes it and every cgroup below it (`rmdir`, deepest first) in every hierarchy: what
    /// systemd-nspawn made inside (`payload`, `supervisor`) and the guest's own. A cgroup that
    /// still holds a process stays (EBUSY), and so is said.
    public func remove() throws(ReplicaError) {
        for hierarchy in hierarchies {
            for folder in tree(in: hierarchy).reversed() where rmdir(folder) != 0 && errno != ENOENT {
                throw .current("rmdir", [folder], hint: "a process is still in the machine's cgroup")
            }
            rmdir("\(hierarchy.path)/\(Self.slice)")  // the last one out; kept while others are in it (EBUSY)
        }
    }

    /// It and every cgroup below it in `hierarchy`, parents before their children (none when it
    /// is not there).
    func tree(in hierarchy: Hierarchy) -> [String] {
        var order: [String] = []
        var queue = ["\(hierarchy.path)/\(path)"]
        while let folder = queue.popLast() {
            guard let fd = try? OwnedFD.open(folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), let names = try? DirectoryEntries.names(in: fd) else { continue }
            order.append(folder)
            for name in names {
                var status = stat()
                if fstatat(fd.rawValue, name, &status, AT_SYMLINK_NOFOLLOW) == 0, status.st_mode & S_IFMT == S_IFDIR { queue.append("\(folder)/\(name)") }
            }
        }
        return order
    }

    /// Writes `value` to the cgroup file at `path` (`echo VALUE > PATH`).
    static func write(_ value: String, to path: String) throws(ReplicaError) {
        try OwnedFD.open(path, O_WRONLY | O_NOFOLLOW).writeAll(Array(value.utf8), name: path)
    }
}
