/// FNV-1a, a small hash that is the same in every process and build (Swift's `Hasher` is seeded
/// per process): for names derived from other names and for cache keys, never for security.
public enum FNV1a {
    /// The 32-bit FNV-1a hash of the text's UTF-8 bytes.
    public static func hash32(_ text: String) -> UInt32 {
        text.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
    }

    /// The 64-bit FNV-1a hash of the text's UTF-8 bytes.
    public static func hash64(_ text: String) -> UInt64 {
        text.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}
