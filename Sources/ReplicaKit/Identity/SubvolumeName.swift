/// The name of a subvolume at the top of a store: what btrfs takes as one name (1 to 255 bytes, no
/// `/` or NUL, not `.` or `..`), less what the store's layout keeps for itself — names starting with
/// `.` (staging: `.migrating-web`), its folders (`snapshots`, `machines`, `templates`, `nomad`), and
/// names ending in `.lock` (each subvolume's lock file, `snapshots/NAME.lock`, sits beside its
/// snapshot folder `snapshots/NAME/`: a subvolume `web.lock` would take `web`'s lock file's name).
/// A service's state is named so.
public struct SubvolumeName: Identity {
    public static let kind = "subvolume"
    /// Longest name btrfs takes (`BTRFS_VOL_NAME_MAX`).
    public static let maxLength = 255
    /// The folders at the top of a store.
    public static let storeFolders = ["snapshots", "machines", "templates", "nomad"]
    /// The ending of each subvolume's lock file (`snapshots/web.lock`).
    public static let lockSuffix = ".lock"
    /// How snapshot runs name a machine's root (`replica-machine@web1`, the state of
    /// `replica-machine@web1.service`): kept for that unit alone.
    public static let machineRootPrefix = "replica-machine@"

    public let rawValue: String

    /// Refused unless btrfs takes it and the store's layout does not keep it.
    public init(_ name: String) throws(ReplicaError) {
        try Self.requireBtrfsName(name)
        let why: String? =
            name.hasPrefix(".") ? "names starting with '.' are the store's staging"
            : Self.storeFolders.contains(name) ? "\"\(name)\" is one of the store's folders (\(Self.storeFolders.joined(separator: ", ")))"
            : name.hasSuffix(Self.lockSuffix) ? "names ending in \(Self.lockSuffix) are the store's lock files"
            : nil
        if let why { throw Self.refusal(name, why + "; choose another name") }
        rawValue = name
    }

    /// What btrfs alone takes as a subvolume name in any folder (`btrfs subvolume create`): the rule
    /// for names inside the store's own folders, staging names included.
    public static func requireBtrfsName(_ name: String) throws(ReplicaError) {
        let why: String? =
            name.isEmpty ? "a subvolume name cannot be empty"
            : (name == "." || name == "..") ? "\"\(name)\" is not a name"
            : name.contains("/") ? "a name is one path component and cannot contain \"/\""
            : name.utf8.contains(0) ? "a name cannot contain NUL"
            : name.utf8.count > maxLength ? "\(name.utf8.count) bytes; btrfs allows \(maxLength)"
            : nil
        if let why { throw refusal(name, why) }
    }
}
