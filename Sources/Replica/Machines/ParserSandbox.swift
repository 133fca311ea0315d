import Glibc
import ReplicaKit

/// Where a tool that parses what someone else made runs: a guest's file system (`debugfs`), a
/// downloaded disk image (`qemu-img convert`), a root's tarball (`tar`: `unpack`, as root, in a
/// sandbox of its own: `unpackerProfile`). If the input was crafted to take the parser over, it
/// gets this: `nobody`, no capability, `Hardening=service` with no address family but AF_UNIX,
/// everything read-only, and in `/tmp/guest` (its private /tmp) the files and folders it was lent —
/// nothing else of the store.
struct ParserSandbox {
    /// What it may read and change, each seen as `/tmp/guest/NAME` and `nobody`'s while it runs.
    let lent: [String]

    /// Where the lent paths are, inside: in its private /tmp, so no mount point is made on the host.
    static let mountPoint = "/tmp/guest"

    /// `path` (a lent one, or below a lent folder) as the tool sees it; any other path as it is.
    func inside(_ path: String) -> String {
        for item in lent where path == item || path.hasPrefix(item + "/") {
            let name = item[item.index(after: item.lastIndex(of: "/") ?? item.startIndex)...]
            return "\(Self.mountPoint)/\(name)\(path.dropFirst(item.count))"
        }
        return path
    }

    /// The plan: the preset and the lent paths bound in.
    func plan() throws(ReplicaError) -> SandboxPlan {
        // Address families add up, as in systemd: the empty assignment drops the preset's inet ones.
        let text = "[Sandbox]\nHardening=service\nUser=nobody\nGroup=nogroup\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_UNIX\n"
        var plan = try Self.plan(text, naming: lent)
        for path in lent { plan.binds.append(Bind(try resolvedPath(path), to: inside(path), readOnly: false)) }  // a store reached by a symlink
        return plan
    }

    /// The plan of a `[Sandbox]` section's `text`.
    static func plan(_ text: String, naming paths: [String]) throws(ReplicaError) -> SandboxPlan {
        do throws(ProfileError) {
            return try SandboxPlan(profile: Profile(unit: "parser", files: [], settings: try ProfileParser.parse(text, file: "parser")))
        } catch {
            throw ReplicaError("sandbox", paths, errno: .EINVAL, hint: "\(error)")
        }
    }

    /// Runs `body` with the lent paths `nobody`'s; they are root's again after, however it ends.
    func lending<T>(_ body: () throws(ReplicaError) -> T) throws(ReplicaError) -> T {
        let credentials = try plan().confinement.resolveCredentials()
        let (uid, gid) = (credentials.uid ?? 65534, credentials.gid ?? 65534)
        defer { for path in lent { _ = lchown(path, 0, 0) } }
        for path in lent { _ = try syscall("lchown", path) { lchown(path, uid, gid) } }
        return try body()
    }

    /// `command` in the sandbox (`SandboxMounter.run`); fails, with its output, when it did not succeed.
    func run(_ command: [String]) throws(ReplicaError) -> String {
        try Self.run(command, in: try plan(), naming: lent + command.dropFirst())
    }

    /// `command` under `plan`; fails, naming `paths` and with its output, when it did not succeed.
    static func run(_ command: [String], in plan: SandboxPlan, naming paths: [String]) throws(ReplicaError) -> String {
        let result = try SandboxMounter.run(plan, command: command)
        guard result.status.isSuccess else {
            throw ReplicaError(command[0], paths, errno: .EIO, detail: result.output.trimmed)
        }
        return result.output
    }

    /// Where `unpack` shows the tarball (`source`) and the folder (`root`), in its private /tmp.
    static let unpacking = "/tmp/unpack"

    /// The unpacker's sandbox. A root's files keep their owners, modes, device nodes and file
    /// capabilities, so tar runs as root, but with only the capabilities that restores
    /// (CAP_CHOWN, CAP_FOWNER, CAP_FSETID, CAP_MKNOD, CAP_SETFCAP; no CAP_DAC_OVERRIDE), and sees
    /// nothing of the host's that root owns and could read: /etc, /var, /run, /srv, /opt, /mnt,
    /// /media, /boot and /dev are empty, /home and /root inaccessible. No socket of any family, no
    /// signal to any process (root could signal the host's own), no keyring (root's is shared).
    static let unpackerProfile = """
        [Sandbox]
        User=root
        ProtectSystem=strict
        ProtectHome=yes
        PrivateTmp=yes
        TemporaryFileSystem=/etc:ro /var /run:ro /srv:ro /opt:ro /mnt:ro /media:ro /boot:ro /dev:ro
        NoNewPrivileges=yes
        CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_FSETID CAP_MKNOD CAP_SETFCAP
        RestrictAddressFamilies=none
        ProtectKernelTunables=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectControlGroups=yes
        ProtectClock=yes
        ProtectHostname=yes
        RestrictNamespaces=yes
        LockPersonality=yes
        MemoryDenyWriteExecute=yes
        RestrictRealtime=yes
        SystemCallArchitectures=native
        SystemCallFilter=@system-service
        SystemCallFilter=~@keyring kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal
        SystemCallErrorNumber=EPERM

        """

    /// The unpacker's plan: `tarball` read-only at `unpacking/source`, the folder `root` writable
    /// and `nodev` at `unpacking/root`, so a device node it makes there opens nothing. Both paths
    /// are the operator's and may be reached through symlinks; what is bound is where they lead.
    static func unpackPlan(_ tarball: String, into root: String) throws(ReplicaError) -> SandboxPlan {
        var plan = try plan(unpackerProfile, naming: [tarball, root])
        var folder = Bind(try resolvedPath(root), to: "\(unpacking)/root", readOnly: false)
        folder.noDevices = true
        plan.binds += [Bind(try resolvedPath(tarball), to: "\(unpacking)/source", readOnly: true), folder]
        return plan
    }

    /// What of a root `tar -x` keeps besides its files and modes: owners by number, ACLs, user
    /// xattrs and file capabilities (tar keeps only user xattrs unless told; `security.capability`
    /// is what makes a `ping` work unprivileged).
    static let tarKeeps = ["--numeric-owner", "--acls", "--xattrs", "--xattrs-include=user.*", "--xattrs-include=security.capability"]

    /// Unpacks the tarball of a root into the folder `root` (`tar -xpf TARBALL -C ROOT` and
    /// `tarKeeps`, compressed or not), in the unpacker's sandbox.
    static func unpack(_ tarball: String, into root: String) throws(ReplicaError) {
        _ = try run(["tar", "-xpf", "\(unpacking)/source", "-C", "\(unpacking)/root"] + tarKeeps,
                    in: try unpackPlan(tarball, into: root), naming: [tarball, root])
    }
}
