/// The grammar of one profile file: systemd's unit-file syntax exactly (`config_parse` in
/// systemd's conf-parser.c), made strict where systemd is lenient in ways that hurt:
/// - `[Section]` headers and `Key=Value` lines; whitespace around keys and values is dropped;
/// - comments are lines whose first non-blank character is `#` or `;` — a `#` after a value is
///   part of the value (and then fails that key's check, with a hint);
/// - a line ending in an unescaped backslash continues on the next one, the backslash becoming a
///   space; comment lines are skipped whole, inside a continuation or not (a backslash ending a
///   comment continues nothing, as in systemd);
/// - a UTF-8 byte-order mark at the start is skipped;
/// - refused, with the line: invalid UTF-8 (never replaced), CR, NUL and every other control
///   character but tab (systemd ends a line at CR and NUL, so one could smuggle a directive into a
///   drop-in), unknown sections and keys (with the nearest known name), and values that do not
///   fit their key's kind (`ProfileKeys`).
public enum ProfileParser {
    /// Largest profile file accepted.
    public static let maxFileSize = 1 << 20

    /// Parses a profile's text (`file` names it in errors) with the sections and keys of `grammar`.
    public static func parse(_ text: String, file: String,
                             grammar: [String: [String: ProfileKeys.Key]] = ProfileKeys.sections) throws(ProfileError) -> [ProfileSetting] {
        try parse(Array(text.utf8), file: file, grammar: grammar)
    }

    /// Parses a profile's bytes, refusing invalid UTF-8 and control characters (`file` names it in errors).
    public static func parse(_ bytes: [UInt8], file: String,
                             grammar: [String: [String: ProfileKeys.Key]] = ProfileKeys.sections) throws(ProfileError) -> [ProfileSetting] {
        guard bytes.count <= maxFileSize else {
            throw ProfileError(file: file, line: 0, key: nil, reason: "larger than \(maxFileSize) bytes")
        }
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        var settings: [ProfileSetting] = []
        var section: String?
        var continuation: (text: String, line: Int)?
        var number = 0
        for raw in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            if let bad = raw.first(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                let name = bad == 0x0D ? "a carriage return (CR)" : bad == 0 ? "a NUL byte" : "control character 0x\(String(bad, radix: 16))"
                throw ProfileError(file: file, line: number, key: nil,
                                   reason: "\(name): systemd ends a line there, so it is refused; save the file with plain \\n line ends")
            }
            guard let line = String(validating: raw, as: UTF8.self) else {
                throw ProfileError(file: file, line: number, key: nil, reason: "not valid UTF-8; profiles are UTF-8 text")
            }
            if let bad = line.unicodeScalars.first(where: { $0 != "\t" && ControlCharacters.contains($0) }) {
                throw ProfileError(file: file, line: number, key: nil,
                                   reason: "control character U+\(String(bad.value, radix: 16, uppercase: true)): a log or terminal "
                                       + "ends a line there, so it is refused")
            }
            // A comment line is skipped whole, inside a continuation or not: as systemd does, a
            // trailing backslash on it continues nothing.
            if isComment(line.trimmed) { continue }
            let joined = (continuation?.text ?? "") + line
            let start = continuation?.line ?? number
            if endsWithEscape(joined) {
                continuation = (String(joined.dropLast()) + " ", start)
                continue
            }
            continuation = nil
            try take(joined, start)
        }
        if let pending = continuation { try take(pending.text, pending.line) }
        return settings

        func take(_ text: String, _ number: Int) throws(ProfileError) {
            let line = text.trimmed
            if line.isEmpty || isComment(line) { return }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else {
                    throw ProfileError(file: file, line: number, key: nil, reason: "a section header is [Name]")
                }
                let name = String(line.dropFirst().dropLast())
                guard grammar[name] != nil else {
                    throw ProfileError(file: file, line: number, key: nil, reason: ProfileKeys.unknownSection(name, in: grammar))
                }
                section = name
                return
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw ProfileError(file: file, line: number, key: nil, reason: "expected Key=Value or [Section]")
            }
            let key = String(line[..<equals]).trimmed
            guard !key.isEmpty, key.utf8.allSatisfy({ IdentityText.isLetterOrDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
                throw ProfileError(file: file, line: number, key: key.isEmpty ? nil : key,
                                   reason: "a key is letters, digits, - and _")
            }
            guard let section else {
                throw ProfileError(file: file, line: number, key: key, reason: "appears before any [Section]")
            }
            let setting = ProfileSetting(section: section, key: key, value: String(line[line.index(after: equals)...]).trimmed,
                                         file: file, line: number)
            try ProfileKeys.validate(setting, in: grammar)
            settings.append(setting)
        }
    }

    static func isComment(_ trimmed: String) -> Bool { trimmed.hasPrefix("#") || trimmed.hasPrefix(";") }

    /// An odd number of backslashes at the end: the last one escapes the line end.
    static func endsWithEscape(_ line: String) -> Bool {
        line.utf8.reversed().prefix(while: { $0 == UInt8(ascii: "\\") }).count % 2 == 1
    }

    /// The settings written back as a profile file that parses to the same settings: one section
    /// header whenever the section changes, one `Key=Value` line each.
    public static func render(_ settings: [ProfileSetting]) -> String {
        var out = ""
        var section: String?
        for setting in settings {
            if setting.section != section {
                out += (section == nil ? "" : "\n") + "[\(setting.section)]\n"
                section = setting.section
            }
            out += "\(setting.key)=\(setting.value)\n"
        }
        return out
    }
}
