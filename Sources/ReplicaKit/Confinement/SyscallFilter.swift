import CSeccomp
import Glibc

/// `SystemCallFilter=` as systemd 252 reads it: the first assignment decides the kind — a list of
/// names and `@groups` makes an allow list (with `@default` added), a `~` list a deny list — and each
/// later assignment adds to it or, with the opposite sign, takes names out. `NAME:ERRNO` (or
/// `NAME:kill`) gives one call its own outcome in a deny list. An empty assignment resets it.
public struct SyscallFilter: Equatable, Sendable {
    /// Calls not listed fail (allow list), or listed calls fail (deny list).
    public var allowList: Bool
    /// Native syscall number → its own outcome: an errno, `killNumber`, or nil for the filter's.
    public var entries: [Int32: Int32?]
    /// The assignments as given (checked), in order: what the drop-in carries.
    public var assignments: [String]

    /// An entry's outcome meaning "kill the process" (systemd's `:kill`).
    public static let killNumber: Int32 = -2

    /// Parses one assignment into `filter` (nil before the first one).
    public static func parse(_ value: String, into filter: inout SyscallFilter?, _ setting: ProfileSetting) throws(ProfileError) {
        guard !value.isEmpty else { filter = nil; return }
        var assignment = setting
        assignment.value = value
        let (invert, words) = try ProfileWords.splitInvertible(assignment)
        var current = filter ?? SyscallFilter(allowList: !invert, entries: [:], assignments: [])
        if filter == nil && !invert { try current.apply("@default", errno: nil, invert: false, nil) }
        for word in words {
            let parts = word.split(separator: ":", maxSplits: 1).map(String.init)
            var errno: Int32?
            if parts.count == 2 {
                guard invert else {
                    throw ProfileError(setting, "\"\(word)\": only a ~ deny list takes :ERRNO; allowed calls cannot fail")
                }
                guard let number = Self.errnoNumber(parts[1]) else {
                    throw ProfileError(setting, "\"\(parts[1])\" is not an errno name (EPERM), a number from 0 to 4095, or kill")
                }
                errno = number
            }
            try current.apply(parts[0], errno: errno, invert: invert, setting)
        }
        current.assignments.append(value)
        filter = current
    }

    /// The native number of a system call (`seccomp_syscall_resolve_name`); negative when this
    /// architecture lacks it or libseccomp does not know it.
    public static func number(of name: String) -> Int32 { seccomp_syscall_resolve_name(name) }

    /// `EPERM`, `1`, or `kill`.
    public static func errnoNumber(_ text: String) -> Int32? {
        if text == "kill" { return killNumber }
        if let number = Int32(text), (0...4095).contains(number) { return number }
        return Errno.named(text)?.rawValue
    }

    /// seccomp_parse_syscall_filter: a name or group in the same sense as the list is put in (with
    /// its errno); in the opposite sense it is taken out. `setting` is nil for a group's members:
    /// a member libseccomp does not know is skipped, as systemd skips it; a name given is refused.
    mutating func apply(_ name: String, errno: Int32?, invert: Bool, _ setting: ProfileSetting?) throws(ProfileError) {
        if name.hasPrefix("@") {
            guard let members = Self.groups[name] else {
                guard let setting else { return }
                throw ProfileError(setting, "unknown system call group \(name); known: " + Self.groups.keys.sorted().joined(separator: " "))
            }
            for member in members { try apply(member, errno: errno, invert: invert, nil) }
            return
        }
        let number = seccomp_syscall_resolve_name(name)
        if number == __NR_SCMP_ERROR, let setting {
            throw ProfileError(setting, "unknown system call \(name) (systemd-analyze syscall-filter lists the known ones)")
        }
        guard number >= 0 else { return }  // unknown, or not a call of this architecture
        // In the list's own sense a call goes in; in the other it comes out — in an allow list
        // even with an errno (`~mount:EPERM`): systemd 252 keeps no errno there (busctl shows it),
        // so the call gets the filter's default action.
        if invert != allowList {
            entries[number] = .some(errno)
        } else {
            entries[number] = nil
        }
    }

    /// The assignments as unit-file lines.
    var directives: [String] { assignments.map { "SystemCallFilter=\($0)" } }
}

extension SyscallFilter {
    /// The filter as systemd reports `SystemCallFilter` (`(bas)`: allow list or not, then
    /// `NAME`, `NAME:ERRNO` or `NAME:kill`), each call named from its native number and each
    /// errno as a number: the form `comparable` reduces systemd's report to.
    public var systemdValue: BusValue { Self.canonical(allowList: allowList, entries) }

    /// No filter, as systemd reports it.
    public static let none = BusValue.record([.bool(false), .list([])])

    /// systemd's `SystemCallFilter` in `systemdValue`'s form. systemd lists the calls it was given
    /// under their names, also those this architecture lacks (libseccomp's negative pseudo
    /// numbers), which filter nothing here: they drop out, and aliases become one name.
    public static func comparable(_ value: BusValue) -> BusValue {
        guard case .record(let fields) = value, fields.count == 2, case .bool(let allowList) = fields[0],
              case .list(let names) = fields[1] else { return value }
        var entries: [Int32: Int32?] = [:]
        for case .string(let text) in names {
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            let number = seccomp_syscall_resolve_name(parts[0])
            guard number >= 0 else { continue }
            guard parts.count == 2 else { entries[number] = .some(nil); continue }
            guard let outcome = errnoNumber(parts[1]) else { return value }  // not systemd's form: compared as it is, and differs
            entries[number] = outcome
        }
        return canonical(allowList: allowList, entries)
    }

    private static func canonical(allowList: Bool, _ entries: [Int32: Int32?]) -> BusValue {
        let names = entries.map { (number, outcome) -> String in
            let name = seccomp_syscall_resolve_num_arch(UInt32(SCMP_ARCH_NATIVE), number).map { pointer in
                defer { free(pointer) }
                return String(cString: pointer)
            } ?? "\(number)"
            return switch outcome {
            case .none: name
            case .some(killNumber): "\(name):kill"
            case .some(let errno): "\(name):\(errno)"
            }
        }
        return .record([.bool(allowList), .list(names.sorted().map(BusValue.string))])
    }
}
