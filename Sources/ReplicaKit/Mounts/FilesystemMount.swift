import CReplicaShim
import Glibc

/// Mounting whole filesystems with the new mount API: `fsopen` → `fsconfig` → `fsmount` →
/// `move_mount` onto a descriptor, falling back to `mount(2)` on kernels before 5.2.
public enum FilesystemMount {
    /// Mounts a filesystem of `type` from `source` onto the directory `target` (an open descriptor,
    /// so the mount lands on the directory that was checked, not on whatever a path names later).
    /// `mount -t TYPE -o OPTIONS SOURCE TARGET`.
    public static func mount(
        type: String, source: String, options: [String: String?] = [:], onto target: borrowing OwnedFD,
        targetName: String
    ) throws(ReplicaError) {
        if !SandboxMounter.hasNewMountAPI { return try legacyMount(type, source, options, target, targetName) }
        let mountFD = try detached(type: type, source: source, options: options, attributes: 0, name: targetName)
        let targetFD = target.rawValue
        _ = try syscall("move_mount", source, targetName) {
            replica_move_mount(mountFD.rawValue, "", targetFD, "",
                               replica_MOVE_MOUNT_F_EMPTY_PATH | replica_MOVE_MOUNT_T_EMPTY_PATH)
        }
    }

    /// A detached mount of a new filesystem (`fsopen` → `fsconfig` → `fsmount` with `attributes`),
    /// not attached anywhere yet: attach it with `move_mount`, or use it as scratch space that
    /// vanishes with its descriptor.
    public static func detached(type: String, source: String, options: [String: String?], attributes: UInt64,
                                name: String) throws(ReplicaError) -> OwnedFD {
        let contextFD = OwnedFD(adopting: try syscall("fsopen", type) { replica_fsopen(type, replica_FSOPEN_CLOEXEC) })
        func configure(_ cmd: UInt32, _ key: String?, _ value: String?) throws(ReplicaError) {
            if replica_fsconfig(contextFD.rawValue, cmd, key, value, 0) < 0 {
                let errno = Errno.current
                throw ReplicaError("fsconfig", [type, name], errno: errno, hint: kernelMessages(contextFD.rawValue) ?? key.map { "option \($0)" },
                                   reason: .init(errno, fromCall: true))
            }
        }
        try configure(replica_FSCONFIG_SET_STRING, "source", source)
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            if let value { try configure(replica_FSCONFIG_SET_STRING, key, value) }
            else { try configure(replica_FSCONFIG_SET_FLAG, key, nil) }
        }
        try configure(replica_FSCONFIG_CMD_CREATE, nil, nil)
        return OwnedFD(adopting: try syscall("fsmount", type, name) {
            replica_fsmount(contextFD.rawValue, replica_FSMOUNT_CLOEXEC, UInt32(truncatingIfNeeded: attributes))
        })
    }

    /// `umount2(2)`: `umount TARGET`, or `umount -l` with `detach`.
    public static func unmount(_ target: String, detach: Bool = false) throws(ReplicaError) {
        _ = try syscall("umount2", target) { umount2(target, detach ? Int32(MNT_DETACH) : 0) }
    }

    /// Errors the filesystem logged on the context fd (`e btrfs: ...` lines), joined.
    private static func kernelMessages(_ context: Int32) -> String? {
        var lines: [String] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while lines.count < 8 {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(context, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            lines.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
        return lines.isEmpty ? nil : lines.joined(separator: "; ")
    }

    /// Options as `mount(2)` data: `key=value` or a bare `key` for flags, comma-separated, sorted.
    static func data(_ options: [String: String?]) -> String {
        options.sorted(by: { $0.key < $1.key })
            .map { option in option.value.map { "\(option.key)=\($0)" } ?? option.key }
            .joined(separator: ",")
    }

    /// `mount(2)` onto `/proc/self/fd/N` of the target descriptor, for kernels without fsopen.
    private static func legacyMount(
        _ type: String, _ source: String, _ options: [String: String?], _ target: borrowing OwnedFD, _ name: String
    ) throws(ReplicaError) {
        let data = Self.data(options)
        let proc = "/proc/self/fd/\(target.rawValue)"
        _ = try syscall("mount", source, name) { Glibc.mount(source, proc, type, 0, data) }
    }
}
