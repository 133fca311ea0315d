import CReplicaShim
import CSeccomp
import Glibc

/// One seccomp program, for the native architecture only (a call of another ABI — i386
/// `int 0x80`, x32 — kills the process), built with libseccomp or, where the call's number alone
/// decides, by `init(default:calls:)`, and kept as its compiled classic BPF, which is what is
/// cached and loaded (`seccomp(SECCOMP_SET_MODE_FILTER)`).
public struct SeccompProgram: Equatable, Sendable {
    /// The compiled program: 8-byte `struct sock_filter` instructions.
    public var bpf: [UInt8]

    /// libseccomp actions (`SCMP_ACT_*`, macros Swift cannot import).
    public enum Action: Equatable, Sendable {
        /// `SCMP_ACT_ALLOW`.
        case allow
        /// `SCMP_ACT_KILL_PROCESS`: the whole process is killed with SIGSYS.
        case killProcess
        /// `SCMP_ACT_ERRNO(n)`: the call fails with this errno.
        case errno(Int32)

        var raw: UInt32 {
            switch self {
            case .allow: 0x7fff_0000
            case .killProcess: 0x8000_0000
            case .errno(let number): 0x0005_0000 | (UInt32(bitPattern: number) & 0xffff)
            }
        }

        /// An entry's outcome (`SyscallFilter.killNumber` kills).
        static func outcome(_ number: Int32) -> Action { number == SyscallFilter.killNumber ? .killProcess : .errno(number) }
    }

    /// An argument comparison (`SCMP_A0(SCMP_CMP_MASKED_EQ, mask, value)` …).
    public struct Comparison: Sendable {
        var argument: UInt32
        var op: scmp_compare
        var a: UInt64
        var b: UInt64
        /// The argument equals the value (`SCMP_CMP_EQ`).
        public static func equal(_ argument: UInt32, _ value: UInt64) -> Comparison { Comparison(argument: argument, op: SCMP_CMP_EQ, a: value, b: 0) }
        /// The argument differs from the value (`SCMP_CMP_NE`).
        public static func notEqual(_ argument: UInt32, _ value: UInt64) -> Comparison { Comparison(argument: argument, op: SCMP_CMP_NE, a: value, b: 0) }
        /// The argument is less than the value (`SCMP_CMP_LT`).
        public static func less(_ argument: UInt32, _ value: UInt64) -> Comparison { Comparison(argument: argument, op: SCMP_CMP_LT, a: value, b: 0) }
        /// The argument is greater than the value (`SCMP_CMP_GT`).
        public static func greater(_ argument: UInt32, _ value: UInt64) -> Comparison { Comparison(argument: argument, op: SCMP_CMP_GT, a: value, b: 0) }
        /// `(argument & mask) == value`.
        public static func masked(_ argument: UInt32, _ mask: UInt64, _ value: UInt64) -> Comparison {
            Comparison(argument: argument, op: SCMP_CMP_MASKED_EQ, a: mask, b: value)
        }
    }

    /// A rule: the call (by name or number), the action, and comparisons that must all hold.
    public struct Rule: Sendable {
        var call: Int32
        var action: Action
        var comparisons: [Comparison]

        /// A rule for the system call with this name (libseccomp's `seccomp_syscall_resolve_name`).
        public init(_ name: String, _ action: Action, _ comparisons: [Comparison] = []) {
            self.init(number: seccomp_syscall_resolve_name(name), action, comparisons)
        }
        /// A rule for the system call with this number.
        public init(number: Int32, _ action: Action, _ comparisons: [Comparison] = []) {
            (call, self.action, self.comparisons) = (number, action, comparisons)
        }
    }

    /// What one filter decides: its rules, and the action for calls none of them names.
    public struct Filter: Sendable {
        /// What a call no rule names gets.
        public var defaultAction: Action
        /// The rules, in the order libseccomp is given them (of two for one call, the first counts).
        public var rules: [Rule]
        /// A filter of these rules over `defaultAction`.
        public init(default defaultAction: Action, rules: [Rule]) { (self.defaultAction, self.rules) = (defaultAction, rules) }
        /// No rule compares an argument: the call's number decides.
        public var byNumberAlone: Bool { rules.allSatisfy(\.comparisons.isEmpty) }
    }

    /// `seccomp_init(defaultAction)` + each rule (`seccomp_rule_add_exact_array`; a call this
    /// architecture lacks is skipped, as systemd skips it) + `seccomp_export_bpf`. libseccomp is
    /// told not to set no_new_privs itself (`SCMP_FLTATR_CTL_NNP`): that is the profile's choice.
    public init(default defaultAction: Action, rules: [Rule]) throws(ReplicaError) {
        guard let context = seccomp_init(defaultAction.raw) else {
            throw ReplicaError("seccomp_init", errno: Errno(rawValue: ENOMEM))
        }
        defer { seccomp_release(context) }
        _ = seccomp_attr_set(context, SCMP_FLTATR_CTL_NNP, 0)
        _ = seccomp_attr_set(context, SCMP_FLTATR_ACT_BADARCH, Action.killProcess.raw)
        // A binary tree of calls, not a chain: a few comparisons per call whatever the list's length.
        _ = seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for rule in rules where rule.call >= 0 && rule.action != defaultAction {
            var comparisons = rule.comparisons.map { scmp_arg_cmp(arg: $0.argument, op: $0.op, datum_a: $0.a, datum_b: $0.b) }
            let result = seccomp_rule_add_exact_array(context, rule.action.raw, rule.call, UInt32(comparisons.count), &comparisons)
            if result < 0 && result != -EDOM && result != -EEXIST {
                throw ReplicaError("seccomp_rule_add", ["\(rule.call)"], errno: Errno(rawValue: 0 - result), reason: .system)
            }
        }
        // libseccomp 2.5 exports to a descriptor only: a memfd, read back.
        let memory = replica_memfd_cloexec("replica-seccomp")
        guard memory >= 0 else { throw ReplicaError.current("memfd_create") }
        let fd = OwnedFD(adopting: memory)
        let exported = seccomp_export_bpf(context, fd.rawValue)
        guard exported == 0 else { throw ReplicaError("seccomp_export_bpf", errno: Errno(rawValue: 0 - exported), reason: .system) }
        _ = lseek(fd.rawValue, 0, SEEK_SET)
        bpf = try fd.readAll(limit: 1 << 20, name: "seccomp filter")
    }

    /// A program from its compiled instructions (as the cache keeps them).
    public init(bpf: [UInt8]) { self.bpf = bpf }

    /// Loads the program into the calling thread (inherited by its children and kept across
    /// `execve`). Needs no_new_privs or CAP_SYS_ADMIN.
    public func load() throws(ReplicaError) {
        guard bpf.count % 8 == 0, bpf.count / 8 <= Int(UInt16.max), !bpf.isEmpty else {
            throw ReplicaError("seccomp", errno: .EINVAL, hint: "a filter is 1 to 65535 instructions of 8 bytes", reason: .refused)
        }
        let count = UInt16(bpf.count / 8)
        let result = bpf.withUnsafeBytes { raw in replica_seccomp_load_bpf(raw.baseAddress, count) }
        if result != 0 { throw ReplicaError.current("seccomp(SECCOMP_SET_MODE_FILTER)") }
    }
}
