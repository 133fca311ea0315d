import Glibc
import ReplicaKit
import ReplicaStore

extension Machines.Seed {
    /// The public keys in the file at `path`, as `authorized_keys` holds them: one a line, blank
    /// lines and `#` comments skipped. The file is opened without following a symlink and must be a
    /// regular file of at most 64 KiB (a FIFO or a device would block or never end); a line with a
    /// control character is refused, since each line becomes a line of the guest's credentials. The
    /// one reader of key files: `--ssh-key` and a set's `SSHKey=` alike.
    public static func keys(in path: String) throws(ReplicaError) -> [String] {
        let fd = try OwnedFD.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        guard try fd.status().kind == .regular else {
            throw ReplicaError("read SSH keys", [path], errno: .EINVAL, hint: "not a regular file", reason: .refused)
        }
        // Split at LF bytes (Swift's String takes CRLF as one character); a CRLF file reads as LF.
        let lines = try fd.readAll(limit: 64 << 10, name: path).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { String(decoding: $0.last == UInt8(ascii: "\r") ? $0.dropLast() : $0, as: UTF8.self).trimmed }
        var keys: [String] = []
        for line in lines where !line.isEmpty && !line.hasPrefix("#") {
            guard !ControlCharacters.appear(in: line) else {
                throw ReplicaError("read SSH keys", [path], errno: .EINVAL, hint: "a line holds a control character", reason: .refused)
            }
            keys.append(line)
        }
        return keys
    }
}
