import Glibc
import ReplicaKit

/// An ext2/3/4 file system inside a disk image, read and edited with `debugfs` (e2fsprogs) at a
/// byte offset (a partition's start) — never mounted: the host's kernel never parses a file system
/// a guest or an image's maker could have crafted. debugfs parses it instead, so debugfs runs in a
/// `ParserSandbox` lent the image and its `.guest` work folder, nothing else of the store.
struct GuestFileSystem {
    /// The image file, in `folder`.
    let image: String
    /// Where the file system starts in it, in bytes.
    let offset: UInt64

    /// The folder holding the image (a template's staging subvolume).
    var folder: String { String(image[..<(image.lastIndex(of: "/") ?? image.startIndex)]) }

    /// The work folder debugfs may write in (what it copies out, the files it writes into the image).
    var workFolder: String { "\(folder)/.guest" }

    /// debugfs's sandbox: the image and the work folder lent, nothing else.
    var sandbox: ParserSandbox { ParserSandbox(lent: [image, workFolder]) }

    /// The image as debugfs opens it in its sandbox: `/tmp/guest/NAME?offset=N` (unix_io's option).
    var device: String { sandbox.inside(image) + (offset == 0 ? "" : "?offset=\(offset)") }

    /// A path in the work folder as debugfs sees it.
    func inside(_ path: String) -> String { sandbox.inside(path) }

    /// Runs `body` with a new work folder, both it and the image lent to debugfs's sandbox; then the
    /// image is root's again and the work folder is gone, however `body` ends.
    func lending<T>(_ body: () throws(ReplicaError) -> T) throws(ReplicaError) -> T {
        let work = workFolder
        _ = try syscall("mkdir", work) { mkdir(work, 0o700) }
        defer { _ = try? Command.check(["rm", "-rf", "--one-file-system", "--", work]) }
        return try sandbox.lending(body)
    }

    /// `debugfs ARGUMENTS` in its sandbox; fails when it did not run.
    private func debugfs(_ arguments: [String]) throws(ReplicaError) -> String {
        try sandbox.run(["debugfs"] + arguments)
    }

    /// `debugfs -R REQUEST`: what it printed, and whether it ran (it exits 0 even when a request fails).
    func request(_ request: String) throws(ReplicaError) -> String {
        try debugfs(["-R", request, device])
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

    /// Copies the regular file `path` out to `target` in `folder` (`dump` into the work folder,
    /// then moved there and made root's).
    func copy(_ path: String, to target: String) throws(ReplicaError) {
        let name = String(target[target.index(after: target.lastIndex(of: "/") ?? target.startIndex)...])
        let copied = "\(workFolder)/\(name)"
        _ = try request("dump \(path) \(inside(copied))")
        guard access(copied, F_OK) == 0 else {
            throw ReplicaError("debugfs", [image, path], errno: .ENOENT, hint: "could not copy it out of the guest's file system")
        }
        _ = try syscall("lchown", copied) { lchown(copied, 0, 0) }
        _ = try syscall("rename", copied) { rename(copied, target) }
    }

    /// Runs the edits in `script` (one debugfs request per line, its host paths in `folder`) with
    /// `debugfs -w -f`. debugfs goes on past a request that fails (a file that is not there to
    /// remove): the caller checks what must be there after.
    func edit(script: String) throws(ReplicaError) {
        _ = try debugfs(["-w", "-f", inside(script), device])
    }
}
