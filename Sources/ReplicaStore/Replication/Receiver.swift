import CReplicaShim
import Glibc
import ReplicaKit

/// Where target folders may be: anywhere (a receive run by a trusted caller), or only beneath one
/// folder (`replica-snap serve --root DIR`, the forced command of one sender's ssh key).
public struct FolderRoot: Sendable, Equatable {
    /// The root, as the operator wrote it.
    public let path: String
    /// Whether folders must lie beneath it, reached without symlinks.
    public let isConfined: Bool

    /// Anywhere: paths as given, symlinks followed.
    public static let anywhere = FolderRoot(path: "/", isConfined: false)

    /// Only beneath `path` (absolute, without `.` or `..`).
    public static func beneath(_ path: String) throws(ReplicaError) -> FolderRoot {
        let root = FolderRoot(path: path, isConfined: true)
        _ = try root.components(of: path)
        return root
    }

    /// The components of `path` below this root (or, anywhere, below the working folder for a relative
    /// path); refused when it holds `.` or `..`, or lies elsewhere, or is relative in a confined root.
    func components(of path: String) throws(ReplicaError) -> [String] {
        let parts = path.split(separator: "/").map(String.init)
        guard path.hasPrefix("/") || !isConfined, !parts.contains(where: { $0 == "." || $0 == ".." }) else {
            throw ReplicaError("replication target", [path], errno: .EINVAL, hint: "the path must be absolute, without . or ..", reason: .refused)
        }
        if !path.hasPrefix("/") { return parts }  // anywhere: from the working folder
        let base = self.path.split(separator: "/").map(String.init)
        guard parts.starts(with: base) else {
            throw ReplicaError("replication target", [path], errno: .EACCES,
                               hint: "is outside \(self.path), the only folder this key may use", reason: .refused)
        }
        return Array(parts.dropFirst(base.count))
    }
}

/// The receiving side of replication, on the host that holds the target folder (this one, or the
/// remote end of ssh through `replica-snap receive`). The stream is applied by `StreamReceiver`,
/// confined to the one subvolume it announced. A receive is marked before it starts
/// (`.receiving-NAME`, holding the source's uuid) and unmarked once verified, so a receive killed at
/// any point leaves a marker naming exactly what it may have made: `clean` removes that subvolume
/// by id unless it is a finished copy, and never touches a subvolume no marker names.
public enum Receiver {
    /// The marker of a receive of `name` under way.
    static func markerName(_ name: String) -> String { ".receiving-\(name)" }

    /// The target folder of one subvolume at `path`, which must lie in `root`: made (0700, one
    /// `mkdirat` per missing component) when missing and `create` is set, refused unless on a
    /// writable btrfs — before anything is made. In a confined root no symlink is followed below it.
    public static func openFolder(_ path: String, in root: FolderRoot = .anywhere, create: Bool = true) throws(ReplicaError) -> OwnedFD {
        let components = try root.components(of: path)
        let notBtrfs = ReplicaError("replication target", [path], errno: .EINVAL,
                                    hint: "not on btrfs; received snapshots need a btrfs filesystem", reason: .refused)
        var current: OwnedFD
        do throws(ReplicaError) { current = try OwnedFD.open(path.hasPrefix("/") ? root.path : ".", replica_O_PATH | O_DIRECTORY) } catch where root.isConfined {
            throw ReplicaError("open", [root.path], errno: error.errno, hint: "the folder of this key is missing: make it (mkdir -m 0700 \(root.path))")
        }
        let follow = root.isConfined ? O_NOFOLLOW : 0
        for component in components {
            let parent = current.rawValue
            var raw = Glibc.openat(parent, component, replica_O_PATH | O_DIRECTORY | follow | O_CLOEXEC)
            if raw < 0, errno == ENOENT, create {
                // Refused before anything is made: the nearest folder that exists must be on btrfs already.
                guard try current.filesystemType() == FilesystemMagic.btrfs else { throw notBtrfs }
                if mkdirat(parent, component, 0o700) != 0, errno != EEXIST { throw ReplicaError.current("mkdir", [path]) }
                raw = Glibc.openat(parent, component, replica_O_PATH | O_DIRECTORY | follow | O_CLOEXEC)
            }
            guard raw >= 0 else {
                let errno = Errno.current
                throw ReplicaError("open", [path], errno: errno, hint: errno == .ELOOP || errno == .ENOTDIR
                                   ? "\(component) is a symlink or not a folder; inside \(root.path) only folders are followed" : nil)
            }
            current = OwnedFD(adopting: raw)
        }
        guard try current.filesystemType() == FilesystemMagic.btrfs else { throw notBtrfs }
        let folder = try current.reopen(O_RDONLY | O_DIRECTORY)
        var available: UInt64 = 0, total: UInt64 = 0, flags: UInt64 = 0
        _ = try syscall("fstatfs", path) { replica_fstatfs_space(folder.rawValue, &available, &total, &flags) }
        guard flags & UInt64(ST_RDONLY) == 0 else {
            throw ReplicaError("replication target", [path], errno: .EROFS, hint: "mounted read-only; remount it read-write", reason: .refused)
        }
        return folder
    }

    /// The subvolumes in the folder (markers and anything else left out), by name order.
    public static func copies(in folder: borrowing OwnedFD, path: String) throws(ReplicaError) -> [TargetCopy] {
        var copies: [TargetCopy] = []
        for name in try DirectoryEntries.names(in: folder).sorted() where !name.hasPrefix(".") {
            guard let fd = try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), Btrfs.isSubvolume(fd) else { continue }
            let info = try Btrfs.info(fd, path: "\(path)/\(name)")
            copies.append(TargetCopy(name: name, id: info.id, receivedUUID: info.receivedUUID, readOnly: info.isReadOnly))
        }
        return copies
    }

    /// Removes what interrupted receives left in the folder: for each marker, its subvolume unless
    /// it is a finished copy of the marked snapshot (deleted by id, never by name alone), then the
    /// marker. Returns the names of the copies removed.
    public static func clean(_ folder: borrowing OwnedFD, path: String) throws(ReplicaError) -> [String] {
        var removed: [String] = []
        for marker in try DirectoryEntries.names(in: folder).sorted() where marker.hasPrefix(".receiving-") {
            let name = String(marker.dropFirst(".receiving-".count))
            let uuid = (try? folder.openat(marker, O_RDONLY | O_NOFOLLOW).readAll(limit: 64)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            if let fd = try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), Btrfs.isSubvolume(fd) {
                let info = try Btrfs.info(fd, path: "\(path)/\(name)")
                if !(info.isReadOnly && info.receivedUUID == uuid) {
                    try Btrfs.deleteSubvolume(id: info.id, on: folder, path: "\(path)/\(name)")
                    removed.append(name)
                }
            }
            _ = unlinkat(folder.rawValue, marker, 0)
        }
        return removed
    }

    /// Deletes copies from the folder by subvolume id, each only while its name still leads to that
    /// id and it is a received, read-only copy. Returns the names deleted.
    public static func delete(_ copies: [TargetCopy], in folder: borrowing OwnedFD, path: String) throws(ReplicaError) -> [String] {
        var deleted: [String] = []
        for copy in copies {
            guard let fd = try? folder.openat(copy.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), Btrfs.isSubvolume(fd) else { continue }
            let info = try Btrfs.info(fd, path: "\(path)/\(copy.name)")
            guard info.id == copy.id, info.isReadOnly, info.receivedUUID != nil else {
                throw ReplicaError("delete copy", ["\(path)/\(copy.name)"], errno: .ESTALE,
                                   hint: "is not the received copy \(copy.id) any more; left alone", reason: .refused)
            }
            try Btrfs.deleteSubvolume(id: info.id, on: folder, path: "\(path)/\(copy.name)")
            deleted.append(copy.name)
        }
        return deleted
    }

    /// A receive under way on a thread of its own (the sender writes the stream meanwhile): started
    /// by `begin`, ended by `finish`.
    public struct Pending: ~Copyable {
        let running: DedicatedThread.Running<TargetCopy>

        /// Waits until the whole stream is received and the copy verified (or removed).
        public consuming func finish() throws(ReplicaError) -> TargetCopy { try running.join() }
    }

    /// Starts receiving a send stream of snapshot `name` (of uuid `sourceUUID`) from `input` into the
    /// folder at `path` on a thread of its own; what `receive` refuses up front is refused here,
    /// before the thread starts.
    public static func begin(from input: consuming OwnedFD, into path: String, name: String, sourceUUID: String) throws(ReplicaError) -> Pending {
        let folder = try openFolder(path)
        try mark(folder, path: path, name: name, sourceUUID: sourceUUID)
        let (stream, target) = (input.release(), folder.release())
        do throws(ReplicaError) {
            return Pending(running: try DedicatedThread.start { () throws(ReplicaError) -> TargetCopy in
                let input = OwnedFD(adopting: stream)
                let folder = OwnedFD(adopting: target)
                return try receiveMarked(from: input.rawValue, into: folder, path: path, name: name, sourceUUID: sourceUUID)
            })
        } catch {
            let folder = OwnedFD(adopting: target)
            _ = OwnedFD(adopting: stream)
            _ = unlinkat(folder.rawValue, markerName(name), 0)
            throw error
        }
    }

    /// Receives one send stream of snapshot `name` (of uuid `sourceUUID`) from `input` into the
    /// folder (`openFolder`) at `path` (`btrfs receive PATH`, confined: `StreamReceiver`) and returns the verified
    /// copy. Refused before anything is made when `name` exists there (something else of that name is
    /// never overwritten or deleted) or the stream is not of that snapshot; a stream refused later has
    /// what it made deleted by id.
    public static func receive(from input: Int32, into folder: borrowing OwnedFD, path: String, name: String,
                               sourceUUID: String) throws(ReplicaError) -> TargetCopy {
        try mark(folder, path: path, name: name, sourceUUID: sourceUUID)
        return try receiveMarked(from: input, into: folder, path: path, name: name, sourceUUID: sourceUUID)
    }

    /// Checks the request and writes (and syncs) the marker before anything of the copy is made:
    /// a subvolume of this name can only appear after it.
    static func mark(_ folder: borrowing OwnedFD, path: String, name: String, sourceUUID: String) throws(ReplicaError) {
        try Btrfs.validate(name: name, in: path)
        _ = try SendStream.uuidBytes(sourceUUID)
        if let fd = try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) {
            let info = Btrfs.isSubvolume(fd) ? try Btrfs.info(fd, path: "\(path)/\(name)") : nil
            throw ReplicaError("receive", ["\(path)/\(name)"], errno: .EEXIST,
                               hint: info?.receivedUUID == sourceUUID ? "a copy of it is there already"
                                   : "exists and is not a copy of this snapshot; it is left alone: move it aside to send here",
                               reason: .exists)
        }
        do throws(ReplicaError) {
            let marker = try folder.openat(markerName(name), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
            try marker.writeAll(Array(sourceUUID.utf8), name: "\(path)/\(markerName(name))")
            _ = try syscall("fsync", "\(path)/\(markerName(name))") { fsync(marker.rawValue) }
        } catch {
            _ = unlinkat(folder.rawValue, markerName(name), 0)
            throw error
        }
    }

    /// The receive itself, once marked; the marker goes when the copy is verified or removed.
    static func receiveMarked(from input: Int32, into folder: borrowing OwnedFD, path: String, name: String,
                              sourceUUID: String) throws(ReplicaError) -> TargetCopy {
        defer { _ = unlinkat(folder.rawValue, markerName(name), 0) }
        do throws(ReplicaError) {
            var stream = try SendStream(reading: input)
            let copy = try StreamReceiver(folder: folder.rawValue, path: path, name: name, sourceUUID: sourceUUID).receive(&stream)
            guard copy.isCopy(of: sourceUUID) else {
                throw ReplicaError("receive", ["\(path)/\(name)"], errno: .EIO, hint: "the copy is not read-only or not from \(sourceUUID)")
            }
            return copy
        } catch {
            var failed = error
            failed.hint = (error.hint.map { $0 + "; " } ?? "") + "nothing of it was kept"
            if error.errno == .ENOSPC { failed.reason = .noSpace }
            throw failed
        }
    }
}
