import CReplicaShim
import Glibc
import ReplicaKit

/// systemd-nspawn's own seccomp filters, loaded by the thread that starts it, which then tells it
/// to load none (`SYSTEMD_SECCOMP=0`): compiling them is about 25 ms of CPU in every start here,
/// before the guest's init runs.
///
/// They are systemd-nspawn's, byte for byte: taken from a container it starts for that alone —
/// the host's `/usr` under a volatile root (`--volatile=yes --directory=/`), `/usr/bin/sleep` its
/// init, with the options of the machine's command that decide them — whose init's filters are
/// read with `PTRACE_SECCOMP_GET_FILTER`. That is done once per boot for each systemd-nspawn binary
/// and set of those options, and kept in `/run/replica/machines/seccomp`. The guest runs under
/// them as under systemd-nspawn's own, and systemd-nspawn itself too, as it does when nested in a
/// container (the session keyring it would make is refused, as the guest's `keyctl` is). The
/// variable never reaches the guest: systemd-nspawn gives its init an environment of its own.
/// Where they cannot be taken (ptrace refused, a caller under a filter of its own, no
/// `/usr/bin/sleep`), systemd-nspawn compiles them as before, for the rest of the boot.
public enum NspawnSeccomp {
    /// Where they are kept: per boot, as the kernel and binaries they were taken with.
    static let cache = SeccompCache(directory: "\(MachineProcess.runDirectory)/seccomp")

    /// The variable that tells systemd-nspawn its filters are loaded already.
    static let environment = ("SYSTEMD_SECCOMP", "0")

    /// systemd-nspawn's filters for `command` (a `systemd-nspawn` command line), kept or taken now;
    /// nil where they cannot be taken, or when the caller runs under a filter of its own (which
    /// they would then include).
    public static func programs(for command: [String]) -> [SeccompProgram]? {
        guard replica_seccomp_mode() == 0, let binary = Command.path(of: "systemd-nspawn") else { return nil }
        var st = stat()
        guard stat(binary, &st) == 0 else { return nil }
        let options = deciding(command)
        let identity = [binary, "\(st.st_dev) \(st.st_ino) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"] + options
        let key = "nspawn-" + String(FNV1a.hash64(identity.joined(separator: "\n")), radix: 16)
        let kept = try? cache.programs(key: key) { () throws(ReplicaError) in (try? capture(options)) ?? [] }
        guard let programs = kept?.programs, !programs.isEmpty else { return nil }
        return programs
    }

    /// The options of `command` that decide the filters: the capabilities kept or dropped and the
    /// system call filters, as given; and a network of its own (which adds CAP_NET_ADMIN to the
    /// guest's) as `--private-network`.
    static func deciding(_ command: [String]) -> [String] {
        var options = command.filter { option in
            ["--capability", "--drop-capability", "--system-call-filter"].contains { option.hasPrefix($0) }
        }
        if command.contains(where: { $0 == "--private-network" || $0.hasPrefix("--network-") }) { options.append("--private-network") }
        return options
    }

    /// Loads `programs` into the calling thread, oldest first as systemd-nspawn loaded them; false
    /// when one is refused, and systemd-nspawn must then load its own.
    static func load(_ programs: [SeccompProgram]) -> Bool {
        for program in programs where (try? program.load()) == nil { return false }
        return true
    }

    /// Starts systemd-nspawn with `options` on the host's `/usr`, reads the filters of its init
    /// (`/usr/bin/sleep`) once that runs, and ends it. Where systemd runs, systemd-nspawn asks it
    /// for a scope of its own (gone with it). Elsewhere it runs in a cgroup of Replica's own
    /// (`--keep-unit`), removed after: it makes `payload` and `supervisor` cgroups in the one it
    /// starts in and leaves them, which in the caller's would be left in the caller's.
    static func capture(_ options: [String]) throws(ReplicaError) -> [SeccompProgram] {
        let name = "replica-seccomp-\(getpid())"
        let command = ["systemd-nspawn", "--quiet", "--register=no", "--volatile=yes", "--directory=/", "--machine=\(name)",
                       "--console=passive"] + (Systemd.isBooted ? [] : ["--keep-unit"]) + options + ["/usr/bin/sleep", "10"]
        let group = Systemd.isBooted ? nil : try ControlGroup.existing(name)
        try group?.remove()  // left by a caller of this pid killed here
        try group?.make()
        defer {
            // Its last processes may take a moment to leave the cgroup after systemd-nspawn.
            if let group {
                for _ in 0..<50 {
                    guard (try? group.remove()) == nil else { break }
                    usleep(20_000)
                }
            }
        }
        let spawn = { () throws(ReplicaError) -> Int32 in try Command.spawn(command, newSession: true) }
        let nspawn = if let group { try group.whileEntered(spawn) } else { try spawn() }
        var ended = false
        defer {
            // Its init's end ends the container, then systemd-nspawn; told to stop too, should it
            // be still setting the container up.
            if !ended {
                for process in MachineProcess.descendants(of: nspawn) { kill(process, SIGKILL) }
                kill(nspawn, SIGTERM)
                _ = try? ExitStatus.wait(for: nspawn)
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            var status: Int32 = 0
            if waitpid(nspawn, &status, WNOHANG) == nspawn {
                ended = true
                throw ReplicaError("systemd-nspawn", ["--volatile=yes", "/usr/bin/sleep"], errno: .ECHILD,
                                   hint: "it \(ExitStatus(waitStatus: status)) before its container ran")
            }
            let container = MachineProcess.descendants(of: nspawn).first { child in
                (try? OwnedFD.open("/proc/\(child)/comm", O_RDONLY).readLine(limit: 64)) == "sleep"
            }
            if let container { return try filters(of: container) }
            guard ContinuousClock.now < deadline else {
                throw ReplicaError("systemd-nspawn", ["--volatile=yes", "/usr/bin/sleep"], errno: .ETIMEDOUT,
                                   hint: "its container did not run within 10 seconds")
            }
            usleep(1000)
        }
    }

    /// The seccomp filters process `pid` runs under, oldest first: `PTRACE_SECCOMP_GET_FILTER` of
    /// each (the caller needs CAP_SYS_ADMIN and no filter of its own).
    public static func filters(of pid: pid_t) throws(ReplicaError) -> [SeccompProgram] {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let used = buffer.withUnsafeMutableBytes { replica_seccomp_filters_of(pid, $0.baseAddress, $0.count) }
        guard used >= 0 else { throw .current("ptrace(PTRACE_SECCOMP_GET_FILTER)", ["\(pid)"]) }
        var programs: [SeccompProgram] = []
        var offset = 0
        while offset + 4 <= used {
            let count = Int(buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) })
            programs.append(SeccompProgram(bpf: Array(buffer[(offset + 4)..<(offset + 4 + count * 8)])))
            offset += 4 + count * 8
        }
        return programs
    }
}
