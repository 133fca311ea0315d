/// The characters that end a line or move the cursor somewhere Replica's text goes — a profile, a
/// unit file, a record, a log line, a terminal: the C0 and C1 control characters, DEL, and the
/// Unicode line and paragraph separators (U+2028, U+2029). Names and values holding one are
/// refused, and messages show each as `?`, so no input can forge a line.
public enum ControlCharacters {
    /// Whether `scalar` is one of them.
    public static func contains(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }

    /// Whether `text` holds one.
    public static func appear(in text: String) -> Bool { text.unicodeScalars.contains(where: contains) }

    /// `text` with each of them shown as `?`.
    public static func masked(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { contains($0) ? "?" : $0 }))
    }
}
