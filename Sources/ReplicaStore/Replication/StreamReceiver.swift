import CReplicaShim
import Glibc
import ReplicaKit

/// Applies one send stream to one new subvolume of a target folder — what `btrfs receive` does,
/// confined: the stream may make exactly the subvolume it was announced as (name and uuid), once,
/// from a parent that is a finished copy in the same folder; every path it names is resolved
/// beneath that subvolume with no symlink and no `..` followed (`openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)`), data goes only into regular files, clone sources are only copies in the
/// folder. A stream that asks for anything else is refused at that command and the subvolume is
/// deleted by id. (`btrfs receive --chroot` still follows a symlink the stream made into the folder,
/// clones from any subvolume of the filesystem, and writes into a device node the stream made.)
final class StreamReceiver {
    let folder: Int32
    let path: String
    let name: String
    let sourceUUID: String
    /// The subvolume being received and its id, once made.
    var subvolume: Int32 = -1
    var subvolumeID: UInt64 = 0
    /// The file data is being written to (a stream writes one file's data in a run of commands).
    var writing: (path: [UInt8], fd: Int32)?
    /// Clone sources opened so far: finished copies in the folder, by received uuid.
    var sources: [String: Int32] = [:]

    /// A receive of snapshot `name` (uuid `sourceUUID` on the sender) into `folder` (a borrowed
    /// descriptor, open for as long as this lives), named `path` in messages.
    init(folder: Int32, path: String, name: String, sourceUUID: String) {
        (self.folder, self.path, self.name, self.sourceUUID) = (folder, path, name, sourceUUID)
    }

    deinit {
        if subvolume >= 0 { close(subvolume) }
        if let writing { close(writing.fd) }
        for fd in sources.values { close(fd) }
    }

    /// Reads the whole stream and makes the copy: read-only, its received uuid the sender's. On any
    /// failure what was made is deleted by id and the error says which command and why.
    func receive(_ stream: inout SendStream) throws(ReplicaError) -> TargetCopy {
        do throws(ReplicaError) {
            guard try stream.next() else { throw stream.refusal("the stream holds no command") }
            let stransid = try begin(stream)
            while true {
                guard try stream.next() else { throw stream.refusal("the stream ends before its end command: it is truncated") }
                if stream.command == .end { break }
                try apply(stream)
            }
            guard try stream.isAtEnd() else {
                throw stream.refusal("more follows the end of the stream (a second stream?): one receive takes one subvolume")
            }
            return try finish(stransid: stransid)
        } catch {
            if subvolume >= 0 {
                close(subvolume)
                subvolume = -1
                if let folder = try? copy(folder) { try? Btrfs.deleteSubvolume(id: subvolumeID, on: folder, path: "\(path)/\(name)") }
            }
            throw error
        }
    }

    /// The first command: `subvol` (a full stream) or `snapshot` (incremental from a copy the folder
    /// holds), naming the announced snapshot. Makes the subvolume; returns the sender's transaction.
    func begin(_ stream: borrowing SendStream) throws(ReplicaError) -> UInt64 {
        guard stream.command == .subvolume || stream.command == .snapshot else {
            throw stream.refusal("it starts with \(stream.command), not with a subvolume or snapshot")
        }
        let named = try stream.bytes(.path)
        guard named.elementsEqual(name.utf8) else {
            throw stream.refusal("it holds \"\(SendStream.shown(named))\", not the announced \(name)")
        }
        let uuid = SubvolumeInfo.format(bytes: try stream.uuid(.uuid))
        guard uuid == sourceUUID else { throw stream.refusal("it holds snapshot \(uuid), not the announced \(sourceUUID)") }
        let transaction = try stream.integer(.ctransid)
        let parentFolder = try copy(folder)
        if stream.command == .subvolume {
            try Btrfs.createSubvolume(in: parentFolder, named: name, parentPath: path)
        } else {
            let parent = try source(SubvolumeInfo.format(bytes: try stream.uuid(.cloneUUID)), stream)
            try Btrfs.snapshot(try copy(parent), into: parentFolder, named: name, readOnly: false,
                               sourcePath: "\(path)/(parent)", parentPath: path)
        }
        let made = try parentFolder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        subvolumeID = try Btrfs.info(made, path: "\(path)/\(name)").id
        subvolume = made.release()
        return transaction
    }

    /// A finished copy in the folder with this received uuid, opened once: a snapshot's parent or a
    /// clone's source. Nothing outside the folder, nothing unfinished.
    func source(_ uuid: String, _ stream: borrowing SendStream) throws(ReplicaError) -> Int32 {
        if let fd = sources[uuid] { return fd }
        let dir = try copy(folder)
        guard let copy = try Receiver.copies(in: dir, path: path).first(where: { $0.isCopy(of: uuid) }) else {
            throw stream.refusal("its \(stream.command) source \(uuid) is not a finished copy in \(path): "
                                 + "a stream may only build on copies the folder holds")
        }
        let fd = try dir.openat(copy.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        guard try Btrfs.info(fd, path: "\(path)/\(copy.name)").id == copy.id else {
            throw stream.refusal("\(copy.name) changed while it was opened")
        }
        sources[uuid] = fd.release()
        return sources[uuid]!
    }

    /// One command after the first, every path beneath the subvolume.
    func apply(_ stream: borrowing SendStream) throws(ReplicaError) {
        let command = stream.command
        if command != .write && command != .clone, let open = writing {
            close(open.fd)
            writing = nil
        }
        switch command {
        case .subvolume, .snapshot:
            throw stream.refusal("a second subvolume begins inside the stream: one receive takes one subvolume")
        case .makeFile:
            let entry = try locate(stream, .path)
            let fd = try at("mkfile", stream, entry.leaf) { openat(entry.dir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
            close(fd)
        case .makeDirectory:
            let entry = try locate(stream, .path)
            _ = try at("mkdir", stream, entry.leaf) { mkdirat(entry.dir, $0, 0o700) }
        case .makeNode, .makeFIFO, .makeSocket:
            let entry = try locate(stream, .path)
            let mode: mode_t = switch command {
            case .makeFIFO: S_IFIFO | 0o600
            case .makeSocket: S_IFSOCK | 0o600
            default: mode_t(truncatingIfNeeded: try stream.integer(.mode)) & S_IFMT
            }
            let device = command == .makeNode ? try stream.integer(.rdev) : 0
            _ = try at("mknod", stream, entry.leaf) { mknodat(entry.dir, $0, mode, dev_t(device)) }
        case .symlink:
            let entry = try locate(stream, .path)
            let target = Array(try stream.bytes(.pathLink))
            guard !target.isEmpty, !target.contains(0) else { throw stream.refusal("a symlink's target is empty or holds a NUL") }
            _ = try at("symlink", stream, entry.leaf) { name in withCString(target) { symlinkat($0, entry.dir, name) } }
        case .rename:
            let from = try locate(stream, .path)
            let to = try locate(stream, .pathTo)
            _ = try at("rename", stream, from.leaf) { old in withCString(to.leaf) { renameat(from.dir, old, to.dir, $0) } }
        case .link:
            let entry = try locate(stream, .path)
            let existing = try locate(stream, .pathLink)
            _ = try at("link", stream, entry.leaf) { new in withCString(existing.leaf) { linkat(existing.dir, $0, entry.dir, new, 0) } }
        case .unlink, .removeDirectory:
            let entry = try locate(stream, .path)
            _ = try at(command == .unlink ? "unlink" : "rmdir", stream, entry.leaf) { unlinkat(entry.dir, $0, command == .unlink ? 0 : AT_REMOVEDIR) }
        case .setXattr, .removeXattr:
            let entry = try locate(stream, .path)
            let key = Array(try stream.bytes(.xattrName))
            guard !key.isEmpty, !key.contains(0) else { throw stream.refusal("an attribute's name is empty or holds a NUL") }
            let value = command == .setXattr ? Array(try stream.bytes(.xattrData)) : []
            // The leaf itself (a symlink is not followed), in the directory already resolved.
            let target = Array("/proc/self/fd/\(entry.dir)/".utf8) + entry.leaf
            _ = try at(command == .setXattr ? "lsetxattr" : "lremovexattr", stream, target) { file in
                withCString(key) { key in
                    command == .setXattr ? value.withUnsafeBytes { lsetxattr(file, key, $0.baseAddress, value.count, 0) } : lremovexattr(file, key)
                }
            }
        case .write:
            let fd = try file(stream)
            let offset = try stream.integer(.fileOffset)
            let data = try stream.bytes(.data)
            var done = 0
            while done < data.count {
                done += try syscall("pwrite", shown(stream)) {
                    data.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
                }
            }
        case .clone:
            let fd = try file(stream)
            let uuid = SubvolumeInfo.format(bytes: try stream.uuid(.cloneUUID))
            let root = uuid == sourceUUID ? subvolume : try source(uuid, stream)
            let from = try regularFile(beneath: root, try stream.path(.clonePath), stream, flags: O_RDONLY)
            let (offset, length, at) = (try stream.integer(.cloneOffset), try stream.integer(.cloneLength), try stream.integer(.fileOffset))
            _ = try syscall("ioctl(BTRFS_IOC_CLONE_RANGE)", shown(stream)) { replica_btrfs_clone_range(fd, from.rawValue, offset, length, at) }
        case .truncate:
            let fd = try regularFile(beneath: subvolume, try stream.path(.path), stream, flags: O_WRONLY)
            let size = try stream.integer(.size)
            _ = try syscall("ftruncate", shown(stream)) { ftruncate(fd.rawValue, off_t(size)) }
        case .chmod:
            let entry = try locate(stream, .path)
            let mode = mode_t(truncatingIfNeeded: try stream.integer(.mode)) & 0o7777
            let node = try at("open", stream, entry.leaf) { openat(entry.dir, $0, replica_O_PATH | O_NOFOLLOW | O_CLOEXEC) }
            defer { close(node) }
            var status = stat()
            _ = try syscall("fstat", shown(stream)) { fstat(node, &status) }
            guard status.st_mode & S_IFMT != S_IFLNK else { throw stream.refusal("chmod of a symlink, \(shown(stream))") }
            _ = try syscall("chmod", shown(stream)) { chmod("/proc/self/fd/\(node)", mode) }  // this inode, whatever its name is now
        case .chown:
            let entry = try locate(stream, .path)
            let (uid, gid) = (try stream.integer(.uid), try stream.integer(.gid))
            _ = try at("lchown", stream, entry.leaf) { fchownat(entry.dir, $0, uid_t(truncatingIfNeeded: uid), gid_t(truncatingIfNeeded: gid), AT_SYMLINK_NOFOLLOW) }
        case .utimes:
            let entry = try locate(stream, .path)
            let times = [try stream.time(.atime), try stream.time(.mtime)]
            _ = try at("utimensat", stream, entry.leaf) { utimensat(entry.dir, $0, times, AT_SYMLINK_NOFOLLOW) }
        case .updateExtent, .fileAttributes:
            break  // no data (btrfs send --no-data) / flags btrfs receive does not apply either
        case .fallocate:
            let fd = try regularFile(beneath: subvolume, try stream.path(.path), stream, flags: O_WRONLY)
            let (mode, offset, size) = (try stream.integer(.fallocateMode), try stream.integer(.fileOffset), try stream.integer(.size))
            _ = try syscall("fallocate", shown(stream)) { replica_fallocate(fd.rawValue, Int32(truncatingIfNeeded: mode), Int64(offset), Int64(size)) }
        case .encodedWrite, .enableVerity:
            throw stream.refusal("\(command) is not supported: send without --compressed-data or verity")
        case .end:
            break
        }
    }

    /// Makes the copy final as `btrfs receive` does: the sender's uuid and transaction recorded
    /// (`BTRFS_IOC_SET_RECEIVED_SUBVOL`), then read-only.
    func finish(stransid: UInt64) throws(ReplicaError) -> TargetCopy {
        let uuid = try SendStream.uuidBytes(sourceUUID)
        let fd = subvolume
        _ = try syscall("ioctl(BTRFS_IOC_SET_RECEIVED_SUBVOL)", "\(path)/\(name)") { uuid.withUnsafeBufferPointer { replica_btrfs_set_received(fd, $0.baseAddress, stransid) } }
        let made = try copy(fd)
        try Btrfs.setReadOnly(made, true, path: "\(path)/\(name)")
        let info = try Btrfs.info(made, path: "\(path)/\(name)")
        return TargetCopy(name: name, id: info.id, receivedUUID: info.receivedUUID, readOnly: info.isReadOnly)
    }

    // MARK: Paths beneath the subvolume

    /// A path's directory (an `O_PATH` descriptor) and last component.
    struct Located: ~Copyable {
        let directory: OwnedFD
        let leaf: [UInt8]
        var dir: Int32 { directory.rawValue }
    }

    /// The directory holding a path attribute's last component, resolved beneath the subvolume with
    /// no symlink followed, and that last component (for the empty path, the subvolume and `.`).
    func locate(_ stream: borrowing SendStream, _ attribute: SendStream.Attribute) throws(ReplicaError) -> Located {
        let path = try stream.path(attribute)
        if path.isEmpty { return Located(directory: try copy(subvolume), leaf: Array(".".utf8)) }
        let slash = path.lastIndex(of: UInt8(ascii: "/"))
        let leaf = Array(path[(slash.map { $0 + 1 } ?? 0)...])
        let parent = slash.map { Array(path[..<$0]) } ?? Array(".".utf8)
        return Located(directory: try resolve(parent, beneath: subvolume, stream, flags: O_DIRECTORY), leaf: leaf)
    }

    /// A regular file at `path` beneath `root` (no symlink followed, never a device or FIFO: checked
    /// on an `O_PATH` descriptor before it is opened for I/O), opened with `flags`.
    func regularFile(beneath root: Int32, _ path: [UInt8], _ stream: borrowing SendStream, flags: Int32) throws(ReplicaError) -> OwnedFD {
        let node = try resolve(path, beneath: root, stream, flags: 0)
        guard try node.status().kind == .regular else {
            throw stream.refusal("\(stream.command) into \"\(SendStream.shown(path))\", which is not a regular file")
        }
        return try node.reopen(flags)
    }

    /// An `O_PATH` descriptor for `path` beneath `root`, no symlink followed at any step (the last
    /// one included), opened with `flags` added: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
    /// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, or without openat2 one `openat(O_NOFOLLOW)` per
    /// component (the path has no "..", so that is beneath too).
    func resolve(_ path: [UInt8], beneath root: Int32, _ stream: borrowing SendStream, flags: Int32) throws(ReplicaError) -> OwnedFD {
        let opening = replica_O_PATH | O_NOFOLLOW | O_CLOEXEC | flags
        if RootDirectory.hasOpenat2 {
            let resolve = replica_RESOLVE_BENEATH | replica_RESOLVE_NO_SYMLINKS | replica_RESOLVE_NO_MAGICLINKS | replica_RESOLVE_NO_XDEV
            return OwnedFD(adopting: try at("openat2", stream, path) { replica_openat2(root, $0, UInt64(opening), 0, resolve) })
        }
        var current = try copy(root)
        let components = path.split(separator: UInt8(ascii: "/")).filter { !$0.elementsEqual(".".utf8) }
        for (index, component) in components.enumerated() {
            let (dir, last) = (current.rawValue, index == components.count - 1)
            current = OwnedFD(adopting: try at("openat", stream, Array(component)) { openat(dir, $0, last ? opening : opening | O_DIRECTORY) })
        }
        return current
    }

    /// A descriptor of our own for one this receive holds (`dup`).
    func copy(_ fd: Int32) throws(ReplicaError) -> OwnedFD { OwnedFD(adopting: try syscall("dup") { dup(fd) }) }

    /// The file a `write` or `clone` goes to, kept open for the commands that follow on the same path.
    func file(_ stream: borrowing SendStream) throws(ReplicaError) -> Int32 {
        let path = try stream.path(.path)
        if let writing, writing.path == path { return writing.fd }
        if let writing { close(writing.fd) }
        writing = nil
        let fd = try regularFile(beneath: subvolume, path, stream, flags: O_WRONLY).release()
        writing = (path, fd)
        return fd
    }

    /// Runs a call taking a C path made of `bytes`, turning -1 into an error naming the command and path.
    func at(_ call: String, _ stream: borrowing SendStream, _ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> Int32) throws(ReplicaError) -> Int32 {
        let name = "\(path)/\(self.name)/\(SendStream.shown(bytes))"
        do throws(ReplicaError) {
            return try syscall(call, name, hint: "command \(stream.index) (\(stream.command))") { withCString(bytes, body) }
        } catch where [.ELOOP, .EXDEV, .ENOTDIR].contains(error.errno) {
            throw stream.refusal("its \(stream.command) of \"\(SendStream.shown(bytes))\" passes through a symlink (or a file) or out of "
                                 + "the subvolume: a stream's paths never do")
        }
    }

    /// The current command's path, for messages.
    func shown(_ stream: borrowing SendStream) -> String {
        "\(path)/\(name)/\(SendStream.shown((try? stream.bytes(.path)) ?? []))"
    }
}

/// Calls `body` with the bytes as a NUL-terminated C string.
func withCString<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
    (bytes + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
}

extension SendStream {
    /// The 16 bytes of a uuid written as `Btrfs.format` writes it (hex, with or without dashes).
    static func uuidBytes(_ text: String) throws(ReplicaError) -> [UInt8] {
        let hex = Array(text.utf8.filter { $0 != UInt8(ascii: "-") })
        let digits = hex.compactMap { byte -> UInt8? in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        guard hex.count == 32, digits.count == 32 else {
            throw ReplicaError("receive", [text], errno: .EINVAL, hint: "not a uuid (32 lowercase hex digits)", reason: .usage)
        }
        return stride(from: 0, to: 32, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }
}
