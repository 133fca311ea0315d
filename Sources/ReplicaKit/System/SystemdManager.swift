import Glibc

/// The service manager over D-Bus (`org.freedesktop.systemd1`): what state a unit is in, and the one thing a sandboxed
/// unit of ours cannot do itself: a mount in the host's mount namespace. A unit with
/// `ProtectSystem=` and the like runs in a mount namespace of its own whose mounts never reach
/// the host; PID 1 makes the mount instead, as a transient `.mount` unit (what `systemd-mount`
/// does), and the mount propagates back into the unit's namespace.
public enum SystemdManager {
    /// Whether a mount made by this process is made in the host's mount namespace: this process
    /// and PID 1 share it (`/proc/self/ns/mnt` and `/proc/1/ns/mnt` are one inode). False when PID
    /// 1's cannot be read, as under `ProtectProc=invisible`.
    public static var mountsReachHost: Bool {
        var mine = stat(), first = stat()
        guard stat("/proc/self/ns/mnt", &mine) == 0, stat("/proc/1/ns/mnt", &first) == 0 else { return false }
        return mine.st_ino == first.st_ino && mine.st_dev == first.st_dev
    }

    /// Whether this process must ask PID 1 for a mount the host is to see: it runs in a unit
    /// (`$INVOCATION_ID`) whose mounts do not reach the host (`mountsReachHost`). Outside systemd
    /// (a shell, a test, a container without systemd) mounts are made directly, as before.
    public static var mountsThroughPID1: Bool { Systemd.isUnderSystemd && !mountsReachHost }

    /// Has PID 1 bind-mount `source` on `target` in the host's mount namespace: a transient mount
    /// unit (`systemd-mount -o bind SOURCE TARGET`; collected once stopped or failed), then waits up
    /// to `timeout` for the mount to show in this process's namespace. `target` must exist (a file
    /// to bind a file on).
    public static func bindMount(_ source: String, on target: String, description: String,
                                 timeout: Duration = .seconds(10)) throws(ReplicaError) {
        let unit = SystemdEscape.mountUnit(for: target)
        let properties = [("Description", description), ("What", source), ("Where", target), ("Options", "bind"),
                          ("CollectMode", "inactive-or-failed")]
        _ = try call("StartTransientUnit", [source, target], hint: "journalctl -u '\(unit)' says why", signature: "ssa(sv)a(sa(sv))") { body in
            body.string(unit)
            body.string("fail")
            body.array(alignment: 8) { array in
                for (key, value) in properties {
                    array.structure { $0.string(key); $0.variant("s") { $0.string(value) } }
                }
            }
            body.array(alignment: 8) { _ in }
        }
        try waitUntil(timeout, [source, target], "PID 1 did not mount it; journalctl -u '\(unit)' says why") { isMountPoint(target) }
    }

    /// Stops the mount unit of `target` (`systemctl stop`), so PID 1 unmounts it in the host's
    /// namespace, and waits up to `timeout` until it is gone from this process's namespace too.
    public static func unmount(_ target: String, timeout: Duration = .seconds(10)) throws(ReplicaError) {
        let unit = SystemdEscape.mountUnit(for: target)
        _ = try call("StopUnit", [target], hint: "journalctl -u '\(unit)' says why", signature: "ss") { body in
            body.string(unit)
            body.string("replace")
        }
        try waitUntil(timeout, [target], "PID 1 did not unmount it; journalctl -u '\(unit)' says why") { !isMountPoint(target) }
    }

    /// Whether `path` is a mount point in this process's mount namespace (`/proc/self/mountinfo`).
    public static func isMountPoint(_ path: String) -> Bool {
        (try? MountInfo.read().contains { $0.mountPoint == path }) ?? false
    }

    private static func waitUntil(_ timeout: Duration, _ paths: [String], _ hint: String, _ done: () -> Bool) throws(ReplicaError) {
        let deadline = ContinuousClock.now + timeout
        while !done() {
            guard ContinuousClock.now < deadline else { throw ReplicaError("systemd mount", paths, errno: .ETIMEDOUT, hint: hint) }
            usleep(2_000)
        }
    }

    /// The unit's `ActiveState` as the service manager reports it (`systemctl show -P ActiveState
    /// UNIT`): `active`, `activating`, `deactivating`, `reloading`, `inactive`, `failed`. nil when
    /// no service manager answers on the system bus (a container without systemd, a test, Nomad's
    /// raw_exec), so callers decide what not knowing means.
    public static func activeState(of unit: String) -> String? {
        let get = BusConnection.Call.property("ActiveState", of: "org.freedesktop.systemd1.Unit", at: unitPath(unit))
        guard let replies = try? BusConnection.systemd().call([get]), case .values(let values) = replies[0],
              case .string(let state) = values.first else { return nil }
        return state
    }

    /// Sets `properties` (each a `t`: `MemoryMax`, `TasksMax`, `CPUWeight`, `CPUQuotaPerSecUSec`,
    /// `IOWeight`) of `unit` until it stops (`systemctl set-property --runtime UNIT …`, the
    /// manager's `SetUnitProperties`).
    public static func setRuntimeProperties(_ unit: String, _ properties: [(name: String, value: UInt64)]) throws(ReplicaError) {
        _ = try call("SetUnitProperties", [unit], hint: "systemd refused a resource-control property of \(unit)", signature: "sba(sv)") { writer in
            writer.string(unit)
            writer.bool(true)
            writer.array(alignment: 8) { array in
                for (name, value) in properties {
                    array.structure { field in
                        field.string(name)
                        field.variant("t") { $0.uint64(value) }
                    }
                }
            }
        }
    }

    /// Runs `command` as the transient service `unit` (`systemd-run --unit=UNIT -p Type=forking
    /// -p PIDFile=PIDFILE COMMAND…`): a daemon that forks once it is ready, so the unit is active
    /// when it serves; returns once it is active, or throws with why it failed (within `timeout`).
    public static func startForkingService(_ unit: String, command: [String], pidFile: String, description: String,
                                           timeout: Duration = .seconds(10)) throws(ReplicaError) {
        _ = try call("StartTransientUnit", [unit], hint: "journalctl -u '\(unit)' says why", signature: "ssa(sv)a(sa(sv))") { body in
            body.string(unit)
            body.string("fail")
            body.array(alignment: 8) { array in
                for (key, value) in [("Description", description), ("Type", "forking"), ("PIDFile", pidFile), ("CollectMode", "inactive-or-failed")] {
                    array.structure { $0.string(key); $0.variant("s") { $0.string(value) } }
                }
                array.structure { execStart(command, &$0) }
            }
            body.array(alignment: 8) { _ in }
        }
        // Queued, then activating, then active once the daemon forked; a daemon that exits first
        // leaves the unit failed, or inactive once collected.
        let began = ContinuousClock.now
        var activating = false
        while true {
            let state = activeState(of: unit)
            if state == "active" { return }
            activating = activating || state == "activating"
            let elapsed = ContinuousClock.now - began
            if state == nil || state == "failed" || (state == "inactive" && (activating || elapsed > .seconds(1))) {
                throw ReplicaError("start \(unit)", [command[0]], errno: .EIO, hint: "it failed to start; journalctl -u '\(unit)' says why")
            }
            guard elapsed < timeout else {
                throw ReplicaError("start \(unit)", [command[0]], errno: .ETIMEDOUT, hint: "not active within \(timeout); journalctl -u '\(unit)' says why")
            }
            usleep(2_000)
        }
    }

    /// The `ExecStart` property of a transient service (`a(sasb)`: the program, its words, and
    /// whether a failure is ignored — not).
    static func execStart(_ command: [String], _ property: inout BusWriter) {
        property.string("ExecStart")
        property.variant("a(sasb)") { variant in
            variant.array(alignment: 8) { commands in
                commands.structure { line in
                    line.string(command[0])
                    line.array(alignment: 4) { words in for word in command { words.string(word) } }
                    line.bool(false)
                }
            }
        }
    }

    /// Listens on `address` (`HOST:PORT`) as the transient socket unit `unit` (`NAME.socket`) and
    /// starts its service `NAME.service`, running `command` with the listening socket as its
    /// standard input, at the first connection (`systemd-run --unit=NAME
    /// --socket-property=ListenStream=ADDRESS -p StandardInput=socket COMMAND…`): socket activation,
    /// nothing running until someone connects. Both are collected once stopped.
    /// Returns once the socket listens (its `ActiveState` is `active`), as `systemctl start` does.
    public static func startSocketActivated(_ unit: String, listen address: String, command: [String], description: String) throws(ReplicaError) {
        let service = String(unit.dropLast(".socket".count)) + ".service"
        _ = try call("StartTransientUnit", [unit], hint: "journalctl -u '\(unit)' says why", signature: "ssa(sv)a(sa(sv))") { body in
            body.string(unit)
            body.string("fail")
            body.array(alignment: 8) { array in
                for (key, value) in [("Description", description), ("CollectMode", "inactive-or-failed")] {
                    array.structure { $0.string(key); $0.variant("s") { $0.string(value) } }
                }
                array.structure { property in
                    property.string("Listen")
                    property.variant("a(ss)") { $0.array(alignment: 8) { $0.structure { $0.string("Stream"); $0.string(address) } } }
                }
            }
            body.array(alignment: 8) { units in
                units.structure { auxiliary in
                    auxiliary.string(service)
                    auxiliary.array(alignment: 8) { array in
                        for (key, value) in [("Description", description), ("StandardInput", "socket"), ("StandardOutput", "journal"),
                                             ("CollectMode", "inactive-or-failed")] {
                            array.structure { $0.string(key); $0.variant("s") { $0.string(value) } }
                        }
                        array.structure { execStart(command, &$0) }
                    }
                }
            }
        }
        // The manager answers once the job is queued; the socket listens once the job has run.
        let deadline = ContinuousClock.now + .seconds(10)
        while let state = activeState(of: unit), state != "active" {
            guard state != "failed", ContinuousClock.now < deadline else {
                throw ReplicaError("start \(unit)", [unit], errno: state == "failed" ? .EIO : .ETIMEDOUT,
                                   hint: "\(state) after StartTransientUnit; journalctl -u '\(unit)' says why")
            }
            usleep(2_000)
        }
    }

    /// Moves the running processes `pids` into the transient scope `unit` in `slice`, with
    /// `properties` (each a `t`: `MemoryMax` …) set on it (`systemd-run --scope --unit=UNIT
    /// --slice=SLICE -p …` does this for its own pid): systemd then accounts, limits and stops
    /// them as one, and collects the scope when they have ended.
    public static func startScope(_ unit: String, pids: [Int32], slice: String, description: String,
                                  properties: [(name: String, value: UInt64)] = []) throws(ReplicaError) {
        _ = try call("StartTransientUnit", [unit], hint: "systemd refused the scope \(unit)", signature: "ssa(sv)a(sa(sv))") { body in
            body.string(unit)
            body.string("fail")
            body.array(alignment: 8) { array in
                for (key, value) in [("Description", description), ("Slice", slice), ("CollectMode", "inactive-or-failed")] {
                    array.structure { $0.string(key); $0.variant("s") { $0.string(value) } }
                }
                array.structure { property in
                    property.string("PIDs")
                    property.variant("au") { variant in variant.array(alignment: 4) { for pid in pids { $0.uint32(UInt32(pid)) } } }
                }
                for (name, value) in properties {
                    array.structure { $0.string(name); $0.variant("t") { $0.uint64(value) } }
                }
            }
            body.array(alignment: 8) { _ in }
        }
    }

    /// Stops `unit` (`systemctl stop UNIT`) and waits up to `timeout` until it is no longer active.
    public static func stopUnit(_ unit: String, timeout: Duration = .seconds(10)) throws(ReplicaError) {
        _ = try call("StopUnit", [unit], hint: "journalctl -u '\(unit)' says why", signature: "ss") { body in
            body.string(unit)
            body.string("replace")
        }
        let deadline = ContinuousClock.now + timeout
        while let state = activeState(of: unit), state == "active" || state == "deactivating" {
            guard ContinuousClock.now < deadline else { throw ReplicaError("stop \(unit)", [unit], errno: .ETIMEDOUT, hint: "still \(state) after \(timeout)") }
            usleep(2_000)
        }
    }

    /// Whether systemd-machined answers on the system bus — started by bus activation where it
    /// is installed but not running (`busctl call org.freedesktop.machine1
    /// /org/freedesktop/machine1 org.freedesktop.DBus.Peer Ping`).
    public static var machinedAnswers: Bool {
        guard let bus = try? BusConnection(path: BusConnection.systemBusSocket, destination: "org.freedesktop.machine1") else { return false }
        let ping = BusConnection.Call(path: "/org/freedesktop/machine1", interface: "org.freedesktop.DBus.Peer", member: "Ping",
                                      signature: "", arguments: { _ in })
        guard let replies = try? bus.call([ping]), case .values = replies[0] else { return false }
        return true
    }

    /// A unit's object path (`sd_bus_path_encode("/org/freedesktop/systemd1/unit", UNIT)`): every
    /// byte but a letter or digit as `_` and two lower-case hex digits.
    static func unitPath(_ unit: String) -> String {
        var label = ""
        for byte in unit.utf8 {
            if IdentityText.isLetterOrDigit(byte) {
                label.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                label += "_" + String(byte, radix: 16).leftPadded(2)
            }
        }
        return "/org/freedesktop/systemd1/unit/" + (label.isEmpty ? "_" : label)
    }

    /// One method call to the service manager (by default on `org.freedesktop.systemd1.Manager`),
    /// its arguments of `signature` written by `arguments`; the reply's values.
    static func call(_ member: String, _ paths: [String], hint: String, object: String = "/org/freedesktop/systemd1",
                     interface: String = "org.freedesktop.systemd1.Manager", signature: String,
                     _ arguments: @escaping (inout BusWriter) -> Void) throws(ReplicaError) -> [BusValue] {
        let call = BusConnection.Call(path: object, interface: interface, member: member, signature: signature, arguments: arguments)
        let replies: [BusConnection.Reply]
        do throws(ReplicaError) { replies = try BusConnection.systemd().call([call]) } catch {
            throw ReplicaError("systemd \(member)", paths, errno: error.errno, detail: error.description, hint: "is systemd running, with its D-Bus socket?")
        }
        return try replies[0].values("systemd \(member)", paths, hint: hint)
    }
}
