import Glibc

extension SandboxMounter {
    /// `replica-run`'s core: enters a private mount namespace, applies the plan, and replaces this
    /// process with `command` (`execvp(3)`), which inherits the namespace. Returns only by throwing:
    /// if anything fails, the command never runs, sandboxed or not.
    public static func exec(_ plan: SandboxPlan, command: [String], method: MountMethod = .automatic) throws(SystemError) -> Never {
        guard let program = command.first else {
            throw SystemError("execvp", [], errno: .EINVAL, hint: "no command given")
        }
        try enterPrivateMountNamespace(method: method)
        try apply(plan, method: method)
        let argv = command.map { strdup($0) } + [nil]
        execvp(program, argv)
        let error = SystemError.current("execvp", [program], hint: Errno.current == .ENOENT ? "not found in PATH" : nil)
        argv.forEach { free($0) }
        throw error
    }
}
