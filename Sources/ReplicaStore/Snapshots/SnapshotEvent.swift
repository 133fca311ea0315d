/// The kinds of event snapshot work logs, each with a fixed journal `MESSAGE_ID`:
/// `journalctl MESSAGE_ID=5eebad6a1130448b9897db83e533d165` lists every snapshot taken.
public enum SnapshotEvent: String, CaseIterable, Sendable {
    /// A snapshot was taken.
    case created
    /// A snapshot the policy no longer keeps was deleted.
    case deleted
    /// A snapshot was deleted to meet the free-space floor.
    case deletedForSpace
    /// A prune finished: how many were kept and deleted.
    case pruned
    /// A snapshot was sent to a replication target.
    case sent
    /// A step failed.
    case failed
    /// Another run held the subvolume's lock.
    case lockBusy
    /// The free-space floor could not be met.
    case spaceShort

    /// A 128-bit id, made once with `systemd-id128 new` and never changed.
    public var messageID: String {
        switch self {
        case .created: "5eebad6a1130448b9897db83e533d165"
        case .deleted: "684d5666ba014c73b465ff5b7fa8b784"
        case .deletedForSpace: "8a3ed0ed9c5c4e098b876e284144ade3"
        case .pruned: "49cc3e55aa8d449cbad7c6b6def03ee2"
        case .sent: "14f5fcdbfdca45d49b65c59b1bd3ea6a"
        case .failed: "5a91a2a089834d2eb6af347aeacfbcf5"
        case .lockBusy: "2df9d99aafb048a28366dd4099aec5f4"
        case .spaceShort: "24c58b9cb84c40648d97a628405a6c6c"
        }
    }
}
