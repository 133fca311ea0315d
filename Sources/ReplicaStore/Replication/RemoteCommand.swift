import ReplicaKit

/// The command line a sender runs on the other host through ssh, and how the other host's forced
/// command (`replica-snap serve`) reads it back from `SSH_ORIGINAL_COMMAND`: POSIX shell words.
public enum RemoteCommand {
    /// Each word in single quotes, a `'` inside written `'\''`: a POSIX shell reads back the same words.
    public static func quote(_ words: [String]) -> String {
        words.map { "'" + $0.replacing("'", with: "'\\''") + "'" }.joined(separator: " ")
    }

    /// The words of a command line as a POSIX shell splits them (`'…'`, `"…"`, `\`), expanding
    /// nothing: refused when it holds, outside quotes, what a shell would expand or run
    /// (`$ \` ; & | < > ( ) * ? [ ~ #`), or a control character anywhere.
    public static func split(_ line: String) throws(ReplicaError) -> [String] {
        func refuse(_ why: String) -> ReplicaError {
            ReplicaError("ssh command", [line], errno: .EINVAL, hint: why + "; a sender runs replica-snap receive with each word quoted", reason: .refused)
        }
        var words: [String] = []
        var current = ""
        var inWord = false
        var characters = line[...]
        while let c = characters.popFirst() {
            guard !(c.isASCII && c.asciiValue! < 0x20 && c != "\t") && c != "\u{7F}" else { throw refuse("it holds a control character") }
            switch c {
            case " ", "\t":
                if inWord { words.append(current); current = ""; inWord = false }
            case "'":
                guard let close = characters.firstIndex(of: "'") else { throw refuse("a single quote is not closed") }
                current += characters[..<close]
                characters = characters[characters.index(after: close)...]
                inWord = true
            case "\"":
                var closed = false
                while let d = characters.popFirst() {
                    if d == "\"" { closed = true; break }
                    if d == "\\", let e = characters.first, "$`\"\\".contains(e) { current.append(characters.removeFirst()); continue }
                    if d == "$" || d == "`" { throw refuse("it holds \(d) inside double quotes") }
                    current.append(d)
                }
                guard closed else { throw refuse("a double quote is not closed") }
                inWord = true
            case "\\":
                guard let next = characters.popFirst() else { throw refuse("a backslash ends it") }
                current.append(next)
                inWord = true
            default:
                guard !"$`;&|<>()*?[~#".contains(c) else { throw refuse("it holds \(c) outside quotes") }
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
