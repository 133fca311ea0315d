import Glibc

extension OwnedFD {
    /// Reads a child's standard output and standard error to their ends at once (`poll(2)` on both),
    /// so a child that fills one pipe while the other is being read never blocks (reading one to its
    /// end first hangs once the child writes more than a pipe holds, 64 KiB, to the other). Each
    /// keeps at most its limit; what comes past it is read and dropped, so the child still finishes.
    public static func readBoth(_ output: borrowing OwnedFD, limit outputLimit: Int,
                                _ errors: borrowing OwnedFD, limit errorsLimit: Int) throws(ReplicaError) -> (output: [UInt8], errors: [UInt8]) {
        var fds = [pollfd(fd: output.rawValue, events: Int16(POLLIN), revents: 0), pollfd(fd: errors.rawValue, events: Int16(POLLIN), revents: 0)]
        var data: [[UInt8]] = [[], []]
        let limits = [outputLimit, errorsLimit]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while fds.contains(where: { $0.fd >= 0 }) {
            _ = try syscall("poll") { fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, 2, -1) } }
            for index in fds.indices where fds[index].fd >= 0 && fds[index].revents != 0 {
                let fd = fds[index].fd
                let n = try syscall("read") { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
                if n == 0 { fds[index].fd = -1; continue }   // poll skips a negative fd
                data[index].append(contentsOf: chunk[0..<min(n, max(0, limits[index] - data[index].count))])
            }
        }
        return (data[0], data[1])
    }
}
