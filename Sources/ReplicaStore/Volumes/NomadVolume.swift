import CReplicaShim
import Glibc
import ReplicaKit

/// Nomad's dynamic host volumes (Nomad 1.10+) on the store: what `replica-volume`, the host-volume
/// plugin, does for each operation Nomad runs it with. A volume is the subvolume
/// `nomad/NAMESPACE/NAME` of a store, recorded as Nomad's volume id (`user.replica.volume`) and
/// limited to its capacity by a btrfs qgroup when one is asked for. Every operation is idempotent
/// and holds the volume's lock, so Nomad may repeat it or run two at once: two creates of one
/// volume make one subvolume, and a delete removes only what its volume id owns.
public enum NomadVolume {
    /// The extended attribute holding the owning volume id (`getfattr -n user.replica.volume`).
    public static let attribute = "user.replica.volume"
    /// The folder of the store the volumes are in.
    public static let directory = "nomad"

    /// What the volume spec's `parameters` may say.
    public struct Parameters: Equatable, Sendable {
        /// `store`: the mounted btrfs store (default: the embedded one, /run/replica/store).
        public var store = EmbeddedStore.defaultMountPoint
        /// `snapshot_on_delete`: `"true"` keeps a read-only snapshot of the volume when it is deleted,
        /// in `snapshots/nomad+NAMESPACE+NAME/`.
        public var snapshotOnDelete = false

        /// Every key the plugin takes.
        public static let keys = ["store", "snapshot_on_delete"]

        /// The defaults.
        public init() {}

        /// Parses `DHV_PARAMETERS`: a JSON object of strings (Nomad sends `null` for none). Unknown
        /// keys and values that do not fit are refused, naming the key and what it takes.
        public init(json text: String) throws(ReplicaError) {
            let trimmed = text.trimmed
            guard !trimmed.isEmpty, trimmed != "null" else { return }
            let parsed: JSON
            do { parsed = try JSON.parse(trimmed) } catch {
                throw ReplicaError("DHV_PARAMETERS", [], errno: .EINVAL, hint: "is not JSON (\(error.hint ?? "")); "
                                   + "give the volume spec's parameters as a map of strings", reason: .refused)
            }
            guard let members = parsed.stringMembers else {
                throw ReplicaError("DHV_PARAMETERS", [], errno: .EINVAL, hint: "must be a JSON object whose values are strings, "
                                   + "as Nomad sends a volume spec's parameters", reason: .refused)
            }
            for (key, value) in members {
                switch key {
                case "store":
                    guard value.hasPrefix("/"), !value.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }),
                          !ControlCharacters.appear(in: value) else {
                        throw Self.refused(key, ControlCharacters.masked(value),
                                           "an absolute path to a mounted btrfs store, without . or .. or control characters")
                    }
                    store = value
                case "snapshot_on_delete":
                    guard let flag = ["true": true, "false": false][value] else { throw Self.refused(key, value, "\"true\" or \"false\"") }
                    snapshotOnDelete = flag
                default:
                    throw ReplicaError("DHV_PARAMETERS", [key], errno: .EINVAL,
                                       hint: "unknown parameter \"\(key)\"; replica-volume takes: \(Self.keys.joined(separator: ", "))",
                                       reason: .refused)
                }
            }
        }

        private static func refused(_ key: String, _ value: String, _ takes: String) -> ReplicaError {
            ReplicaError("DHV_PARAMETERS", [key], errno: .EINVAL, hint: "\(key) \"\(value)\": takes \(takes)", reason: .refused)
        }
    }

    /// One `create` or `delete` as Nomad asks for it in the plugin's environment.
    public struct Request: Equatable, Sendable {
        /// `DHV_NAMESPACE`.
        public var namespace: String
        /// `DHV_VOLUME_NAME`.
        public var name: String
        /// `DHV_VOLUME_ID`: the id Nomad generated, recorded on the subvolume.
        public var id: String
        /// `DHV_CAPACITY_MIN_BYTES` (0: none).
        public var capacityMin: UInt64 = 0
        /// `DHV_CAPACITY_MAX_BYTES` (0: none).
        public var capacityMax: UInt64 = 0
        /// `DHV_CREATED_PATH`, for delete: the path create returned.
        public var createdPath: String?
        /// `DHV_PARAMETERS`.
        public var parameters = Parameters()

        /// A request for volume `name` in `namespace` with Nomad's id `id`.
        public init(namespace: String, name: String, id: String) {
            (self.namespace, self.name, self.id) = (namespace, name, id)
        }

        /// Reads the request from the plugin's environment, checking every value before anything
        /// is made: names that are one safe path component, a volume id, byte counts, the parameters.
        public init(environment: [String: String], operation: String) throws(ReplicaError) {
            func value(_ key: String) throws(ReplicaError) -> String {
                guard let value = environment[key], !value.isEmpty else {
                    throw ReplicaError(operation, [key], errno: .EINVAL, hint: "\(key) is not set; Nomad sets it for \(operation)", reason: .refused)
                }
                return value
            }
            func bytes(_ key: String) throws(ReplicaError) -> UInt64 {
                guard let text = environment[key], !text.isEmpty else { return 0 }
                guard let number = UInt64(text) else {
                    throw ReplicaError(operation, [key], errno: .EINVAL, hint: "\(key)=\(text) is not a byte count", reason: .refused)
                }
                return number
            }
            self.init(namespace: try value("DHV_NAMESPACE"), name: try value("DHV_VOLUME_NAME"), id: try value("DHV_VOLUME_ID"))
            for (key, word, limit) in [("DHV_NAMESPACE", namespace, 128), ("DHV_VOLUME_NAME", name, 128), ("DHV_VOLUME_ID", id, 64)] {
                do throws(ReplicaError) { _ = try PlainName(word, kind: key, maxLength: limit) } catch {
                    throw ReplicaError(operation, [key], errno: .EINVAL, hint: "\(key)=\(error.objects[0]): \(error.hint ?? "")",
                                       reason: .refused)
                }
            }
            capacityMin = try bytes("DHV_CAPACITY_MIN_BYTES")
            capacityMax = try bytes("DHV_CAPACITY_MAX_BYTES")
            if capacityMin > 0, capacityMax > 0, capacityMin > capacityMax {
                throw ReplicaError(operation, ["DHV_CAPACITY_MIN_BYTES"], errno: .EINVAL,
                                   hint: "capacity_min (\(capacityMin)) is above capacity_max (\(capacityMax))", reason: .refused)
            }
            createdPath = environment["DHV_CREATED_PATH"].flatMap { $0.isEmpty ? nil : $0 }
            parameters = try Parameters(json: environment["DHV_PARAMETERS"] ?? "")
        }

        /// The quota the volume gets: `capacity_max`, else `capacity_min`; 0 for none.
        public var limit: UInt64 { capacityMax > 0 ? capacityMax : capacityMin }
        /// Where the volume is: `STORE/nomad/NAMESPACE/NAME`.
        public var path: String { "\(parameters.store)/\(NomadVolume.directory)/\(namespace)/\(name)" }
        /// One name for the volume at the top of the store: its lock and its snapshots.
        public var flatName: String { "\(NomadVolume.directory)+\(namespace)+\(name)" }
        /// The staging subvolume a create fills before publishing it under `name`.
        var stagingName: String { ".creating-\(id)" }
    }

    /// What `create` answers Nomad: `{"path": …, "bytes": …}`.
    public struct Created: Equatable, Sendable {
        /// The volume's path, which Nomad records and jobs bind.
        public var path: String
        /// Its quota in bytes; 0 when it has none.
        public var bytes: UInt64
        /// False when the volume existed already (a repeated or concurrent create).
        public var made: Bool
    }

    /// What `delete` did.
    public struct Deleted: Equatable, Sendable {
        /// The volume's path.
        public var path: String
        /// False when there was nothing to delete.
        public var deleted: Bool
        /// The snapshot kept before deleting, when the parameters asked for one.
        public var snapshot: String?
    }

    /// How long an operation waits for another one on the same volume (Nomad gives create 60 s).
    static let lockWait = Duration.seconds(40)

    /// Creates the volume, or finds it when it exists with this id (then applies the capacity
    /// again: Nomad expands a volume by creating it again). The subvolume is made as
    /// `.creating-ID`, recorded, limited, then renamed into place, so a crash never leaves a
    /// half-made volume under its name. Refused, with nothing made: a store that is not btrfs or
    /// is read-only, a capacity asked for while quotas are off, a `capacity_min` above the free
    /// space, a name that holds another volume or something else.
    public static func create(_ request: Request) throws(ReplicaError) -> Created {
        var request = request
        let store = try openStore(&request)
        try store.requireWritable()
        if request.limit > 0 { try requireQuotas(store) }
        if request.capacityMin > 0 {
            let free = try store.space().available
            guard request.capacityMin <= free else {
                throw ReplicaError("create volume", [request.path], errno: .ENOSPC,
                                   hint: "capacity_min is \(request.capacityMin) bytes but \(store.path) has \(free) free; "
                                       + "grow the store (replica-store resize) or ask for less", reason: .noSpace)
            }
        }
        let lock = try SubvolumeLock.acquire(request.flatName, in: store, wait: lockWait)
        defer { _ = lock.subvolume }  // held until the operation returns
        let parent = try namespaceDirectory(request, in: store)
        if let existing = try? parent.openat(request.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) {
            try requireOwned(existing, request)
            if request.limit > 0 { try limit(existing, request) }
            return Created(path: request.path, bytes: request.limit, made: false)
        }
        // A create killed before its rename left its staging subvolume: it is this id's, and goes.
        let parentPath = "\(store.path)/\(directory)/\(request.namespace)"
        if (try? parent.openat(request.stagingName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) != nil {
            try Btrfs.deleteSubvolume(in: parent, named: request.stagingName, parentPath: parentPath)
        }
        try Btrfs.publish(request.name, staging: request.stagingName, in: parent, path: parentPath) { (staging) throws(ReplicaError) in
            try Btrfs.setAttribute(staging, attribute, request.id, path: "\(parentPath)/\(request.stagingName)")
            if request.limit > 0 { try limit(staging, request) }
        }
        return Created(path: request.path, bytes: request.limit, made: true)
    }

    /// Deletes the volume when this id owns it, after a read-only snapshot when the parameters ask
    /// for one; nothing there is not an error. Refused, deleting nothing: a path that is not the
    /// one create returned, a volume recorded for another id (or none), a subvolume with others
    /// nested in it.
    public static func delete(_ request: Request) throws(ReplicaError) -> Deleted {
        var request = request
        let store = try openStore(&request)
        if let createdPath = request.createdPath, createdPath != request.path {
            throw ReplicaError("delete volume", [createdPath], errno: .EPERM,
                               hint: "is not where volume \(request.id) lives (\(request.path)); nothing deleted", reason: .refused)
        }
        let lock = try SubvolumeLock.acquire(request.flatName, in: store, wait: lockWait)
        defer { _ = lock.subvolume }  // held until the operation returns
        guard let parent = try? store.directory("\(directory)/\(request.namespace)") else {
            return Deleted(path: request.path, deleted: false, snapshot: nil)
        }
        let parentPath = "\(store.path)/\(directory)/\(request.namespace)"
        if (try? parent.openat(request.stagingName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) != nil {
            try Btrfs.deleteSubvolume(in: parent, named: request.stagingName, parentPath: parentPath)
        }
        guard let volume = try? parent.openat(request.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) else {
            return Deleted(path: request.path, deleted: false, snapshot: nil)
        }
        try requireOwned(volume, request)
        let nested = try Btrfs.nestedSubvolumes(volume, path: request.path)
        guard nested.isEmpty else {
            throw ReplicaError("delete volume", [request.path], errno: .ENOTEMPTY,
                               hint: "holds subvolumes of its own (\(nested.joined(separator: ", "))); delete them first", reason: .refused)
        }
        var snapshot: String?
        if request.parameters.snapshotOnDelete {
            let name = SnapshotName(subvolume: request.flatName, time: .now).description
            try Btrfs.snapshot(volume, into: try store.snapshotDirectory(for: request.flatName), named: name, readOnly: true,
                               sourcePath: request.path, parentPath: "\(store.path)/\(Store.snapshotsDirectory)/\(request.flatName)")
            snapshot = name
        }
        try Btrfs.deleteSubvolume(in: parent, named: request.name, parentPath: parentPath)
        let volumes = try store.directory(directory)
        _ = unlinkat(volumes.rawValue, request.namespace, AT_REMOVEDIR)  // when it was the namespace's last
        return Deleted(path: request.path, deleted: true, snapshot: snapshot)
    }

    /// `nomad/NAMESPACE`, made when missing (0755, so a task's user can reach its volume).
    /// Opens the request's store, naming it canonically in `request` (symlinks resolved,
    /// `realpath(3)`) once it is the root of a mounted btrfs store: a path inside a store — inside
    /// another volume, say — would nest this volume in that one. Refused before anything is made.
    static func openStore(_ request: inout Request) throws(ReplicaError) -> Store {
        let given = request.parameters.store
        do throws(ReplicaError) { request.parameters.store = try resolvedPath(given) } catch {
            throw ReplicaError("store", [given], errno: error.errno, hint: "the store parameter names no folder", reason: .refused)
        }
        let store = try Store(path: request.parameters.store)     // btrfs, or refused naming what it is
        guard SystemdManager.isMountPoint(request.parameters.store) else {
            throw ReplicaError("store", [given], errno: .EINVAL,
                               hint: "\(request.parameters.store) is inside a store, not the root of one: give the store's mount point",
                               reason: .refused)
        }
        return store
    }

    private static func namespaceDirectory(_ request: Request, in store: borrowing Store) throws(ReplicaError) -> OwnedFD {
        try store.makeDirectory(directory, in: store.directory("."), mode: 0o755)
        try store.makeDirectory(request.namespace, in: store.directory(directory), mode: 0o755)
        return try store.directory("\(directory)/\(request.namespace)")
    }

    /// Refuses anything at the volume's path that is not a subvolume recorded for this id.
    private static func requireOwned(_ volume: borrowing OwnedFD, _ request: Request) throws(ReplicaError) {
        guard Btrfs.isSubvolume(volume) else {
            throw ReplicaError("volume", [request.path], errno: .EEXIST,
                               hint: "exists and is not a subvolume of ours; move it aside", reason: .refused)
        }
        let recorded = Btrfs.attribute(volume, attribute)
        guard recorded == request.id else {
            throw ReplicaError("volume", [request.path], errno: .EPERM,
                               hint: recorded.map { "belongs to volume \($0), not \(request.id); nothing changed" }
                                   ?? "records no volume id, so it is not touched for volume \(request.id)", reason: .refused)
        }
    }

    /// `btrfs qgroup limit BYTES PATH`.
    private static func limit(_ volume: borrowing OwnedFD, _ request: Request) throws(ReplicaError) {
        _ = try syscall("ioctl(BTRFS_IOC_QGROUP_LIMIT)", request.path) { replica_btrfs_qgroup_limit(volume.rawValue, request.limit) }
    }

    /// Refuses a store whose quotas are off (no `/sys/fs/btrfs/UUID/qgroups`): a capacity could not
    /// take effect.
    private static func requireQuotas(_ store: borrowing Store) throws(ReplicaError) {
        var fsid = [UInt8](repeating: 0, count: 16)
        let top = try store.directory(".")
        _ = try syscall("ioctl(BTRFS_IOC_FS_INFO)", store.path) { replica_btrfs_fsid(top.rawValue, &fsid) }
        let uuid = SubvolumeInfo.format(bytes: fsid)
        guard access("/sys/fs/btrfs/\(uuid)/qgroups", F_OK) == 0 else {
            throw ReplicaError("create volume", [store.path], errno: .ENOTCONN,
                               hint: "a capacity needs btrfs quotas, which are off on this store; enable them "
                                   + "(btrfs quota enable \(store.path)) or leave capacity_min and capacity_max out", reason: .refused)
        }
    }
}
