extension SandboxPlan {
    /// The plan as unit-file lines for a drop-in, so systemd builds the same namespace itself:
    /// `ProtectSystem=`, `ProtectHome=`, `TemporaryFileSystem=`, `BindPaths=`, `BindReadOnlyPaths=`,
    /// `InaccessiblePaths=`, `ReadWritePaths=`, `ReadOnlyPaths=`, `RuntimeDirectory=` (and logs,
    /// cache), `NetworkNamespacePath=`. Paths with spaces are quoted as systemd's parser expects.
    public var systemdDirectives: [String] {
        var lines: [String] = []
        // Its own mount namespace, receiving the host's mounts and sending none back: what
        // replica-run makes (`unshare -m --propagation slave`), and what systemd-analyze rewards.
        lines.append("PrivateMounts=yes")
        if protectSystem != .no { lines.append("ProtectSystem=\(protectSystem.rawValue)") }
        if protectHome != .no { lines.append("ProtectHome=\(protectHome.rawValue)") }
        for tmp in temporaryDirectories { lines.append("TemporaryFileSystem=" + Self.quote("\(tmp.path):\(tmp.systemdOptions)")) }
        for bind in binds {
            let key = bind.readOnly ? "BindReadOnlyPaths" : "BindPaths"
            lines.append("\(key)=" + (bind.optional ? "-" : "") + Self.bindPath(bind.source) + ":" + Self.bindPath(bind.target)
                         + (bind.recursive ? "" : ":norbind"))
        }
        for path in inaccessiblePaths { lines.append("InaccessiblePaths=" + Self.quote(path)) }
        for path in hiddenPaths { lines.append("InaccessiblePaths=" + Self.quote("-" + path)) }
        for access in accessPaths {
            lines.append((access.writable ? "ReadWritePaths=" : "ReadOnlyPaths=") + Self.quote((access.optional ? "-" : "") + access.path))
        }
        for directory in serviceDirectories { lines.append("\(directory.kind.rawValue)=" + Self.quote(directory.name)) }
        lines += confinement.systemdDirectives
        if let networkNamespacePath { lines.append("NetworkNamespacePath=" + Self.quote(networkNamespacePath)) }
        return lines
    }

    /// A value as systemd reads it back: `%` doubled (systemd expands specifiers like `%h` in
    /// these settings; Replica's values mean what they say), then quoted with C escapes when it holds
    /// a space, quote or backslash (`ProfileWords.quote`).
    public static func quote(_ value: String) -> String {
        ProfileWords.quote(value.replacingAll("%", with: "%%"))
    }
}

extension SandboxPlan {
    /// One path of a `BindPaths=` or `BindReadOnlyPaths=` value as systemd splits it: `%` doubled,
    /// and `\`, `:`, quotes and blanks each escaped with a backslash. systemd splits the value at
    /// unquoted `:` and blanks and takes the character after a backslash as it is
    /// (`extract_first_word` with `EXTRACT_UNQUOTE`, no C unescaping), so a state path's
    /// `\x2d` stays `\x2d`, a `:` in a name stays in the name — where quoting the whole
    /// `SOURCE:TARGET` would make it one path that does not exist, skipped as optional.
    public static func bindPath(_ path: String) -> String {
        var escaped = ""
        for character in path.replacingAll("%", with: "%%") {
            if "\\: \t\"'".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}

extension TemporaryDirectory {
    /// The options of its `TemporaryFileSystem=` value: `mode=1777,size=16777216,nosuid,nodev`.
    public var systemdOptions: String {
        var options = ["mode=" + String(mode, radix: 8).leftPadded(4)]
        if let size { options.append("size=\(size)") }
        return (options + flags.words).joined(separator: ",")
    }
}

extension String {
    /// Zeros before the text up to `width` characters (`%02x`'s padding, after `String(_:radix:)`).
    public func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
