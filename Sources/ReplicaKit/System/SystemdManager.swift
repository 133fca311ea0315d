import CSystemd
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
        try call("StartTransientUnit", [source, target], hint: "journalctl -u '\(unit)' says why") { (message) throws(ReplicaError) in
            try append(message, "s", unit)
            try append(message, "s", "fail")
            try container(message, "a", "(sv)") { () throws(ReplicaError) in
                for (key, value) in [("Description", description), ("What", source), ("Where", target), ("Options", "bind"),
                                     ("CollectMode", "inactive-or-failed")] {
                    try container(message, "r", "sv") { () throws(ReplicaError) in
                        try append(message, "s", key)
                        try container(message, "v", "s") { () throws(ReplicaError) in try append(message, "s", value) }
                    }
                }
            }
            try container(message, "a", "(sa(sv))") {}
        }
        try waitUntil(timeout, [source, target], "PID 1 did not mount it; journalctl -u '\(unit)' says why") { isMountPoint(target) }
    }

    /// Stops the mount unit of `target` (`systemctl stop`), so PID 1 unmounts it in the host's
    /// namespace, and waits up to `timeout` until it is gone from this process's namespace too.
    public static func unmount(_ target: String, timeout: Duration = .seconds(10)) throws(ReplicaError) {
        let unit = SystemdEscape.mountUnit(for: target)
        try call("StopUnit", [target], hint: "journalctl -u '\(unit)' says why") { (message) throws(ReplicaError) in
            try append(message, "s", unit)
            try append(message, "s", "replace")
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
        guard let open = LibSystemd.busOpenSystem, let close = LibSystemd.busFlushCloseUnref,
              let encode = LibSystemd.busPathEncode, let get = LibSystemd.busGetPropertyString,
              let free = LibSystemd.busErrorFree else { return nil }
        var bus: OpaquePointer?
        guard open(&bus) >= 0, let bus else { return nil }
        defer { _ = close(bus) }
        var path: UnsafeMutablePointer<CChar>?
        guard encode("/org/freedesktop/systemd1/unit", unit, &path) >= 0, let path else { return nil }
        defer { LibSystemd.release(path) }
        var error = sd_bus_error(name: nil, message: nil, _need_free: 0)
        defer { free(&error) }
        var value: UnsafeMutablePointer<CChar>?
        guard get(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Unit", "ActiveState", &error, &value) >= 0,
              let value else { return nil }
        defer { LibSystemd.release(value) }
        return String(cString: value)
    }

    /// One method call over the system bus (by default on `org.freedesktop.systemd1.Manager`), its
    /// arguments appended by `build`, its reply handed to `read`.
    static func call(_ member: String, _ paths: [String], hint: String, object: String = "/org/freedesktop/systemd1",
                     interface: String = "org.freedesktop.systemd1.Manager",
                     _ build: (OpaquePointer) throws(ReplicaError) -> Void,
                     read: (OpaquePointer) throws(ReplicaError) -> Void = { _ throws(ReplicaError) in }) throws(ReplicaError) {
        try withBus(paths) { (bus) throws(ReplicaError) in
            try call(on: bus, member, paths, hint: hint, object: object, interface: interface, build, read: read)
        }
    }

    /// A connection to the service manager for `body`: PID 1's private socket where it can be
    /// used (`privateBus`), else the system bus; closed after.
    static func withBus(_ paths: [String], _ body: (OpaquePointer) throws(ReplicaError) -> Void) throws(ReplicaError) {
        guard let open = LibSystemd.busOpenSystem, let close = LibSystemd.busFlushCloseUnref else {
            throw ReplicaError("sd_bus_open_system", paths, errno: .ENOSYS, hint: "libsystemd.so.0 cannot be loaded; install libsystemd0")
        }
        var bus = privateBus()
        var result: Int32 = 0
        if bus == nil { result = open(&bus) }
        guard result >= 0, let bus else {
            throw ReplicaError("sd_bus_open_system", paths, errno: Errno(rawValue: -result), hint: "is systemd running, with its D-Bus socket?")
        }
        defer { _ = close(bus) }
        try body(bus)
    }

    /// One method call on an open connection.
    static func call(on bus: OpaquePointer, _ member: String, _ paths: [String], hint: String, object: String = "/org/freedesktop/systemd1",
                     interface: String = "org.freedesktop.systemd1.Manager",
                     _ build: (OpaquePointer) throws(ReplicaError) -> Void,
                     read: (OpaquePointer) throws(ReplicaError) -> Void = { _ throws(ReplicaError) in }) throws(ReplicaError) {
        guard let new = LibSystemd.busNewMethodCall, let send = LibSystemd.busCall, let unref = LibSystemd.busMessageUnref,
              let free = LibSystemd.busErrorFree else {
            throw ReplicaError("systemd \(member)", paths, errno: .ENOSYS, hint: "libsystemd.so.0 cannot be loaded; install libsystemd0")
        }
        var message: OpaquePointer?
        var result = new(bus, &message, "org.freedesktop.systemd1", object, interface, member)
        guard result >= 0, let message else { throw ReplicaError("sd_bus_message_new_method_call", paths, errno: Errno(rawValue: -result)) }
        defer { _ = unref(message) }
        try build(message)
        var error = sd_bus_error(name: nil, message: nil, _need_free: 0)
        defer { free(&error) }
        var reply: OpaquePointer?
        result = send(bus, message, 0, &error, &reply)
        defer { if let reply { _ = unref(reply) } }
        guard result >= 0, let reply else {
            let said = error.message.map { String(cString: $0) } ?? ""
            throw ReplicaError("systemd \(member)", paths, errno: Errno(rawValue: -result), hint: said.isEmpty ? hint : "\(said); \(hint)")
        }
        try read(reply)
    }

    /// PID 1's private socket, as `systemctl` connects when run as root (`/run/systemd/private`):
    /// no bus daemon to pass through and no `Hello`, about half the time of the system bus. Nil
    /// when it cannot be used (not root, not systemd); the caller then takes the system bus.
    static func privateBus() -> OpaquePointer? {
        guard geteuid() == 0, access(privateSocket, F_OK) == 0, let new = LibSystemd.busNew, let address = LibSystemd.busSetAddress,
              let start = LibSystemd.busStart, let close = LibSystemd.busFlushCloseUnref else { return nil }
        var bus: OpaquePointer?
        guard new(&bus) >= 0, let bus else { return nil }
        guard address(bus, "unix:path=\(privateSocket)") >= 0, start(bus) >= 0 else { _ = close(bus); return nil }
        return bus
    }

    /// systemd's own socket for root's direct connections.
    static let privateSocket = "/run/systemd/private"

    static func append(_ message: OpaquePointer, _ type: Unicode.Scalar, _ value: String) throws(ReplicaError) {
        let result = value.withCString { LibSystemd.busAppendBasic?(message, CChar(type.value), $0) ?? -ENOSYS }
        guard result >= 0 else { throw ReplicaError("sd_bus_message_append_basic", [value], errno: Errno(rawValue: -result)) }
    }

    private static func container(_ message: OpaquePointer, _ type: Unicode.Scalar, _ contents: String,
                                  _ body: () throws(ReplicaError) -> Void) throws(ReplicaError) {
        var result = LibSystemd.busOpenContainer?(message, CChar(type.value), contents) ?? -ENOSYS
        guard result >= 0 else { throw ReplicaError("sd_bus_message_open_container", [contents], errno: Errno(rawValue: -result)) }
        try body()
        result = LibSystemd.busCloseContainer?(message) ?? -ENOSYS
        guard result >= 0 else { throw ReplicaError("sd_bus_message_close_container", [contents], errno: Errno(rawValue: -result)) }
    }
}
