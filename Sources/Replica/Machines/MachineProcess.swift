import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaStore

/// A machine booted outside systemd (`replica-machine start`): `systemd-nspawn` in a session of
/// its own, its pid in `/run/replica/machines/NAME.pid` and its console in `NAME.log`. Under
/// systemd, `replica-machine@NAME.service` runs the same command itself (Type=notify).
public enum MachineProcess {
    /// Where running machines are recorded.
    public static let runDirectory = "/run/replica/machines"

    /// The machine's pid file, `/run/replica/machines/NAME.pid`: only for a name that is a machine
    /// name (`MachineName`), so no name given on a command line can reach another path.
    static func pidFile(_ name: String) throws(ReplicaError) -> String { "\(runDirectory)/\(try MachineName(name)).pid" }

    /// The pid of the running machine `name`, or nil: its pid file names a live systemd-nspawn or
    /// QEMU of that machine (a stale file, or a pid reused by another program, is not it).
    public static func running(_ name: String) -> Int32? {
        runningProcess(name)?.pid
    }

    /// The running machine's process and whether it is a virtual machine's QEMU. The pid file's
    /// second line, when there is one, is the name the process was started under (a machine
    /// claimed from a warm pool keeps its pool name there: `MachinePool.claim`).
    static func runningProcess(_ name: String) -> (pid: Int32, isVM: Bool)? {
        let (recorded, startedAs) = pidFileLines(name)
        guard let pid = recorded else { return nil }
        guard let command = try? OwnedFD.open("/proc/\(pid)/cmdline", O_RDONLY).readAll(limit: 1 << 16) else { return nil }
        let words = command.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if words.contains("--machine=\(startedAs)") && words.contains(where: { $0.hasSuffix("systemd-nspawn") }) { return (pid, false) }
        if words.first?.hasSuffix(QEMU.program) == true && words.contains("guest=\(startedAs)") { return (pid, true) }
        return nil
    }

    /// The pid file's pid, and the name the machine's processes were started under: its second
    /// line when there is one (a claimed pool machine's), else `name`.
    static func pidFileLines(_ name: String) -> (pid: Int32?, startedAs: String) {
        guard let path = try? pidFile(name), let text = try? OwnedFD.open(path, O_RDONLY | O_NOFOLLOW).readAll(limit: 4096) else { return (nil, name) }
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n").map(String.init)
        return (lines.first.flatMap { Int32($0) }, lines.dropFirst().first.flatMap { try? MachineName($0).rawValue } ?? name)
    }

    /// The pid of a running container's init (its systemd), below its systemd-nspawn: the process
    /// that is pid 1 of a pid namespace of its own (`NSpid:` of `/proc/PID/status` ending in 1).
    /// What `nsenter --target` takes to run a command in it. Nil when it does not run (or is a VM).
    public static func leader(_ name: String) -> Int32? {
        guard let (pid, isVM) = runningProcess(name), !isVM else { return nil }
        return descendants(of: pid).first { child in
            let status = String(decoding: (try? OwnedFD.open("/proc/\(child)/status", O_RDONLY).readAll(limit: 1 << 16)) ?? [], as: UTF8.self)
            let ids = status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }?.split(whereSeparator: \.isWhitespace).dropFirst() ?? []
            return ids.count > 1 && ids.last == "1"
        }
    }

    /// A machine booting: its systemd-nspawn or QEMU, and the notify socket its READY will arrive
    /// on — a datagram socket systemd-nspawn sends to, or a stream socket QEMU connects its
    /// virtio-serial port to.
    public final class Starting {
        /// The machine.
        public let name: String
        /// Its systemd-nspawn or QEMU.
        public let pid: Int32
        let notify: OwnedFD
        let socketPath: String
        /// QEMU's connection, once accepted (a stream socket).
        var connection: OwnedFD? = nil

        init(name: String, pid: Int32, notify: consuming OwnedFD, socketPath: String) {
            (self.name, self.pid, self.socketPath) = (name, pid, socketPath)
            self.notify = notify
        }

        /// Returns once the container's systemd said READY (passed on by `--notify-ready=yes`), or
        /// fails after `timeout` with the console's last lines (the machine is then stopped).
        public func waitReady(timeout: Duration) throws(ReplicaError) -> Int32 {
            try waitReady(until: ContinuousClock.now + timeout, timeout: timeout)
        }

        /// `waitReady` against a deadline shared with other machines started at the same time (a
        /// set's `--wait` is for all of them together); `timeout` is what the message names.
        public func waitReady(until deadline: ContinuousClock.Instant, timeout: Duration) throws(ReplicaError) -> Int32 {
            defer { unlink(socketPath) }
            var buffer = [UInt8](repeating: 0, count: 4096), received: [UInt8] = []
            let listening = socketType(notify) == Int32(SOCK_STREAM.rawValue)
            while ContinuousClock.now < deadline {
                let reading = connection?.rawValue ?? notify.rawValue
                var poll = pollfd(fd: reading, events: Int16(POLLIN), revents: 0)
                if Glibc.poll(&poll, 1, 100) > 0 {
                    if listening && connection == nil {
                        let accepted = accept(notify.rawValue, nil, nil)
                        if accepted >= 0 {
                            _ = fcntl(accepted, F_SETFD, FD_CLOEXEC)
                            connection = OwnedFD(adopting: accepted)
                        }
                        continue
                    }
                    let count = buffer.withUnsafeMutableBytes { recv(reading, $0.baseAddress, $0.count, 0) }
                    if count > 0 {
                        received = listening ? received + buffer[0..<count] : Array(buffer[0..<count])
                        if String(decoding: received, as: UTF8.self).split(separator: "\n").contains("READY=1") { return pid }
                    } else if listening {
                        usleep(100_000)  // QEMU closed it: it is ending, which waitpid sees next
                    }
                }
                if listening, let panic = MachineProcess.kernelPanic(name) {
                    // A VM's kernel that panicked never says READY: said now, not at the deadline.
                    try? MachineProcess.stop(name, timeout: .seconds(1))
                    kill(pid, SIGKILL)
                    var status: Int32 = 0
                    _ = waitpid(pid, &status, 0)
                    VirtualMachine.removeRuntimeFiles(name)
                    throw ReplicaError("start machine", [name], errno: .EIO, hint: "the guest's kernel panicked: \(panic)", reason: .system)
                }
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    try? MachinePlacement.release(name)
                    if listening { VirtualMachine.removeRuntimeFiles(name) }
                    throw ReplicaError("start machine", [name], errno: .ECHILD,
                                       hint: "\(listening ? QEMU.program : "systemd-nspawn") ended (\(ExitStatus(waitStatus: status))) before the machine was ready: "
                                           + (MachineProcess.hostLimitReached(name) ?? MachineProcess.tail(name)), reason: .system)
                }
            }
            try? MachineProcess.stop(name, timeout: .seconds(10))
            throw ReplicaError("start machine", [name], errno: .ETIMEDOUT, hint: "not ready after \(timeout); stopped: " + (MachineProcess.hostLimitReached(name) ?? MachineProcess.tail(name)),
                               reason: .system)
        }
    }

    /// The type of socket `fd` is (`SOCK_STREAM`, `SOCK_DGRAM`): `getsockopt(SO_TYPE)`.
    static func socketType(_ fd: borrowing OwnedFD) -> Int32 {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd.rawValue, SOL_SOCKET, SO_TYPE, &type, &length) == 0 ? type : -1
    }

    /// Starts booting `machine` (from `Machines.prepareStart`) in the cgroup `MachinePlacement`
    /// gives it from here (a scope, or Replica's own), in a session of its own, listening for its
    /// READY; refused when it runs already.
    public static func begin(_ machine: Machines.Machine, networkNamespace: String? = nil) throws(ReplicaError) -> Starting {
        let name = machine.name
        if let pid = running(name) {
            throw ReplicaError("start machine", [name], errno: .EBUSY, hint: "it is running already (pid \(pid))", reason: .busy)
        }
        let placement = MachinePlacement.current(for: name, foreground: false)
        let group = try placement.prepare(name, limits: machine.limits)
        do throws(ReplicaError) {
            if let vm = machine.vm { return try VirtualMachine.begin(machine, vm, placement: placement, in: group, networkNamespace: networkNamespace) }
            let command = Machines.spawnCommand(machine, networkNamespace: networkNamespace, placement: placement)
            return try begin(name, command: command, in: group, networkNamespace: networkNamespace,
                             seccomp: NspawnSeccomp.programs(for: command))
        } catch {
            try? group?.remove()
            throw error
        }
    }

    /// Starts `command` for machine `name`, in `group` when given (this process enters it for the
    /// spawn and goes back, so systemd-nspawn starts there and never in the caller's cgroup), and
    /// in the network namespace `networkNamespace` when given (`/run/netns/NAME`, joined by a
    /// thread of its own that spawns it, as `ip netns exec` would: see `Machines.spawnCommand`).
    /// `seccomp`: systemd-nspawn's filters, loaded by that thread (`NspawnSeccomp`); nil: it loads its own.
    public static func begin(_ name: String, command: [String], in group: ControlGroup?,
                             networkNamespace: String? = nil, seccomp: [SeccompProgram]? = nil) throws(ReplicaError) -> Starting {
        let socketPath = "\(runDirectory)/\(name).notify"
        let notify = try unixSocket(socketPath, stream: false)
        let log = try openLog(name)
        let output = log.rawValue
        let spawn = { @Sendable () throws(ReplicaError) -> Int32 in
            if let networkNamespace { try SandboxMounter.joinNetworkNamespace("\(SandboxPlan.networkNamespaceDirectory)/\(networkNamespace)") }
            let loaded = seccomp.map(NspawnSeccomp.load) ?? false
            return try Command.spawn(command, output: output, environment: [("NOTIFY_SOCKET", socketPath)] + (loaded ? [NspawnSeccomp.environment] : []),
                                     newSession: true)
        }
        let spawnHere = { () throws(ReplicaError) -> Int32 in networkNamespace == nil && seccomp == nil ? try spawn() : try DedicatedThread.run(spawn) }
        let pid = if let group { try group.whileEntered(spawnHere) } else { try spawnHere() }
        try record(name, pid: pid)
        return Starting(name: name, pid: pid, notify: notify, socketPath: socketPath)
    }

    /// A UNIX socket bound at `path` (made afresh): a datagram socket (READY from systemd-nspawn),
    /// or with `stream` a listening one (QEMU's READY port connects to it; swtpm is handed its
    /// control socket). `/run/replica/machines` is made first.
    static func unixSocket(_ path: String, stream: Bool) throws(ReplicaError) -> OwnedFD {
        try createDirectories(runDirectory, mode: 0o700)
        unlink(path)
        let type = stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        let socket = OwnedFD(adopting: try syscall("socket") { Glibc.socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0) })
        _ = try syscall("bind", path) { replica_bind_unix(socket.rawValue, path) }
        if stream { _ = try syscall("listen", path) { listen(socket.rawValue, 1) } }
        return socket
    }

    /// The machine's console log, `/run/replica/machines/NAME.log`, made empty.
    static func openLog(_ name: String) throws(ReplicaError) -> OwnedFD {
        try OwnedFD.open("\(runDirectory)/\(name).log", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
    }

    /// Records `pid` as the machine's systemd-nspawn (`/run/replica/machines/NAME.pid`): `begin`
    /// does, and `start --foreground` before it execs systemd-nspawn under its unit.
    /// `startedAs`: the name its process was started under, when not `name` (a claimed pool machine).
    public static func record(_ name: String, pid: Int32, startedAs: String? = nil) throws(ReplicaError) {
        try createDirectories(runDirectory, mode: 0o700)
        let path = try pidFile(name)
        try OwnedFD.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600).writeAll(Array("\(pid)\n\(startedAs.map { "\($0)\n" } ?? "")".utf8))
    }

    /// `begin`, then, with `wait`, `waitReady`: returns the pid of systemd-nspawn.
    public static func start(_ machine: Machines.Machine, networkNamespace: String? = nil, wait: Duration? = .seconds(60)) throws(ReplicaError) -> Int32 {
        let starting = try begin(machine, networkNamespace: networkNamespace)
        guard let wait else {
            unlink(starting.socketPath)
            return starting.pid
        }
        return try starting.waitReady(timeout: wait)
    }

    /// Powers the machine off (SIGTERM to systemd-nspawn, which asks the container's systemd to
    /// shut down; a VM's ACPI power button), waiting up to `timeout`, then kills it; Replica's own cgroup of it goes after.
    /// Not running is not an error.
    public static func stop(_ name: String, timeout: Duration = .seconds(30)) throws(ReplicaError) {
        let path = try pidFile(name)
        let startedAs = pidFileLines(name).startedAs  // its cgroup's name
        guard let (pid, isVM) = runningProcess(name) else {
            unlink(path)
            VirtualMachine.removeRuntimeFiles(name)  // a VM that ended by itself: what it left, if anything
            try MachinePlacement.release(startedAs)
            return
        }
        defer {
            // Its last processes may take a moment to leave the cgroup after systemd-nspawn.
            for _ in 0..<50 {
                guard (try? MachinePlacement.release(startedAs)) == nil else { break }
                usleep(20_000)
            }
        }
        if isVM {
            VirtualMachine.stop(name, pid: pid, timeout: timeout)
            unlink(path)
            return
        }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, running(name) != nil {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)  // reaps it when it is our child
            usleep(50_000)
        }
        if running(name) != nil {
            // A guest that ignores the request: systemd-nspawn ends it at a second SIGTERM ("Send
            // SIGTERM again to trigger immediate termination") and removes what it made for it
            // (its /run/systemd/nspawn/propagate/NAME, left behind when it is killed). Failing that,
            // the whole tree goes, the container's init first (its PID namespace, and every process
            // in it, ends with it), then systemd-nspawn.
            let gone = { () -> Bool in  // within 2 s
                for _ in 0..<100 where running(name) != nil {
                    var status: Int32 = 0
                    _ = waitpid(pid, &status, WNOHANG)
                    usleep(20_000)
                }
                return running(name) == nil
            }
            kill(pid, SIGTERM)
            if !gone() {
                for process in descendants(of: pid) { kill(process, SIGKILL) }
                kill(pid, SIGKILL)
                _ = gone()
            }
        }
        unlink(path)
    }

    /// Every process below `pid`, nearest first (`/proc/PID/task/*/children`).
    public static func descendants(of pid: Int32) -> [Int32] {
        var found: [Int32] = []
        var queue = [pid]
        while let next = queue.popLast() {
            guard let tasks = try? DirectoryEntries.names(in: try OwnedFD.open("/proc/\(next)/task", O_RDONLY | O_DIRECTORY)) else { continue }
            for task in tasks {
                let text = (try? OwnedFD.open("/proc/\(next)/task/\(task)/children", O_RDONLY).readAll(limit: 1 << 16)) ?? []
                let children = text.split(separator: UInt8(ascii: " ")).compactMap { Int32(String(decoding: $0, as: UTF8.self)) }
                found += children
                queue += children
            }
        }
        return found
    }

    /// What to do when machine `name`'s guest could not start because the host ran out of inotify
    /// instances (its systemd says "Failed to create control group inotify object: Too many open
    /// files"), else nil.
    static func hostLimitReached(_ name: String) -> String? {
        let text = consoleText(name)
        guard text.contains("inotify object: Too many open files") else { return nil }
        let limit = (try? OwnedFD.open("/proc/sys/fs/inotify/max_user_instances", O_RDONLY).readLine()) ?? "?"
        return "the guest's systemd found no inotify instance left: the host allows \(limit) (fs.inotify.max_user_instances), "
            + "too few for this many machines; raise it: sysctl -w fs.inotify.max_user_instances=1048576 "
            + "(the package sets it in /usr/lib/sysctl.d/60-replica.conf)"
    }

    /// The line of the console that says the kernel panicked (`Kernel panic - not syncing: …`), if any.
    static func kernelPanic(_ name: String) -> String? {
        let text = consoleText(name)
        return text.split(whereSeparator: \.isNewline).first { $0.contains("Kernel panic - ") }.map { String($0).trimmed }
    }

    /// The console's last lines, for errors.
    static func tail(_ name: String) -> String { consoleTail(name, lines: 3) }

    /// Machine `name`'s console as written so far (`/run/replica/machines/NAME.log`, its last 4 MiB
    /// at most); empty when there is none.
    static func consoleText(_ name: String) -> String {
        String(decoding: (try? OwnedFD.open("\(runDirectory)/\(name).log", O_RDONLY).readAll(limit: 1 << 22)) ?? [], as: UTF8.self)
    }

    /// The last `lines` lines of machine `name`'s console (`/run/replica/machines/NAME.log`), joined by `; `.
    public static func consoleTail(_ name: String, lines: Int = 10) -> String {
        let text = consoleText(name)
        return text.split(whereSeparator: \.isNewline).suffix(lines).joined(separator: "; ")  // "\r\n" is one Character
    }
}
