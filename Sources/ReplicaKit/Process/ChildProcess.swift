import CReplicaShim
import Glibc

/// A value a child process can send back to its parent as bytes.
public protocol ChildTransferable: Sendable {
    /// The value as the bytes the child writes to its pipe.
    var childBytes: [UInt8] { get }
    /// The value from the bytes the parent read; throws when they do not make one.
    init(childBytes: [UInt8]) throws(ReplicaError)
}

extension Array: ChildTransferable where Element == UInt8 {
    /// The bytes themselves.
    public var childBytes: [UInt8] { self }
    /// The bytes themselves.
    public init(childBytes: [UInt8]) { self = childBytes }
}

extension String: ChildTransferable {
    /// The UTF-8 bytes.
    public var childBytes: [UInt8] { Array(utf8) }
    /// The string of these UTF-8 bytes (invalid sequences replaced).
    public init(childBytes: [UInt8]) { self = String(decoding: childBytes, as: UTF8.self) }
}

extension Int: ChildTransferable {
    /// Its little-endian bytes.
    public var childBytes: [UInt8] { withUnsafeBytes(of: self.littleEndian) { Array($0) } }
    /// The integer of exactly `MemoryLayout<Int>.size` little-endian bytes.
    public init(childBytes: [UInt8]) throws(ReplicaError) {
        guard childBytes.count == MemoryLayout<Int>.size else {
            throw ReplicaError("child result", errno: .EINVAL, hint: "expected \(MemoryLayout<Int>.size) bytes")
        }
        self = Int(littleEndian: childBytes.withUnsafeBytes { $0.loadUnaligned(as: Int.self) })
    }
}

extension Bool: ChildTransferable {
    /// One byte, 1 or 0.
    public var childBytes: [UInt8] { [self ? 1 : 0] }
    /// True for a first byte of 1.
    public init(childBytes: [UInt8]) { self = childBytes.first == 1 }
}

/// Runs a closure in a forked child process and returns its result or its `ReplicaError`, so namespace
/// work (`unshare`, `setns`, mounts in a private namespace) never touches the caller.
///
/// The child is a `fork(2)` of a possibly multithreaded process: the closure should make system calls
/// on values prepared before the call, not start threads or take locks other threads may hold.
public enum ChildProcess {
    /// Forks, runs `body` in the child, and waits for it. The child gets SIGKILL if the parent dies,
    /// or if it runs longer than `timeout` (then the call fails with ETIMEDOUT).
    public static func run<Result: ChildTransferable>(
        timeout: Duration? = nil, _ body: () throws(ReplicaError) -> Result
    ) throws(ReplicaError) -> Result {
        var pipe: [Int32] = [-1, -1]
        _ = try syscall("pipe2") { replica_pipe_cloexec(&pipe) }
        let reader = OwnedFD(adopting: pipe[0])
        let writer = OwnedFD(adopting: pipe[1])
        let pid = try forkTied()
        if pid == 0 {
            let frame: [UInt8]
            do throws(ReplicaError) {
                frame = [0] + (try body()).childBytes
            } catch {
                frame = [1] + encode(error)
            }
            let ok = (try? writer.writeAll(frame)) != nil
            _exit(ok ? 0 : 126)
        }
        _ = consume writer
        let bytes: [UInt8]
        do throws(ReplicaError) {
            bytes = try readFrame(reader, pid: pid, timeout: timeout)
        } catch {
            kill(pid, SIGKILL)
            _ = try? ExitStatus.wait(for: pid)
            throw error
        }
        let status = try ExitStatus.wait(for: pid)
        guard let tag = bytes.first else {
            throw ReplicaError("child process", ["\(pid)"], errno: .ECHILD, hint: "\(status) without a result")
        }
        if tag == 1 { throw decode(Array(bytes.dropFirst())) }
        return try Result(childBytes: Array(bytes.dropFirst()))
    }

    /// `fork(2)` for a child that must not outlive this process: in the child (0 returned), SIGKILL
    /// comes when the parent dies (`PR_SET_PDEATHSIG`), and it exits at once if the parent is gone
    /// already.
    static func forkTied() throws(ReplicaError) -> pid_t {
        let parent = getpid()
        let pid = fork()
        if pid < 0 { throw ReplicaError.current("fork") }
        if pid == 0 {
            _ = replica_set_parent_death_signal(SIGKILL)
            if getppid() != parent { _exit(127) }
        }
        return pid
    }

    /// Reads until EOF, giving up after `timeout`.
    private static func readFrame(_ fd: borrowing OwnedFD, pid: pid_t, timeout: Duration?) throws(ReplicaError) -> [UInt8] {
        guard let timeout else { return try fd.readAll(name: "child \(pid)") }
        let deadline = ContinuousClock.now + timeout
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero {
                throw ReplicaError("child process", ["\(pid)"], errno: .ETIMEDOUT, hint: "no result within \(timeout)")
            }
            var poller = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            let ms = Int32(min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1, 60_000))
            if poll(&poller, 1, ms) <= 0 { continue }
            let raw = fd.rawValue
            let n = try syscall("read", "child \(pid)") {
                chunk.withUnsafeMutableBytes { Glibc.read(raw, $0.baseAddress, $0.count) }
            }
            if n == 0 { return data }
            data.append(contentsOf: chunk[0..<n])
        }
    }

    /// errno (4 bytes, little endian), then reason, call, hint flag + hint, location flag (and file,
    /// line, key flag + key), and paths, each NUL-terminated.
    static func encode(_ error: ReplicaError) -> [UInt8] {
        var out = withUnsafeBytes(of: error.errno.rawValue.littleEndian) { Array($0) }
        let location = error.location.map { ["1", $0.file, String($0.line), $0.key.map { "1" + $0 } ?? "0"] } ?? ["0"]
        for field in [error.reason.rawValue, error.operation, error.hint.map { "1" + $0 } ?? "0"] + location + error.objects {
            out += Array(field.utf8) + [0]
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> ReplicaError {
        guard bytes.count >= 4 else { return ReplicaError("child process", errno: .EIO, hint: "truncated error") }
        let errno = Int32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
        var fields = bytes.dropFirst(4).split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }[...]
        guard fields.count >= 4 else { return ReplicaError("child process", errno: Errno(rawValue: errno)) }
        let (reason, operation, hintField) = (fields.popFirst()!, fields.popFirst()!, fields.popFirst()!)
        let hint = hintField.hasPrefix("1") ? String(hintField.dropFirst()) : nil
        var location: ReplicaError.Location?
        if fields.popFirst() == "1", fields.count >= 3 {
            let (file, line, key) = (fields.popFirst()!, fields.popFirst()!, fields.popFirst()!)
            location = ReplicaError.Location(file: file, line: Int(line) ?? 0, key: key.hasPrefix("1") ? String(key.dropFirst()) : nil)
        }
        let paths = Array(fields.dropLast())  // the last NUL leaves one empty field
        return ReplicaError(operation, paths, errno: Errno(rawValue: errno), hint: hint, reason: ReplicaError.Reason(rawValue: reason),
                            location: location)
    }
}
