import Glibc
import ReplicaKit
import ReplicaNet

/// A VM's display for a browser: QEMU serves it as VNC on a UNIX socket,
/// `/run/replica/machines/NAME.vnc`, and `open` puts a websocket endpoint on a host address in
/// front of it (websockify, which noVNC speaks to) — started on the first connection where systemd
/// runs (a transient socket unit `replica-console-NAME.socket` and its service), closed when the
/// machine stops. Whoever reaches the address has the guest's console: keep it on loopback, or
/// behind a proxy that authenticates.
public enum VMConsole {
    /// The socket unit of machine `name`'s console.
    public static func unit(_ name: String) -> String { "replica-console-\(name).socket" }

    /// The websocket proxy: websockify handed its listening socket on standard input (`--inetd`).
    static func command(_ name: String) -> [String] { ["websockify", "--inetd", "--unix-target=\(QEMU.runtimePath(name, "vnc"))"] }

    /// Opens machine `name`'s console on `address` (`HOST:PORT`, `[V6]:PORT`): refused unless it
    /// is a running VM with a display (q35). Without systemd the proxy starts at once, its pid in
    /// `NAME.console`.
    public static func open(_ name: String, listen address: String, vm: VMImage?) throws(ReplicaError) {
        guard let vm, vm.machineType == .q35 else {
            throw ReplicaError("console", [name], errno: .ENOTSUP, hint: "only a q35 VM has a display (a container or a microvm has none)", reason: .refused)
        }
        guard MachineProcess.running(name) != nil else {
            throw ReplicaError("console", [name], errno: .ENOENT, hint: "it is not running; start it first", reason: .refused)
        }
        let endpoint = try ProxyEndpoint(parsing: "tcp:" + address)
        close(name)
        if Systemd.isBooted {
            try SystemdManager.startSocketActivated(unit(name), listen: address, command: command(name), description: "Console of machine \(name) (websocket to VNC)")
            return
        }
        let listener = try endpoint.listeningSocket()
        let log = try MachineProcess.openLog("\(name).console")
        let pid = try Command.spawn(command(name), input: listener.rawValue, output: log.rawValue, newSession: true)
        try OwnedFD.open(QEMU.runtimePath(name, "console"), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
            .writeAll(Array("\(pid)\n".utf8))
    }

    /// Closes machine `name`'s console: its socket unit and service stopped, or its proxy ended
    /// with the processes it forked for connections (SIGTERM, SIGKILL after 2 s), waited for even
    /// when another process started it. None open is not an error.
    public static func close(_ name: String) {
        if Systemd.isBooted {
            for unit in [unit(name), String(unit(name).dropLast(".socket".count)) + ".service"] where SystemdManager.activeState(of: unit) != nil {
                try? SystemdManager.stopUnit(unit)
            }
        }
        let path = QEMU.runtimePath(name, "console")
        // A proxy of this machine's display, alive (an ended one's command line is empty).
        func isProxy(_ pid: Int32) -> Bool {
            guard let words = try? OwnedFD.open("/proc/\(pid)/cmdline", O_RDONLY).readAll(limit: 1 << 16) else { return false }
            return String(decoding: words, as: UTF8.self).contains(QEMU.runtimePath(name, "vnc"))
        }
        if let text = try? OwnedFD.open(path, O_RDONLY | O_NOFOLLOW).readLine(), let pid = Int32(text), isProxy(pid) {
            let proxies = [pid] + MachineProcess.descendants(of: pid).filter(isProxy)
            for (signal, rounds) in [(SIGTERM, 100), (SIGKILL, 50)] where proxies.contains(where: isProxy) {
                for process in proxies { kill(process, signal) }
                var status: Int32 = 0
                for _ in 0..<rounds where proxies.contains(where: isProxy) {
                    _ = waitpid(pid, &status, WNOHANG)  // ours when this process started it
                    usleep(20_000)
                }
            }
        }
        unlink(path)
        unlink("\(MachineProcess.runDirectory)/\(name).console.log")
    }
}
