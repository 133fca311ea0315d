extension String {
    /// Every `target` replaced by `replacement` (Foundation's `replacingOccurrences`, for one character).
    public func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
