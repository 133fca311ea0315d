/// systemd's escaping of a path into a unit name (`systemd-escape --path`, `unit_name_path_escape`):
/// surrounding and doubled `/` dropped, `/` becomes `-`, ASCII letters, digits, `:`, `_` and `.`
/// stay (a leading `.` does not), every other byte becomes `\xNN`; the root is `-`.
public enum SystemdEscape {
    /// `systemd-escape --path PATH`: `/var/lib/web` → `var-lib-web`.
    public static func path(_ path: String) -> String {
        let trimmed = path.split(separator: "/").joined(separator: "/")
        guard !trimmed.isEmpty else { return "-" }
        var out = ""
        for (index, byte) in trimmed.utf8.enumerated() {
            switch byte {
            case UInt8(ascii: "/"): out += "-"
            case UInt8(ascii: ".") where index > 0, UInt8(ascii: ":"), UInt8(ascii: "_"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case _ where IdentityText.isLetterOrDigit(byte): out.unicodeScalars.append(Unicode.Scalar(byte))
            default: out += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
            }
        }
        return out
    }

    /// `systemd-escape --path --suffix=mount PATH`: the mount unit of `path`.
    public static func mountUnit(for path: String) -> String { self.path(path) + ".mount" }
}
