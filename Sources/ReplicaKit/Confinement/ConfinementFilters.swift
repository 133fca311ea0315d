import Glibc

extension Confinement {
    /// The programs that load `seccompFilters()`. Those that compare arguments are compiled by
    /// libseccomp, in their order; those that decide by number alone (the `SystemCallFilter=` list,
    /// `ProtectHostname=`, `ProtectClock=`, …) are merged into one table, each call's action the
    /// one the kernel would take from them, compiled as runs of numbers
    /// (`SeccompProgram(default:calls:)`) and loaded last. Every program costs the kernel's load
    /// tens of microseconds however short it is: `Hardening=service`'s 14 filters are 7 programs.
    /// No call is named both by a filter merged and one that compares arguments, the list aside,
    /// which is last either way: where two filters answer one call, the same one still wins.
    public func seccompPrograms() throws(ReplicaError) -> [SeccompProgram] {
        let filters = seccompFilters()
        var programs = try filters.filter { !$0.byNumberAlone }.map { (filter) throws(ReplicaError) in
            try SeccompProgram(default: filter.defaultAction, rules: filter.rules)
        }
        let alone = filters.filter(\.byNumberAlone)
        guard !alone.isEmpty else { return programs }
        var defaultAction = SeccompProgram.Action.allow  // what no filter fails
        var calls: [Int32: SeccompProgram.Action] = [:]
        for filter in alone {
            // Of two rules for one call, the first: libseccomp refuses the second.
            let named = Dictionary(filter.rules.map { ($0.call, $0.action) }) { first, _ in first }
            for call in Set(calls.keys).union(named.keys) {
                calls[call] = SeccompProgram.combined(calls[call] ?? defaultAction, named[call] ?? filter.defaultAction)
            }
            defaultAction = SeccompProgram.combined(defaultAction, filter.defaultAction)
        }
        // A table that allows every call of this ABI adds nothing a program before it does not check.
        if defaultAction == .allow && calls.values.allSatisfy({ $0 == .allow }) && !programs.isEmpty { return programs }
        if let table = SeccompProgram(default: defaultAction, calls: calls) { programs.append(table) }
        else { programs.append(try SeccompProgram(default: defaultAction, rules: calls.map { SeccompProgram.Rule(number: $0.key, $0.value) })) }
        return programs
    }

    /// The seccomp filters the settings ask for, one per setting as systemd builds them and in the
    /// order it loads them (so that where two filters answer one call the same one wins), the
    /// `SystemCallFilter=` list last. Each filter but that list allows what it does not name.
    public func seccompFilters() -> [SeccompProgram.Filter] {
        typealias Rule = SeccompProgram.Rule
        let eperm = SeccompProgram.Action.errno(EPERM)
        var filters: [[Rule]] = []
        if protectHostname { filters.append([Rule("sethostname", eperm), Rule("setdomainname", eperm)]) }
        if let families = restrictAddressFamilies { filters.append(Self.addressFamilyRules(families)) }
        if memoryDenyWriteExecute {
            let (exec, write, shmExec): (UInt64, UInt64, UInt64) = (0x4, 0x2, 0o100000)
            filters.append([Rule("mmap", eperm, [.masked(2, exec | write, exec | write)]), Rule("mprotect", eperm, [.masked(2, exec, exec)]),
                            Rule("pkey_mprotect", eperm, [.masked(2, exec, exec)]), Rule("shmat", eperm, [.masked(2, shmExec, shmExec)])])
        }
        if restrictRealtime {
            // SCHED_OTHER 0, SCHED_BATCH 3 and SCHED_IDLE 5 stay; FIFO, RR, DEADLINE and the rest do not.
            filters.append([1, 2, 4].map { Rule("sched_setscheduler", eperm, [.equal(1, $0)]) }
                           + [Rule("sched_setscheduler", eperm, [.greater(1, 5)])])
        }
        if restrictSUIDSGID {
            var rules: [Rule] = []
            for mode: UInt64 in [0o4000, 0o2000] {
                rules += [Rule("chmod", eperm, [.masked(1, mode, mode)]), Rule("fchmod", eperm, [.masked(1, mode, mode)]),
                          Rule("fchmodat", eperm, [.masked(2, mode, mode)]), Rule("mkdir", eperm, [.masked(1, mode, mode)]),
                          Rule("mkdirat", eperm, [.masked(2, mode, mode)]), Rule("mknod", eperm, [.masked(1, mode, mode)]),
                          Rule("mknodat", eperm, [.masked(2, mode, mode)]),
                          Rule("open", eperm, [.masked(1, 0o100, 0o100), .masked(2, mode, mode)]),
                          Rule("openat", eperm, [.masked(2, 0o100, 0o100), .masked(3, mode, mode)]),
                          Rule("creat", eperm, [.masked(1, mode, mode)])]
            }
            // openat2 keeps its flags in a struct no filter can read: ENOSYS, so callers use openat.
            filters.append(rules + [Rule("openat2", .errno(ENOSYS))])
        }
        if let allowed = allowedNamespaces, allowed.flags != NamespaceTypes.allFlags {
            var rules = [Rule("clone3", .errno(ENOSYS))]
            rules.append(allowed.flags == 0 ? Rule("setns", eperm) : Rule("setns", eperm, [.equal(1, 0)]))
            for (_, flag) in NamespaceTypes.all where allowed.flags & flag == 0 {
                rules += [Rule("unshare", eperm, [.masked(0, flag, flag)]), Rule("clone", eperm, [.masked(0, flag, flag)])]
                if allowed.flags != 0 { rules.append(Rule("setns", eperm, [.masked(1, flag, flag)])) }
            }
            filters.append(rules)
        }
        if protectKernelTunables { filters.append([Rule("_sysctl", eperm)]) }
        if protectKernelModules { filters.append(Self.groupRules("@module", eperm)) }
        if protectKernelLogs { filters.append([Rule("syslog", eperm)]) }
        if protectClock { filters.append(Self.groupRules("@clock", eperm)) }
        if privateDevices { filters.append(Self.groupRules("@raw-io", eperm)) }
        if nativeArchitectureOnly { filters.append([]) }
        // Only the persona the service starts with (PER_LINUX).
        if lockPersonality { filters.append([Rule("personality", eperm, [.notEqual(0, 0)])]) }
        return filters.map { SeccompProgram.Filter(default: .allow, rules: $0) } + (syscallFilter.map { [mainFilter($0)] } ?? [])
    }

    /// `SystemCallFilter=`: an allow list fails everything else (the errno or kill of
    /// `SystemCallErrorNumber=`), numbers no call has included — as systemd 252 does, so both ways
    /// agree (a newer glibc then sees EPERM, not ENOSYS, for a call this kernel lacks); a deny list
    /// fails what it names.
    func mainFilter(_ filter: SyscallFilter) -> SeccompProgram.Filter {
        let negative: SeccompProgram.Action = syscallErrorNumber.map { .outcome($0) } ?? .killProcess
        let rules: [SeccompProgram.Rule] = filter.entries.sorted { $0.key < $1.key }.map { number, errno in
            let action: SeccompProgram.Action = errno.map { .outcome($0) } ?? (filter.allowList ? .allow : negative)
            return SeccompProgram.Rule(number: number, action)
        }
        return SeccompProgram.Filter(default: filter.allowList ? negative : .allow, rules: rules)
    }

    /// Every call of a systemd group (nested groups expanded), failing with `action`.
    static func groupRules(_ group: String, _ action: SeccompProgram.Action) -> [SeccompProgram.Rule] {
        var filter = SyscallFilter(allowList: false, entries: [:], assignments: [])
        try? filter.apply(group, errno: nil, invert: true, nil)
        return filter.entries.keys.sorted().map { SeccompProgram.Rule(number: $0, action) }
    }

    /// socket(): an allow list fails families below, above and between the listed ones; a deny
    /// list fails the listed ones; both with EAFNOSUPPORT, as systemd does.
    static func addressFamilyRules(_ families: AddressFamilies) -> [SeccompProgram.Rule] {
        let fail = SeccompProgram.Action.errno(EAFNOSUPPORT)
        guard families.allowList else { return families.families.sorted().map { SeccompProgram.Rule("socket", fail, [.equal(0, UInt64($0))]) } }
        let listed = families.families.filter { $0 > 0 && $0 < AddressFamilies.maximum }
        guard let first = listed.min(), let last = listed.max() else { return [SeccompProgram.Rule("socket", fail)] }
        return [SeccompProgram.Rule("socket", fail, [.less(0, UInt64(first))]), SeccompProgram.Rule("socket", fail, [.greater(0, UInt64(last))])]
            + (1..<AddressFamilies.maximum).filter { !listed.contains($0) }.map { SeccompProgram.Rule("socket", fail, [.equal(0, UInt64($0))]) }
    }
}
