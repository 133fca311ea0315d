import CSeccomp

extension SeccompProgram {
    /// A filter that decides by the call's number alone, compiled here rather than by libseccomp:
    /// a binary search over runs of consecutive numbers with the same action, one comparison per
    /// run, where libseccomp makes one per call. `@system-service`'s 298 calls on x86-64 are 27
    /// runs allowed among 27 failed: 62 instructions instead of 383, and the kernel's load
    /// (`seccomp(SECCOMP_SET_MODE_FILTER)`, which converts and compiles each instruction) takes
    /// a third of the time. The same checks come first as in libseccomp's programs: another ABI (i386
    /// `int 0x80`, x32) kills the process, and a number no call has (-1 included) gets
    /// `defaultAction`. Nil on an architecture other than x86-64 and arm64, or for a table of
    /// more than some 250 runs (a conditional jump reaches 255 instructions): libseccomp compiles
    /// those.
    public init?(default defaultAction: Action, calls: [Int32: Action]) {
        let native = seccomp_arch_native()
        guard native == Self.x86_64 || native == Self.aarch64 else { return nil }
        // Runs: each starts at a number and holds until the next one starts; the last reaches 2³².
        var runs: [(start: UInt32, action: Action)] = []
        func from(_ start: UInt32, _ action: Action) {
            if runs.last?.start == start { runs.removeLast() }
            if runs.last?.action != action { runs.append((start, action)) }
        }
        from(0, defaultAction)
        for number in calls.keys.sorted() where number >= 0 && number < Self.x32Bit {
            from(UInt32(number), calls[number] ?? defaultAction)
            from(UInt32(number) + 1, defaultAction)  // unless the next number is listed too
        }
        var program = [Instruction.load(Self.archOffset), .jumpIfEqual(native, true: 1, false: 0), .return(Action.killProcess.raw),
                       .load(Self.numberOffset)]
        if native == Self.x86_64 {
            // x32's numbers have bit 30 set: killed, as any other ABI; -1 goes on to the search.
            program += [.jumpIfGreaterOrEqual(UInt32(Self.x32Bit), true: 0, false: 2),
                        .jumpIfEqual(UInt32.max, true: 1, false: 0), .return(Action.killProcess.raw)]
        }
        // The search's comparisons, then one return for each action it ends in, which they jump to.
        var actions: [Action] = []
        for run in runs where !actions.contains(run.action) { actions.append(run.action) }
        let steps = Self.search(runs[...], actions)
        for (index, step) in steps.enumerated() {
            let taken = step.atLeast.offset(from: index, returnsAt: steps.count)
            let not = step.below.offset(from: index, returnsAt: steps.count)
            guard taken <= 255, not <= 255 else { return nil }  // beyond a conditional jump's reach
            program.append(.jumpIfGreaterOrEqual(step.value, true: UInt8(taken), false: UInt8(not)))
        }
        program += actions.map { .return($0.raw) }
        bpf = program.flatMap(\.bytes)
    }

    /// The outcome of two filters for one call, as the kernel combines them: the more severe
    /// action wins (kill before errno before allow), and of two of one kind, the filter loaded later.
    public static func combined(_ earlier: Action, _ later: Action) -> Action {
        Int32(bitPattern: later.raw & 0xffff_0000) <= Int32(bitPattern: earlier.raw & 0xffff_0000) ? later : earlier
    }

    /// `AUDIT_ARCH_X86_64`, `AUDIT_ARCH_AARCH64`: what `seccomp_data.arch` holds for each.
    static let x86_64: UInt32 = 0xc000_003e, aarch64: UInt32 = 0xc000_00b7
    /// `__X32_SYSCALL_BIT`.
    static let x32Bit: Int32 = 0x4000_0000
    /// Offsets in `struct seccomp_data`.
    static let numberOffset: UInt32 = 0, archOffset: UInt32 = 4

    /// One comparison of a search: the number at or above `value` goes to `atLeast`, the rest to
    /// `below` — the next comparisons, or the return of an action.
    struct Step {
        enum Target {
            /// Skips this many comparisons.
            case skip(Int)
            /// The return of the action at this index, after the last comparison.
            case action(Int)

            func offset(from index: Int, returnsAt end: Int) -> Int {
                switch self {
                case .skip(let count): count
                case .action(let action): end + action - (index + 1)
                }
            }
        }
        var value: UInt32, atLeast: Target, below: Target
    }

    /// A binary search over `runs`, sorted by start: the number at or above the middle run's start
    /// goes right, the rest left, until one run, which ends in its action (at its index in `actions`).
    static func search(_ runs: ArraySlice<(start: UInt32, action: Action)>, _ actions: [Action]) -> [Step] {
        guard runs.count > 1 else { return [] }
        let middle = runs.startIndex + runs.count / 2
        let (left, right) = (runs[..<middle], runs[middle...])
        let (leftSteps, rightSteps) = (search(left, actions), search(right, actions))
        func end(_ runs: ArraySlice<(start: UInt32, action: Action)>) -> Step.Target? {
            runs.count == 1 ? .action(actions.firstIndex(of: runs[runs.startIndex].action)!) : nil
        }
        return [Step(value: runs[middle].start, atLeast: end(right) ?? .skip(0), below: end(left) ?? .skip(rightSteps.count))]
            + rightSteps + leftSteps
    }

    /// A classic BPF instruction (`struct sock_filter`), the few a search by number needs.
    struct Instruction {
        var code: UInt16, jumpTrue: UInt8 = 0, jumpFalse: UInt8 = 0, k: UInt32

        /// `BPF_LD | BPF_W | BPF_ABS`: the 32-bit word of `seccomp_data` at `offset`.
        static func load(_ offset: UInt32) -> Instruction { Instruction(code: 0x20, k: offset) }
        /// `BPF_JMP | BPF_JEQ | BPF_K`.
        static func jumpIfEqual(_ value: UInt32, true jt: UInt8, false jf: UInt8) -> Instruction {
            Instruction(code: 0x15, jumpTrue: jt, jumpFalse: jf, k: value)
        }
        /// `BPF_JMP | BPF_JGE | BPF_K`.
        static func jumpIfGreaterOrEqual(_ value: UInt32, true jt: UInt8, false jf: UInt8) -> Instruction {
            Instruction(code: 0x35, jumpTrue: jt, jumpFalse: jf, k: value)
        }
        /// `BPF_RET | BPF_K`.
        static func `return`(_ action: UInt32) -> Instruction { Instruction(code: 0x06, k: action) }

        var bytes: [UInt8] {
            withUnsafeBytes(of: code.littleEndian) { Array($0) } + [jumpTrue, jumpFalse] + withUnsafeBytes(of: k.littleEndian) { Array($0) }
        }
    }
}
