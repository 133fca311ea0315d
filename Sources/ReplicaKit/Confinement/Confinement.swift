import CCap
import Glibc

/// Who a sandboxed service runs as and what the kernel still lets it do: the credentials,
/// capability, no_new_privs and seccomp part of `[Sandbox]`, with systemd.exec(5)'s names and
/// meaning (systemd 252). The generated drop-in carries it to systemd; `replica-run` applies it
/// itself (`Confinement.apply`), in systemd's order, the seccomp filters last before `execve`.
///
/// ```ini
/// [Sandbox]
/// User=www-data
/// Group=www-data
/// SupplementaryGroups=adm
/// UMask=0027
/// CapabilityBoundingSet=CAP_NET_BIND_SERVICE
/// AmbientCapabilities=CAP_NET_BIND_SERVICE
/// NoNewPrivileges=yes
/// SystemCallFilter=@system-service
/// SystemCallFilter=~@privileged @resources
/// SystemCallErrorNumber=EPERM
/// SystemCallArchitectures=native
/// RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
/// RestrictNamespaces=yes
/// LockPersonality=yes
/// MemoryDenyWriteExecute=yes
/// RestrictRealtime=yes
/// RestrictSUIDSGID=yes
/// ProtectKernelTunables=yes
/// ProtectKernelModules=yes
/// ProtectKernelLogs=yes
/// ProtectControlGroups=yes
/// ProtectClock=yes
/// ProtectHostname=yes
/// PrivateDevices=yes
/// ```
public struct Confinement: Equatable, Sendable {
    /// `User=`: a user name or number; nil keeps root.
    public var user: String?
    /// `Group=`: a group name or number; nil uses the user's primary group.
    public var group: String?
    /// `SupplementaryGroups=`: groups in addition to the user's own.
    public var supplementaryGroups: [String] = []
    /// `UMask=`: the file mode creation mask.
    public var umask: mode_t?
    /// nil: unchanged (every capability).
    public var capabilityBoundingSet: CapabilitySet?
    /// `AmbientCapabilities=`: kept across `execve` by a non-root user.
    public var ambientCapabilities = CapabilitySet()
    /// `NoNewPrivileges=`: set no_new_privs (`PR_SET_NO_NEW_PRIVS`).
    public var noNewPrivileges = false
    /// `SystemCallFilter=` with `SystemCallErrorNumber=`.
    public var syscallFilter: SyscallFilter?
    /// `SystemCallErrorNumber=`: nil kills the process (systemd's default).
    public var syscallErrorNumber: Int32?
    /// `SystemCallArchitectures=native`: calls of any other ABI (i386 `int 0x80`, x32) kill.
    public var nativeArchitectureOnly = false
    /// `RestrictAddressFamilies=`: the socket families allowed or denied.
    public var restrictAddressFamilies: AddressFamilies?
    /// `RestrictNamespaces=`: the namespace types still allowed; nil leaves all.
    public var allowedNamespaces: NamespaceTypes?
    /// `LockPersonality=`: `personality(2)` may not change the execution domain.
    public var lockPersonality = false
    /// `MemoryDenyWriteExecute=`: no mapping both writable and executable.
    public var memoryDenyWriteExecute = false
    /// `RestrictRealtime=`: no realtime scheduling policies.
    public var restrictRealtime = false
    /// `RestrictSUIDSGID=`: no setting of the set-user-id or set-group-id bits.
    public var restrictSUIDSGID = false
    /// `ProtectKernelTunables=`: /proc/sys and /sys read-only.
    public var protectKernelTunables = false
    /// `ProtectKernelModules=`: no module loading, /usr/lib/modules hidden.
    public var protectKernelModules = false
    /// `ProtectKernelLogs=`: no `syslog(2)`, /dev/kmsg and /proc/kmsg hidden.
    public var protectKernelLogs = false
    /// `ProtectControlGroups=`: /sys/fs/cgroup read-only.
    public var protectControlGroups = false
    /// `ProtectClock=`: no setting of the system clock.
    public var protectClock = false
    /// `ProtectHostname=`: no change of the host or domain name.
    public var protectHostname = false
    /// `PrivateDevices=`: a /dev with the pseudo-devices only.
    public var privateDevices = false

    /// No confinement: root with every capability, no filter.
    public init() {}

    /// Whether any seccomp filter is asked for, directly or by a setting that implies one.
    public var usesSeccomp: Bool {
        syscallFilter != nil || nativeArchitectureOnly || restrictAddressFamilies != nil || allowedNamespaces != nil
            || lockPersonality || memoryDenyWriteExecute || restrictRealtime || restrictSUIDSGID || protectKernelTunables
            || protectKernelModules || protectKernelLogs || protectClock || protectHostname || privateDevices
    }

    /// The bounding set after the settings that remove capabilities (`PrivateDevices=` drops
    /// CAP_MKNOD and CAP_SYS_RAWIO, `ProtectKernelModules=` CAP_SYS_MODULE, `ProtectKernelLogs=`
    /// CAP_SYSLOG, `ProtectClock=` CAP_SYS_TIME and CAP_WAKE_ALARM), as systemd computes it.
    public var effectiveBoundingSet: CapabilitySet {
        var set = capabilityBoundingSet ?? .all
        if privateDevices { set.remove(["CAP_MKNOD", "CAP_SYS_RAWIO"]) }
        if protectKernelModules { set.remove(["CAP_SYS_MODULE"]) }
        if protectKernelLogs { set.remove(["CAP_SYSLOG"]) }
        if protectClock { set.remove(["CAP_SYS_TIME", "CAP_WAKE_ALARM"]) }
        return set
    }

    /// The settings as unit-file lines, each as systemd reads it back.
    public var systemdDirectives: [String] {
        var lines: [String] = []
        if let user { lines.append("User=\(user)") }
        if let group { lines.append("Group=\(group)") }
        if !supplementaryGroups.isEmpty { lines.append("SupplementaryGroups=\(supplementaryGroups.joined(separator: " "))") }
        if let umask { lines.append("UMask=" + String(umask, radix: 8).leftPadded(4)) }
        if let capabilityBoundingSet { lines.append("CapabilityBoundingSet=\(capabilityBoundingSet.names.joined(separator: " "))") }
        if !ambientCapabilities.isEmpty { lines.append("AmbientCapabilities=\(ambientCapabilities.names.joined(separator: " "))") }
        if noNewPrivileges { lines.append("NoNewPrivileges=yes") }
        if let syscallFilter { lines += syscallFilter.directives }
        if let syscallErrorNumber { lines.append("SystemCallErrorNumber=\(Errno(rawValue: syscallErrorNumber).name)") }
        // Replica filters native calls only, so it forbids the other ABIs wherever it filters.
        if nativeArchitectureOnly || usesSeccomp { lines.append("SystemCallArchitectures=native") }
        if let restrictAddressFamilies { lines.append("RestrictAddressFamilies=\(restrictAddressFamilies.directive)") }
        if let allowedNamespaces { lines.append("RestrictNamespaces=\(allowedNamespaces.directive)") }
        for (on, key) in [(lockPersonality, "LockPersonality"), (memoryDenyWriteExecute, "MemoryDenyWriteExecute"),
                          (restrictRealtime, "RestrictRealtime"), (restrictSUIDSGID, "RestrictSUIDSGID"),
                          (protectKernelTunables, "ProtectKernelTunables"), (protectKernelModules, "ProtectKernelModules"),
                          (protectKernelLogs, "ProtectKernelLogs"), (protectControlGroups, "ProtectControlGroups"),
                          (protectClock, "ProtectClock"), (protectHostname, "ProtectHostname"), (privateDevices, "PrivateDevices")]
            where on {
            lines.append("\(key)=yes")
        }
        return lines
    }
}

/// A set of capabilities by number (`CAP_NET_BIND_SERVICE` is 10), named as libcap names them.
public struct CapabilitySet: Equatable, Sendable {
    /// The capability numbers.
    public var numbers: Set<Int32>

    /// A set of these numbers.
    public init(_ numbers: Set<Int32> = []) { self.numbers = numbers }

    /// Every capability this kernel knows (0 … `CAP_LAST_CAP`, read from /proc).
    public static var all: CapabilitySet { CapabilitySet(Set(0...lastCapability)) }

    /// `/proc/sys/kernel/cap_last_cap`, or libcap's compiled-in value.
    public static let lastCapability: Int32 = {
        if let text = try? OwnedFD.open("/proc/sys/kernel/cap_last_cap", O_RDONLY).readLine(), let value = Int32(text) { return value }
        return Int32(CAP_LAST_CAP)
    }()

    /// Whether no capability is in the set.
    public var isEmpty: Bool { numbers.isEmpty }
    /// The set as a bit mask, bit N for capability N, as the kernel and systemd's D-Bus API give it.
    public var mask: UInt64 { numbers.reduce(0) { $0 | (1 << UInt64($1)) } }
    /// Whether the capability with this number is in the set.
    public func contains(_ number: Int32) -> Bool { numbers.contains(number) }

    /// Upper-case names in number order, as systemd prints them (`CAP_CHOWN CAP_NET_ADMIN`).
    public var names: [String] { numbers.sorted().map(Self.name) }

    /// `cap_to_name(3)`, upper-cased.
    public static func name(_ number: Int32) -> String {
        guard let raw = cap_to_name(cap_value_t(number)) else { return "CAP_\(number)" }
        defer { cap_free(raw) }
        return String(cString: raw).uppercased()
    }

    /// `cap_from_name(3)`: `CAP_SYS_ADMIN` or `cap_sys_admin`; nil when libcap does not know it.
    public static func number(_ name: String) -> Int32? {
        guard name.uppercased().hasPrefix("CAP_") else { return nil }
        var value = cap_value_t(0)
        guard cap_from_name(name.lowercased(), &value) == 0, value <= lastCapability else { return nil }
        return Int32(value)
    }

    mutating func remove(_ names: [String]) { for name in names { if let n = Self.number(name) { numbers.remove(n) } } }
}

/// `RestrictAddressFamilies=`: an allow list (`AF_UNIX AF_INET`), a deny list (`~AF_PACKET`) or
/// none at all (`none`).
public struct AddressFamilies: Equatable, Sendable {
    /// True for an allow list, false for a deny list (`~`).
    public var allowList: Bool
    /// The family numbers (`AF_INET` is 2).
    public var families: Set<Int32>

    /// The families systemd knows by name, with their numbers (`<sys/socket.h>`).
    public static let known: [String: Int32] = [
        "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4, "AF_APPLETALK": 5, "AF_NETROM": 6,
        "AF_BRIDGE": 7, "AF_ATMPVC": 8, "AF_X25": 9, "AF_INET6": 10, "AF_ROSE": 11, "AF_DECnet": 12, "AF_NETBEUI": 13,
        "AF_SECURITY": 14, "AF_KEY": 15, "AF_NETLINK": 16, "AF_ROUTE": 16, "AF_PACKET": 17, "AF_ASH": 18, "AF_ECONET": 19,
        "AF_ATMSVC": 20, "AF_RDS": 21, "AF_SNA": 22, "AF_IRDA": 23, "AF_PPPOX": 24, "AF_WANPIPE": 25, "AF_LLC": 26,
        "AF_IB": 27, "AF_MPLS": 28, "AF_CAN": 29, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33,
        "AF_ISDN": 34, "AF_PHONET": 35, "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38, "AF_NFC": 39, "AF_VSOCK": 40,
        "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44, "AF_MCTP": 45,
    ]
    /// One past the highest family number (`AF_MAX`).
    public static let maximum: Int32 = 46

    /// The directive's value as systemd reads it (`AF_UNIX AF_INET`, `~AF_PACKET`, `none`).
    public var directive: String {
        if allowList && families.isEmpty { return "none" }
        return (allowList ? "" : "~") + names.joined(separator: " ")
    }

    /// The families by the names systemd gives them, in number order.
    public var names: [String] {
        let preferred = ["AF_UNIX", "AF_NETLINK"]
        return families.sorted().map { number in
            let all = Self.known.filter { $0.value == number }.map(\.key).sorted()
            return all.first(where: preferred.contains) ?? all.first ?? "\(number)"
        }
    }
}

/// Namespace types by their `CLONE_NEW*` flag.
public struct NamespaceTypes: Equatable, Sendable {
    /// The `CLONE_NEW*` flags of the types.
    public var flags: UInt64

    /// Every type by its name in `RestrictNamespaces=` and its `CLONE_NEW*` flag.
    public static let all: [(name: String, flag: UInt64)] = [
        ("cgroup", 0x0200_0000), ("ipc", 0x0800_0000), ("net", 0x4000_0000), ("mnt", 0x0002_0000),
        ("pid", 0x2000_0000), ("user", 0x1000_0000), ("uts", 0x0400_0000),
    ]
    /// The flags of every type together.
    public static let allFlags = all.reduce(UInt64(0)) { $0 | $1.flag }

    /// The types with these flags.
    public init(flags: UInt64) { self.flags = flags }

    /// `yes` (none allowed), or the allowed types by name.
    public var directive: String {
        flags == 0 ? "yes" : Self.all.filter { flags & $0.flag != 0 }.map(\.name).joined(separator: " ")
    }
}
