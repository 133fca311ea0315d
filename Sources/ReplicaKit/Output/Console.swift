import Glibc

/// Writes a line to standard error (`write(2, …)`), for tools' error messages.
public func printError(_ message: String) {
    let bytes = Array((message.hasSuffix("\n") ? message : message + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { return }
        offset += n
    }
}
