import Glibc
import ReplicaKit

/// An ext2/3/4 file system inside a disk image, read and edited with `debugfs` (e2fsprogs) at a
/// byte offset (a partition's start) — never mounted: the host's kernel never parses a file system
/// a guest or an image's maker could have crafted.
struct GuestFileSystem {
    /// The image file.
    let image: String
    /// Where the file system starts in it, in bytes.
    let offset: UInt64

    /// The image as debugfs opens it: `IMAGE?offset=N` (unix_io's option).
    var device: String { offset == 0 ? image : "\(image)?offset=\(offset)" }

    /// `debugfs -R REQUEST`: what it printed, and whether it ran (it exits 0 even when a request fails).
    func request(_ request: String) throws(ReplicaError) -> String {
        let result = try Command.run(["debugfs", "-R", request, device])
        guard result.status.isSuccess else { throw ReplicaError("debugfs", [device, request], errno: .EIO, detail: result.output.trimmed) }
        return result.output
    }

    /// Whether it is an ext file system debugfs can open (its superblock's magic).
    var isExtFileSystem: Bool {
        guard let output = try? request("stats") else { return false }
        return output.contains("Filesystem magic number:  0xEF53")
    }

    /// Its UUID (`Filesystem UUID:` of `debugfs -R stats`), as the kernel's `root=UUID=` takes it.
    func uuid() throws(ReplicaError) -> String? {
        try request("stats").split(separator: "\n").first { $0.hasPrefix("Filesystem UUID:") }
            .map { String($0.dropFirst("Filesystem UUID:".count)).trimmed }
    }

    /// Whether `path` names something (links on the way followed, as `debugfs` resolves them).
    func exists(_ path: String) -> Bool {
        guard let output = try? request("stat \(path)") else { return false }
        return output.contains("Inode:") && !output.contains("not found")
    }

    /// The names in folder `path` (`ls -p`: `/INODE/MODE/UID/GID/NAME/SIZE/` per entry).
    func names(in path: String) throws(ReplicaError) -> [String] {
        try request("ls -p \(path)").split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "/", omittingEmptySubsequences: false)
            guard fields.count >= 7, let name = fields.dropFirst(5).first, name != ".", name != ".." else { return nil }
            return String(name)
        }
    }

    /// Copies the regular file `path` out to `target` (`dump`).
    func copy(_ path: String, to target: String) throws(ReplicaError) {
        _ = try request("dump \(path) \(target)")
        guard access(target, F_OK) == 0 else {
            throw ReplicaError("debugfs", [device, path], errno: .ENOENT, hint: "could not copy it out of the guest's file system")
        }
    }

    /// Runs the edits in `script` (one debugfs request per line) with `debugfs -w -f`. debugfs goes
    /// on past a request that fails (a file that is not there to remove): the caller checks what
    /// must be there after.
    func edit(script: String) throws(ReplicaError) {
        try Command.check(["debugfs", "-w", "-f", script, device])
    }
}
