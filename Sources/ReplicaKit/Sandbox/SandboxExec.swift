import CReplicaShim
import Glibc

extension SandboxMounter {
    /// `replica-run`'s core: joins the plan's network namespace (`setns`), enters a private mount
    /// namespace, applies the plan, sets `$RUNTIME_DIRECTORY`, `$LOGS_DIRECTORY` and
    /// `$CACHE_DIRECTORY` as systemd does (colon-separated paths), and replaces this process with
    /// `command` (`execvp(3)`), which inherits all of it. Returns only by throwing: if anything fails, the command never runs,
    /// sandboxed or not.
    ///
    /// The confinement is prepared first — users resolved, seccomp filters compiled or loaded from
    /// `cache` — so a bad
    /// name fails before anything is applied; then the UTS namespace (`ProtectHostname=`), the
    /// mounts, and `Confinement.apply`, whose seccomp filters are the last step before `execve`.
    public static func exec(_ plan: SandboxPlan, command: [String], method: MountMethod = .automatic,
                            cache: SeccompCache = SeccompCache()) throws(ReplicaError) -> Never {
        try exec(plan, command: command, credentials: try plan.confinement.resolveCredentials(),
                 programs: try cache.programs(for: plan.confinement).programs, method: method)
    }

    /// `exec` with the users resolved and the filters made already: what a forked child does, so it
    /// never looks anything up in the user databases (NSS is not safe after a fork).
    static func exec(_ plan: SandboxPlan, command: [String], credentials: Confinement.Credentials, programs: [SeccompProgram],
                     method: MountMethod) throws(ReplicaError) -> Never {
        guard let program = command.first else {
            throw ReplicaError("execvp", [], errno: .EINVAL, hint: "no command given")
        }
        if let path = plan.networkNamespacePath { try joinNetworkNamespace(path) }
        if plan.confinement.protectHostname { _ = try syscall("unshare(CLONE_NEWUTS)") { replica_unshare(replica_CLONE_NEWUTS) } }
        try enterPrivateMountNamespace(method: method)
        try apply(plan, method: method)
        try ownServiceDirectories(plan, credentials)
        for kind in ServiceDirectory.Kind.allCases {
            let paths = plan.serviceDirectories.filter { $0.kind == kind }.map(\.path)
            if !paths.isEmpty { setenv(kind.environmentVariable, paths.joined(separator: ":"), 1) }
        }
        // Resolved before the filters load: execvp's PATH walk must not meet them half-applied.
        let argv = command.map { strdup($0) } + [nil]
        try plan.confinement.apply(credentials, programs: programs)
        execvp(program, argv)
        let error = ReplicaError.current("execvp", [program], hint: Errno.current == .ENOENT ? "not found in PATH" : nil)
        argv.forEach { free($0) }
        throw error
    }

    /// Runs `command` under `plan` in a child process — a fork that does what `exec` does — and
    /// waits for it: how it ended and what it wrote (stdout and stderr together, stdin
    /// /dev/null), as `systemd-run --pipe --wait` with the plan's directives would. For a tool that
    /// parses input someone else made (a disk image's file system): if the input subverts it, it
    /// holds only what the plan gives. A plan that cannot be applied fails the command (exit 127,
    /// the reason in its output); nothing runs unconfined. Users are resolved and the filters made
    /// (or read from `cache`) before the fork.
    public static func run(_ plan: SandboxPlan, command: [String], cache: SeccompCache = SeccompCache()) throws(ReplicaError) -> CommandResult {
        let credentials = try plan.confinement.resolveCredentials()
        let programs = try cache.programs(for: plan.confinement).programs
        var pipe: [Int32] = [-1, -1]
        _ = try syscall("pipe2") { replica_pipe_cloexec(&pipe) }
        let reader = OwnedFD(adopting: pipe[0])
        let writer = OwnedFD(adopting: pipe[1])
        let input = try OwnedFD.open("/dev/null", O_RDONLY | O_CLOEXEC)
        let pid = try ChildProcess.forkTied()
        if pid == 0 {
            guard dup2(input.rawValue, 0) == 0, dup2(writer.rawValue, 1) == 1, dup2(writer.rawValue, 2) == 2 else { _exit(127) }
            do throws(ReplicaError) {
                try exec(plan, command: command, credentials: credentials, programs: programs, method: .automatic)
            } catch {
                let text = "replica: \(command.first ?? ""): not run: \(error)\n"
                _ = Glibc.write(2, text, text.utf8.count)
            }
            _exit(127)
        }
        _ = consume writer
        let output = (try? reader.readAll(limit: 16 << 20, name: command.first ?? "")) ?? []
        return CommandResult(status: try ExitStatus.wait(for: pid), output: String(decoding: output, as: UTF8.self))
    }

    /// `RuntimeDirectory=` and the others belong to `User=`/`Group=`, as systemd makes them:
    /// `fchownat(AT_EMPTY_PATH)` on each, reached without symlinks.
    static func ownServiceDirectories(_ plan: SandboxPlan, _ credentials: Confinement.Credentials) throws(ReplicaError) {
        guard credentials.uid != nil || credentials.gid != nil, !plan.serviceDirectories.isEmpty else { return }
        let root = try RootDirectory(plan.root)
        let (uid, gid) = (credentials.uid ?? uid_t.max, credentials.gid ?? gid_t.max)  // -1: unchanged
        for directory in plan.serviceDirectories {
            let fd = try root.open(directory.path, [.noSymlinks, .directory])
            _ = try syscall("fchownat", directory.path) { fchownat(fd.rawValue, "", uid, gid, replica_AT_EMPTY_PATH) }
        }
    }

    /// `setns(open(PATH), CLONE_NEWNET)` for the calling thread (`ip netns exec`'s join).
    public static func joinNetworkNamespace(_ path: String) throws(ReplicaError) {
        let raw = open(path, O_RDONLY | O_CLOEXEC)
        guard raw >= 0 else {
            let name = path.split(separator: "/").last.map(String.init) ?? path
            throw ReplicaError.current("open", [path], hint: Errno.current == .ENOENT
                                      ? "the network namespace is missing; make it with replica-net up \(name)" : nil)
        }
        let namespace = OwnedFD(adopting: raw)
        _ = try syscall("setns(CLONE_NEWNET)", path) { replica_setns(namespace.rawValue, replica_CLONE_NEWNET) }
    }
}
