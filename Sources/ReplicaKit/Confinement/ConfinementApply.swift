import CCap
import CReplicaShim
import Glibc

extension Confinement {
    /// The user, group and supplementary groups, resolved to numbers.
    public struct Credentials: Equatable, Sendable {
        /// The user id to switch to; nil keeps it.
        public var uid: uid_t?
        /// The group id to switch to; nil keeps it.
        public var gid: gid_t?
        /// The supplementary group ids; nil keeps them.
        public var groups: [gid_t]?
    }

    /// Resolves `User=`, `Group=` and `SupplementaryGroups=` in the passwd and group databases
    /// (`getpwnam_r(3)`, `getgrnam_r(3)`, `getgrouplist(3)`), before anything is applied: a name
    /// that does not exist is refused, naming the key and the fix.
    public func resolveCredentials() throws(ReplicaError) -> Credentials {
        var credentials = Credentials()
        var userName: String?
        if let user {
            guard let entry = Self.passwd(user) else {
                throw ReplicaError("User=", [user], errno: .ENOENT, hint: "no such user; create it (useradd --system \(user)) or fix User=",
                                   reason: .refused)
            }
            (credentials.uid, credentials.gid, userName) = (entry.uid, entry.gid, entry.name)
        }
        if let group {
            guard let gid = Self.groupID(group) else {
                throw ReplicaError("Group=", [group], errno: .ENOENT, hint: "no such group; create it (groupadd --system \(group)) or fix Group=",
                                   reason: .refused)
            }
            credentials.gid = gid
        }
        var groups: [gid_t] = []
        // As systemd: no group database lookup for gid 0, so root keeps only SupplementaryGroups=.
        if let userName, let gid = credentials.gid, gid != 0 {
            var count: Int32 = 64
            var list = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(userName, gid, &list, &count) < 0 {
                list = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(userName, gid, &list, &count)
            }
            groups = Array(list.prefix(Int(max(count, 0))))
        }
        for name in supplementaryGroups {
            guard let gid = Self.groupID(name) else {
                throw ReplicaError("SupplementaryGroups=", [name], errno: .ENOENT, hint: "no such group; create it or remove it from the list",
                                   reason: .refused)
            }
            if !groups.contains(gid) { groups.append(gid) }
        }
        if user != nil || !supplementaryGroups.isEmpty { credentials.groups = groups }
        return credentials
    }

    static func passwd(_ name: String) -> (name: String, uid: uid_t, gid: gid_t)? {
        var entry = Glibc.passwd()
        var result: UnsafeMutablePointer<Glibc.passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        if getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil {
            return (String(cString: entry.pw_name), entry.pw_uid, entry.pw_gid)
        }
        guard let uid = uid_t(name) else { return nil }
        if getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil {
            return (String(cString: entry.pw_name), entry.pw_uid, entry.pw_gid)
        }
        return (name, uid, gid_t(uid))
    }

    static func groupID(_ name: String) -> gid_t? {
        var entry = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        if getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil { return entry.gr_gid }
        return gid_t(name)
    }

    /// Applies the confinement to the calling thread after the mounts, in systemd's order: umask,
    /// the bounding set, groups and user (keeping the ambient capabilities across the switch), the
    /// capability sets and ambient ones, no_new_privs, then `programs` — the seccomp filters, the
    /// last thing before `execve`.
    public func apply(_ credentials: Credentials, programs: [SeccompProgram]) throws(ReplicaError) {
        if let umask { _ = Glibc.umask(umask) }
        let bounding = effectiveBoundingSet
        for number in 0...CapabilitySet.lastCapability where !bounding.contains(number) {
            _ = try syscall("prctl(PR_CAPBSET_DROP)", CapabilitySet.name(number)) { replica_capbset_drop(number) }
        }
        let ambient = CapabilitySet(ambientCapabilities.numbers.intersection(bounding.numbers))
        let switching = credentials.uid.map { $0 != geteuid() } ?? false
        if switching && !ambient.isEmpty { _ = try syscall("prctl(PR_SET_KEEPCAPS)") { replica_set_keepcaps(1) } }
        if let groups = credentials.groups {
            _ = try syscall("setgroups") { setgroups(groups.count, groups) }
        }
        // As root, setgid and setuid set the real, effective and saved IDs together.
        if let gid = credentials.gid { _ = try syscall("setgid") { setgid(gid) } }
        if let uid = credentials.uid { _ = try syscall("setuid") { setuid(uid) } }
        if !ambient.isEmpty {
            try Self.setCapabilities(keepingOnly: switching ? ambient : nil, inheritable: ambient)
            for number in ambient.numbers.sorted() {
                _ = try syscall("prctl(PR_CAP_AMBIENT_RAISE)", CapabilitySet.name(number)) { replica_ambient_raise(number) }
            }
            if switching { _ = try syscall("prctl(PR_SET_KEEPCAPS)") { replica_set_keepcaps(0) } }
        }
        if needsNoNewPrivileges(credentials) { _ = try syscall("prctl(PR_SET_NO_NEW_PRIVS)") { replica_set_no_new_privs() } }
        for program in programs { try program.load() }
    }

    /// no_new_privs: asked for, or implied (as systemd implies it) when filters are loaded by a
    /// process that will not have CAP_SYS_ADMIN — which the kernel requires of it otherwise.
    public func needsNoNewPrivileges(_ credentials: Credentials) -> Bool {
        guard !noNewPrivileges else { return true }
        guard usesSeccomp else { return false }
        let root = (credentials.uid ?? geteuid()) == 0
        return !root && !ambientCapabilities.contains(Int32(CAP_SYS_ADMIN))
    }

    /// `cap_set_proc`: the effective and permitted sets become `keepingOnly` (nil: unchanged) and
    /// the inheritable set gains `inheritable`, which ambient capabilities must be in.
    static func setCapabilities(keepingOnly: CapabilitySet?, inheritable: CapabilitySet) throws(ReplicaError) {
        guard let caps = cap_get_proc() else { throw ReplicaError.current("cap_get_proc") }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        if let keepingOnly {
            _ = cap_clear(caps)
            var values = keepingOnly.numbers.sorted().map { cap_value_t($0) }
            _ = cap_set_flag(caps, CAP_PERMITTED, Int32(values.count), &values, CAP_SET)
            _ = cap_set_flag(caps, CAP_EFFECTIVE, Int32(values.count), &values, CAP_SET)
        }
        var values = inheritable.numbers.sorted().map { cap_value_t($0) }
        _ = cap_set_flag(caps, CAP_INHERITABLE, Int32(values.count), &values, CAP_SET)
        _ = try syscall("cap_set_proc") { cap_set_proc(caps) }
    }
}
