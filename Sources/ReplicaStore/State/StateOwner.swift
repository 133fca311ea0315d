import Glibc
import ReplicaKit

/// Who a state subvolume belongs to: the unit and the state directory it holds, recorded on the
/// subvolume (`user.replica.owner`, a `Record`: `unit=UNIT` and `path=PATH` lines) when it is made;
/// the "UNIT PATH" form of Replica 0.7 and before is still read. Prepare, cleanup and rollback act
/// only on subvolumes their unit owns, never on a name alone: a profile that names another
/// service's subvolume is refused, and so is one whose naming changed after the state moved.
public struct StateOwner: Equatable, Sendable, CustomStringConvertible {
    /// The unit (`web.service`).
    public var unit: String
    /// The state directory (`/var/lib/web`).
    public var path: String

    /// The owner `unit`, for its state directory `path`.
    public init(unit: String, path: String) { (self.unit, self.path) = (unit, path) }

    /// The extended attribute (`getfattr -n user.replica.owner`).
    public static let attribute = "user.replica.owner"

    public var description: String { "\(unit) \(path)" }

    /// The attribute's value: `unit=UNIT` and `path=PATH` lines.
    public var encoded: String {
        get throws(ReplicaError) {
            var record = Record()
            try record.append("unit", unit)
            try record.append("path", path)
            return record.encoded
        }
    }

    /// The owner a recorded value names: a record, or 0.7's "UNIT PATH"; nil for neither.
    public init?(recorded: String) {
        if let record = try? Record(decoding: recorded, source: Self.attribute), let unit = record.value("unit"), let path = record.value("path") {
            (self.unit, self.path) = (unit, path)
            return
        }
        let parts = recorded.split(separator: " ", maxSplits: 1).map(String.init)
        guard parts.count == 2, !recorded.contains("\n") else { return nil }
        (unit, path) = (parts[0], parts[1])
    }

    /// The owner recorded on a subvolume, or nil.
    public static func of(_ subvolume: borrowing OwnedFD) -> StateOwner? {
        Btrfs.attribute(subvolume, attribute).flatMap(StateOwner.init(recorded:))
    }

    /// Records this owner on a subvolume.
    func record(on subvolume: borrowing OwnedFD, path: String) throws(ReplicaError) {
        try Btrfs.setAttribute(subvolume, Self.attribute, try encoded, path: path)
    }

    /// Refuses subvolume `name` unless this owner's: another unit's state is never touched.
    func requireOwns(_ name: String, in store: borrowing Store) throws(ReplicaError) {
        let subvolume = try store.directory(name)
        guard let recorded = StateOwner.of(subvolume) else {
            throw ReplicaError("state owner", ["\(store.path)/\(name)"], errno: .EPERM,
                             hint: "records no owning unit, so it is not touched for \(unit); if it is \(unit)'s state of \(path), "
                                 + "record that: setfattr -n \(Self.attribute) -v $'unit=\(unit)\\npath=\(path)\\n' \(store.path)/\(name)")
        }
        guard recorded == self else {
            throw ReplicaError("state owner", ["\(store.path)/\(name)"], errno: .EPERM,
                             hint: "belongs to \(recorded.unit) (state of \(recorded.path)), not to \(unit) for \(path); "
                                 + "give one of them another [Snapshots] Subvolume=")
        }
    }

    /// A subvolume at the top of the store, other than `name`, that this owner already has: its
    /// state moved under another name (the profile's naming changed since).
    func elsewhere(than name: String, in store: borrowing Store) throws(ReplicaError) -> String? {
        for other in try store.subvolumes() where other != name {
            if let fd = try? store.directory(other), StateOwner.of(fd) == self { return other }
        }
        return nil
    }
}
