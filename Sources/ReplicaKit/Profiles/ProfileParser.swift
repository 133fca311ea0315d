/// The syntax of one profile file, as systemd reads unit files: `[Section]` headers, `Key=Value`
/// lines, `#` and `;` comments, a trailing backslash continuing a line, whitespace around keys and
/// values ignored.
public enum ProfileParser {
    /// Largest profile file accepted.
    public static let maxFileSize = 1 << 20

    public static func parse(_ text: String, file: String) throws(ProfileError) -> [ProfileSetting] {
        var settings: [ProfileSetting] = []
        var section: String?
        var pending: (text: String, line: Int)?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var line = String(raw)
            if line.hasSuffix("\r") { line.removeLast() }
            if let start = pending {
                if line.hasSuffix("\\") {
                    pending = (start.text + " " + line.dropLast().trimmed, start.line)
                    continue
                }
                line = start.text + " " + line.trimmed
                pending = nil
                try take(line, start.line)
                continue
            }
            let trimmed = line.trimmed
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            if trimmed.hasSuffix("\\") {
                pending = (String(trimmed.dropLast()).trimmed, number)
                continue
            }
            try take(trimmed, number)
        }
        if let start = pending { try take(start.text, start.line) }
        return settings

        func take(_ line: String, _ number: Int) throws(ProfileError) {
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else {
                    throw ProfileError(file: file, line: number, key: nil, reason: "a section header is [Name]")
                }
                section = String(line.dropFirst().dropLast())
                return
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw ProfileError(file: file, line: number, key: nil, reason: "expected Key=Value or [Section]")
            }
            let key = String(line[..<equals]).trimmed
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw ProfileError(file: file, line: number, key: key.isEmpty ? nil : key,
                                   reason: "a key is letters, digits, - and _")
            }
            guard let section else {
                throw ProfileError(file: file, line: number, key: key, reason: "appears before any [Section]")
            }
            settings.append(ProfileSetting(section: section, key: key, value: String(line[line.index(after: equals)...]).trimmed,
                                           file: file, line: number))
        }
    }
}

extension StringProtocol {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}
