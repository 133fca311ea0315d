import Glibc
import ReplicaKit

/// Where a tool that parses what someone else made runs: a guest's file system (`debugfs`), a
/// downloaded disk image (`qemu-img convert`). If the input was crafted to take the parser over,
/// it gets this: `nobody`, no capability, `Hardening=service` with no address family but AF_UNIX,
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
        var plan: SandboxPlan
        do throws(ProfileError) {
            plan = try SandboxPlan(profile: Profile(unit: "parser", files: [], settings: try ProfileParser.parse(text, file: "parser")))
        } catch {
            throw ReplicaError("sandbox", lent, errno: .EINVAL, hint: "\(error)")
        }
        plan.binds += lent.map { Bind($0, to: inside($0), readOnly: false) }
        return plan
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
        let result = try SandboxMounter.run(try plan(), command: command)
        guard result.status.isSuccess else {
            throw ReplicaError(command[0], lent + Array(command.dropFirst()), errno: .EIO, detail: result.output.trimmed)
        }
        return result.output
    }
}
