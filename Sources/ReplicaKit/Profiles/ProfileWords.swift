/// Splitting a value into words the way systemd does for list settings (`extract_first_word` with
/// `EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE`): words separated by spaces or tabs, `"…"` and `'…'` quote
/// a word with spaces, and C escapes (`\n`, `\t`, `\\`, `\"`, `\'`, `\s`, `\xNN`, `\NNN`, `\uNNNN`)
/// are decoded. A word that decodes to a control character is refused: it would end a line of the
/// drop-in systemd reads.
public enum ProfileWords {
    /// The words of `setting`'s value, or an error naming its file, line and key.
    public static func split(_ setting: ProfileSetting) throws(ProfileError) -> [String] {
        do throws(ReplicaError) { return try split(setting.value) } catch { throw ProfileError(setting, error.rule) }
    }

    /// A value that does not split into words: `why` names the rule.
    static func refused(_ why: String) -> ReplicaError {
        ReplicaError("split words", errno: .EINVAL, hint: why, reason: .refused)
    }

    /// A systemd list that a leading `~` inverts (`SystemCallFilter=~@mount`,
    /// `CapabilityBoundingSet=~CAP_SYS_ADMIN`): whether it is inverted, and its words.
    public static func splitInvertible(_ setting: ProfileSetting) throws(ProfileError) -> (invert: Bool, words: [String]) {
        let invert = setting.value.hasPrefix("~")
        var rest = setting
        if invert { rest.value.removeFirst() }
        return (invert, try split(rest))
    }

    static func split(_ value: String) throws(ReplicaError) -> [String] {
        var words: [String] = []
        var current: [Unicode.Scalar] = []
        var inWord = false
        var quote: Unicode.Scalar?
        var scalars = value.unicodeScalars[...]
        while let c = scalars.popFirst() {
            if c == "\\" {
                guard let decoded = try unescape(&scalars) else { throw refused("a backslash ends the value") }
                current.append(decoded)
                inWord = true
            } else if let open = quote {
                if c == open { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
                inWord = true
            } else if c == " " || c == "\t" {
                if inWord { words.append(String(String.UnicodeScalarView(current))); current = []; inWord = false }
            } else {
                current.append(c)
                inWord = true
            }
        }
        if let quote { throw refused("a \(quote == "\"" ? "double" : "single") quote is not closed") }
        if inWord { words.append(String(String.UnicodeScalarView(current))) }
        for word in words where ControlCharacters.appear(in: word) {
            throw refused("a word decodes to a control character; systemd would end the line there")
        }
        return words
    }

    /// The character after a backslash, decoded (`cunescape_one`); nil at the end of the value.
    private static func unescape(_ rest: inout Substring.UnicodeScalarView) throws(ReplicaError) -> Unicode.Scalar? {
        guard let c = rest.popFirst() else { return nil }
        func digits(_ count: Int, radix: Int, first: Unicode.Scalar? = nil) throws(ReplicaError) -> Unicode.Scalar {
            let taken = Array(rest.prefix(count))
            let text = String(String.UnicodeScalarView((first.map { [$0] } ?? []) + taken))
            guard taken.count == count, let value = UInt32(text, radix: radix),
                  let scalar = Unicode.Scalar(value), value != 0 else {
                throw refused("\\\(c) takes \(count) \(radix == 16 ? "hex" : "octal") digits naming a character other than NUL")
            }
            rest.removeFirst(count)
            return scalar
        }
        switch c {
        case "a": return "\u{07}"
        case "b": return "\u{08}"
        case "f": return "\u{0C}"
        case "n": return "\n"
        case "r": return "\r"
        case "t": return "\t"
        case "v": return "\u{0B}"
        case "s": return " "
        case "\\", "\"", "'", " ": return c
        case "x": return try digits(2, radix: 16)
        case "u": return try digits(4, radix: 16)
        case "U": return try digits(8, radix: 16)
        case "0"..."7": return try digits(2, radix: 8, first: c)
        default: throw refused("\\\(c) is not an escape systemd knows (\\n \\t \\\\ \\\" \\' \\s \\xNN \\NNN \\uNNNN)")
        }
    }

    /// C0 controls and DEL: what a value may never hold, raw or decoded.

    /// A word as systemd reads it back: quoted with C escapes when it holds a space, quote or
    /// backslash; as it is otherwise. `split(quote(w)) == [w]` for every word without control characters.
    public static func quote(_ word: String) -> String {
        guard word.isEmpty || word.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" || $0 == "\\" }) else {
            return word
        }
        var out = "\""
        for c in word {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out.append(c)
            }
        }
        return out + "\""
    }
}
