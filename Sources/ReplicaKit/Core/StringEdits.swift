// Small String edits the package uses everywhere, without Foundation: replacing a character, trimming.
extension String {
    /// Every `target` replaced by `replacement` (Foundation's `replacingOccurrences`, for one character).
    public func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs, carriage returns and newlines (systemd's
    /// `strstrip()`). On UTF-8 bytes: no grapheme breaking, and a CRLF's `\r` goes too.
    public var trimmed: String {
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        let bytes = Substring(self).utf8
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(Substring(bytes[first...last]))
    }
}
