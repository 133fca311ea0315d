import CReplicaShim
import Glibc
@testable import ReplicaKit
import ReplicaTestSupport
import Testing

/// Filters that decide by number alone, compiled as runs and merged: for every number, both ABIs'
/// arch values and the argument values the filters compare, the action is libseccomp's, one
/// program per filter, as the kernel combines them (run here by a classic BPF interpreter; the
/// kernel's own answers are `ConfinementApplyTests`').
@Suite struct SeccompRangesTests {
    /// What `seccomp_data` a probe call carries: the number, the ABI, the arguments.
    struct Call { var number: UInt32; var arch: UInt32; var arguments: [UInt64] }

    /// Runs `program` on `call` as the kernel's classic BPF does; nil at an instruction this
    /// interpreter does not know (the test then fails: neither compiler may emit one unseen).
    static func run(_ program: SeccompProgram, _ call: Call) -> UInt32? {
        let count = program.bpf.count / 8
        func word(_ at: Int, _ offset: Int) -> UInt32 {
            (0..<4).reduce(0) { $0 | UInt32(program.bpf[at * 8 + offset + $1]) << (8 * $1) }
        }
        func data(_ offset: UInt32) -> UInt32? {
            switch offset {
            case 0: return call.number
            case 4: return call.arch
            case 16..<64 where offset % 4 == 0:
                let argument = call.arguments[Int(offset - 16) / 8]
                return UInt32(truncatingIfNeeded: offset % 8 == 0 ? argument : argument >> 32)
            default: return nil
            }
        }
        var (a, x, memory, pc) = (UInt32(0), UInt32(0), [UInt32](repeating: 0, count: 16), 0)
        while pc < count {
            let code = UInt16(program.bpf[pc * 8]) | UInt16(program.bpf[pc * 8 + 1]) << 8
            let (jt, jf, k) = (Int(program.bpf[pc * 8 + 2]), Int(program.bpf[pc * 8 + 3]), word(pc, 4))
            pc += 1
            switch code {
            case 0x20: guard let value = data(k) else { return nil }; a = value  // ld [k]
            case 0x00: a = k                                                      // ld #k
            case 0x60: a = memory[Int(k) & 15]                                    // ld M[k]
            case 0x61: x = memory[Int(k) & 15]                                    // ldx M[k]
            case 0x02: memory[Int(k) & 15] = a                                    // st M[k]
            case 0x03: memory[Int(k) & 15] = x                                    // stx M[k]
            case 0x07: x = a                                                      // tax
            case 0x87: a = x                                                      // txa
            case 0x54: a &= k                                                     // and #k
            case 0x05: pc += Int(k)                                               // ja
            case 0x15: pc += a == k ? jt : jf                                     // jeq #k
            case 0x25: pc += a > k ? jt : jf                                      // jgt #k
            case 0x35: pc += a >= k ? jt : jf                                     // jge #k
            case 0x45: pc += a & k != 0 ? jt : jf                                 // jset #k
            case 0x06: return k                                                   // ret #k
            case 0x16: return a                                                   // ret a
            default: return nil
            }
        }
        return nil
    }

    /// The kernel's answer from several programs: the most severe action, of two of one kind the
    /// one of the program loaded later (`seccomp_run_filters`).
    static func outcome(_ programs: [SeccompProgram], _ call: Call) -> UInt32? {
        var result: UInt32 = SeccompProgram.Action.allow.raw
        for program in programs {
            guard let action = run(program, call) else { return nil }
            if Int32(bitPattern: action & 0xffff_0000) <= Int32(bitPattern: result & 0xffff_0000) { result = action }
        }
        return result
    }

    /// Every number up to 1,023 and those at the edges (x32's bit, -1), under this ABI's arch
    /// value and three others, with arguments 0.
    static func calls() -> [Call] {
        let numbers = Array(0..<1024) + [0x3fff_ffff, 0x4000_0000, 0x4000_0027, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff]
        let arches: [UInt32] = [SeccompProgram.x86_64, SeccompProgram.aarch64, 0x4000_0003, 0]
        return arches.flatMap { arch in numbers.map { Call(number: UInt32($0), arch: arch, arguments: [0, 0, 0, 0, 0, 0]) } }
    }

    /// The filter `SystemCallFilter=` makes of `text` (with its other lines), as a table.
    static func table(_ text: String) throws -> (SeccompProgram.Action, [Int32: SeccompProgram.Action]) {
        let filter = try #require(try ConfinementParsingTests.confinement("[Sandbox]\n\(text)\n").seccompFilters().last)
        return (filter.defaultAction, Dictionary(filter.rules.map { ($0.call, $0.action) }) { first, _ in first })
    }

    /// libseccomp's program of each of `confinement`'s filters, in their order: what was loaded
    /// before filters were merged.
    static func onePerFilter(_ confinement: Confinement) throws -> [SeccompProgram] {
        try confinement.seccompFilters().map { (filter) throws in try SeccompProgram(default: filter.defaultAction, rules: filter.rules) }
    }

    /// The program libseccomp compiles of the same table.
    static func libseccomp(_ defaultAction: SeccompProgram.Action, _ table: [Int32: SeccompProgram.Action]) throws -> SeccompProgram {
        try SeccompProgram(default: defaultAction, rules: table.map { SeccompProgram.Rule(number: $0.key, $0.value) })
    }

    @Test func aTableDecidesEveryNumberAsLibseccompDoes() throws {
        var tables = [try Self.table("SystemCallFilter=@system-service"),
                      try Self.table("SystemCallFilter=@system-service\nSystemCallFilter=~@mount:EACCES\nSystemCallErrorNumber=EPERM"),
                      try Self.table("SystemCallFilter=~@privileged @resources"),
                      try Self.table("SystemCallFilter=~@obsolete:ENOSYS @debug")]
        tables += try SyscallFilter.groups.keys.sorted().map { try Self.table("SystemCallFilter=\($0)") }
        // Tables of no group: numbers at random, with every action, half of them packed close so
        // that runs touch.
        var generator = SeededRandom(seed: 28)
        let actions: [SeccompProgram.Action] = [.allow, .killProcess, .errno(EPERM), .errno(EACCES), .errno(ENOSYS)]
        for index in 0..<20 {
            var calls: [Int32: SeccompProgram.Action] = [:]
            for _ in 0..<Int.random(in: 1...120, using: &generator) {
                calls[Int32.random(in: 0..<(index % 2 == 0 ? 160 : 1024), using: &generator)] = actions.randomElement(using: &generator)!
            }
            tables.append((actions.randomElement(using: &generator)!, calls))
        }
        let calls = Self.calls()
        for (defaultAction, table) in tables {
            guard let ours = SeccompProgram(default: defaultAction, calls: table) else {
                Issue.record("\(table.count) calls, default \(defaultAction): not compiled")
                continue
            }
            let libseccomp = try Self.libseccomp(defaultAction, table)
            let differing = calls.filter { Self.run(ours, $0) != Self.run(libseccomp, $0) || Self.run(ours, $0) == nil }
            #expect(differing.count == 0, "\(table.count) calls, default \(defaultAction): first differing \(String(describing: differing.first))")
        }
        // The point of it: @system-service in far fewer instructions.
        let (defaultAction, service) = try Self.table("SystemCallFilter=@system-service")
        let ours = try #require(SeccompProgram(default: defaultAction, calls: service)).bpf.count / 8
        let libseccomp = try Self.libseccomp(defaultAction, service).bpf.count / 8
        #expect(ours * 5 < libseccomp, "\(ours) instructions against libseccomp's \(libseccomp)")
    }

    /// A table of more runs than conditional jumps reach across is left to libseccomp, which
    /// `seccompPrograms()` then uses; one just short of that is compiled and decides right.
    @Test func aTableTooLongForShortJumpsIsLeftToLibseccomp() throws {
        func alternating(_ count: Int32) -> [Int32: SeccompProgram.Action] {
            Dictionary(uniqueKeysWithValues: stride(from: Int32(0), to: count, by: 2).map { ($0, SeccompProgram.Action.errno($0 % 7 + 1)) })
        }
        #expect(SeccompProgram(default: .allow, calls: alternating(1000)) == nil)
        let table = alternating(240)
        let ours = try #require(SeccompProgram(default: .allow, calls: table))
        let libseccomp = try Self.libseccomp(.allow, table)
        #expect(Self.calls().allSatisfy { Self.run(ours, $0) != nil && Self.run(ours, $0) == Self.run(libseccomp, $0) })
    }

    /// Merged into one program with the list, the filters that decide by number answer every call
    /// as one libseccomp program each did, in systemd's order, with the argument filters between.
    @Test(arguments: [
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@mount:EACCES @debug",
        "Hardening=service\nUser=nobody",
        "Hardening=service\nUser=nobody\nSystemCallFilter=~openat2:EACCES clone3:EPERM sethostname:ENODATA",
        "ProtectHostname=yes\nProtectClock=yes\nPrivateDevices=yes\nProtectKernelModules=yes\nProtectKernelLogs=yes\n"
            + "ProtectKernelTunables=yes\nRestrictNamespaces=yes\nRestrictSUIDSGID=yes",
        "ProtectClock=yes\nSystemCallFilter=@clock @system-service\nSystemCallErrorNumber=EACCES",
        "RestrictAddressFamilies=none\nLockPersonality=yes\nMemoryDenyWriteExecute=yes\nRestrictRealtime=yes",
        "SystemCallArchitectures=native",
        "RestrictNamespaces=uts\nProtectHostname=yes",
    ])
    func mergedFiltersAnswerAsOneProgramEach(text: String) throws {
        let confinement = try ConfinementParsingTests.confinement("[Sandbox]\n\(text)\n")
        let filters = confinement.seccompFilters()
        let each = try Self.onePerFilter(confinement)
        let merged = try confinement.seccompPrograms()
        // Every call with arguments 0; those the argument filters name also with the values they
        // compare, each set and clear, and all bits.
        let arguments: [[UInt64]] = [[UInt64.max, UInt64.max, UInt64.max, UInt64.max, UInt64.max, UInt64.max],
                                     [0x2000_0000, 1, 0o4007, 0o4000, 0, 0], [0x0400_0000, 7, 0o2000, 0o100, 0o2000, 0],
                                     [10, 2, 0x6, 0o100000, 0, 0], [0x0800, 6, 0, 0, 0, 0]]
        let compared = Set(filters.filter { !$0.byNumberAlone }.flatMap(\.rules).map { UInt32(bitPattern: $0.call) })
        let calls = Self.calls() + compared.flatMap { number in
            arguments.map { Call(number: number, arch: SeccompProgram.x86_64, arguments: $0) }
        }
        let differing = calls.filter { Self.outcome(merged, $0) == nil || Self.outcome(merged, $0) != Self.outcome(each, $0) }
        #expect(differing.count == 0, "\(differing.count) calls differ, first \(String(describing: differing.first))")
        #expect(merged.count <= each.count, "\(merged.count) programs for \(each.count) filters")
    }
}





/// The kernel's own answer, where two filters answer one call: the merged program gives what
/// libseccomp's programs, one per filter loaded in systemd's order, give. Each probe call carries
/// arguments the kernel refuses (EINVAL, EFAULT), so what a filter does not fail changes nothing.
@Suite(.requiresRoot) struct SeccompMergeKernelTests {
    /// x86-64 numbers and refused arguments: sethostname, setdomainname, clock_settime,
    /// settimeofday, init_module, syslog, ioperm, personality, a number no call has, getppid.
    static let probes: [(String, Int, [Int])] = [
        ("sethostname", 170, [0, 1 << 20]), ("setdomainname", 171, [0, 1 << 20]), ("clock_settime", 227, [-1, 0]),
        ("settimeofday", 164, [1, 1]), ("init_module", 175, [0, 0, 0]), ("syslog", 103, [-1, 0, 0]),
        ("ioperm", 173, [-1, 1, 1]), ("personality", 135, [0x0008]), ("unknown", 1000, []), ("getppid", 110, []),
    ]

    /// Each probe's outcome (`EPERM`, `ok`, …) in a child that loaded `programs`.
    static func outcomes(_ programs: [SeccompProgram]) throws -> String {
        try ChildProcess.run(timeout: .seconds(30)) { () throws(ReplicaError) -> String in
            _ = replica_set_no_new_privs()
            for program in programs { try program.load() }
            return probes.map { name, number, arguments in
                let a = arguments + Array(repeating: 0, count: 6 - arguments.count)
                return "\(name)=\(errnoName(replica_raw_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5])))"
            }.joined(separator: " ")
        }
    }

    @Test(arguments: [
        "ProtectHostname=yes\nSystemCallFilter=~sethostname:ENODATA",
        "ProtectClock=yes\nSystemCallFilter=@system-service @clock\nSystemCallErrorNumber=EACCES",
        "Hardening=service\nUser=nobody\nSystemCallFilter=~setdomainname:ENOSPC",
        "ProtectKernelModules=yes\nProtectKernelLogs=yes\nPrivateDevices=yes\nLockPersonality=yes\nSystemCallFilter=~@module:ENOKEY",
    ])
    func theMergedProgramAnswersAsOneProgramPerFilter(text: String) throws {
        let confinement = try ConfinementParsingTests.confinement("[Sandbox]\n\(text)\n")
        let each = try SeccompRangesTests.onePerFilter(confinement)
        let merged = try Self.outcomes(try confinement.seccompPrograms())
        #expect(merged == (try Self.outcomes(each)))
        // The control: unfiltered, the probes reach the kernel and are refused for their arguments.
        #expect(try Self.outcomes([]) != merged, "\(merged)")
    }

    @Test func ofTwoErrnosForOneCallTheLaterFiltersWins() throws {
        let confinement = try ConfinementParsingTests.confinement("[Sandbox]\nProtectHostname=yes\nSystemCallFilter=~sethostname:ENODATA\n")
        #expect(try Self.outcomes(try confinement.seccompPrograms()).contains("sethostname=ENODATA"))
        #expect(try Self.outcomes([]).contains("sethostname=EINVAL"), "the control: the call refused for its length")
    }
}
