import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaStore

/// Container templates on the store: read-only subvolumes `templates/NAME` holding a root file
/// system (a debootstrap'd Debian, an unpacked image), from which machines are forked in
/// milliseconds. Each records where it came from and when (`user.replica.template`).
public enum Templates {
    /// The folder of the store templates are in.
    public static let directory = "templates"
    /// The extended attribute recording a template's source and import time.
    public static let attribute = "user.replica.template"

    /// One template.
    public struct Template: Equatable, Sendable {
        /// Its name.
        public var name: String
        /// Where it was imported from (a folder or a tarball) and when: `SOURCE at TIME`.
        public var origin: String
        /// Its subvolume's uuid: the parent uuid of every machine forked from it.
        public var uuid: String
        /// The btrfs generation its content last changed in (forks leave it as it is).
        public var generation: UInt64
    }

    /// Imports a root file system as template `name`: copied from a folder (`cp -a --reflink=auto`,
    /// so a folder on the same btrfs costs no data) or unpacked from a tarball (`tar -xpf
    /// --numeric-owner --xattrs`) into `templates/.importing-NAME`, checked to look like a root (an
    /// `/etc` and a `/usr`), made read-only and renamed into place. Refused when the name is taken;
    /// a failed import leaves nothing.
    @discardableResult
    public static func importTemplate(_ name: String, from source: String, into store: borrowing Store) throws(ReplicaError) -> Template {
        _ = try PlainName(name, kind: "template")
        let top = try store.directory(".")
        try store.makeDirectory(directory, in: top, mode: 0o700)
        let folder = try store.directory(directory)
        let path = "\(store.path)/\(directory)"
        guard (try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) == nil else {
            throw ReplicaError("import template", ["\(path)/\(name)"], errno: .EEXIST,
                               hint: "a template of that name exists; remove it first (replica-machine template remove \(name))", reason: .exists)
        }
        let status = try OwnedFD.open(source, replica_O_PATH | O_NOFOLLOW).status()
        let staging = ".importing-\(name)"
        if (try? folder.openat(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) != nil {
            try Btrfs.deleteSubvolume(in: folder, named: staging, parentPath: path)
        }
        try Btrfs.publish(name, staging: staging, in: folder, path: path) { (imported) throws(ReplicaError) in
            if status.kind == .directory {
                try Command.check(["cp", "-a", "--reflink=auto", "--", "\(source)/.", "\(path)/\(staging)/"])
            } else {
                try Command.check(["tar", "-xpf", source, "--numeric-owner", "--xattrs", "-C", "\(path)/\(staging)"])
            }
            for needed in ["etc", "usr"] where (try? imported.openat(needed, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) == nil {
                throw ReplicaError("import template", [source], errno: .EINVAL,
                                   hint: "has no /\(needed): not a root file system", reason: .refused)
            }
            try Btrfs.removeAttributes(imported, prefix: "user.replica.", path: "\(path)/\(staging)")  // a machine's, when one is imported
            try Btrfs.setAttribute(imported, attribute, "\(source) at \(UTCTimestamp.now)", path: "\(path)/\(staging)")
            try Btrfs.setReadOnly(imported, true, path: "\(path)/\(staging)")
        }
        return try template(name, in: store)
    }

    /// The template `name`.
    public static func template(_ name: String, in store: borrowing Store) throws(ReplicaError) -> Template {
        _ = try PlainName(name, kind: "template")
        let fd: OwnedFD
        do { fd = try store.directory("\(directory)/\(name)") } catch {
            throw ReplicaError("template", [name], errno: .ENOENT,
                               hint: "no such template in \(store.path)/\(directory); import one (replica-machine template import \(name) DIR)",
                               reason: .notFound)
        }
        let info = try Btrfs.info(fd, path: "\(store.path)/\(directory)/\(name)")
        // Only what import made: a read-only subvolume with its origin recorded. Anything else there
        // could change under the machines forked from it.
        guard Btrfs.isSubvolume(fd), info.isReadOnly, let origin = Btrfs.attribute(fd, attribute) else {
            throw ReplicaError("template", ["\(store.path)/\(directory)/\(name)"], errno: .EPERM,
                               hint: "is not a template of ours (a read-only subvolume made by replica-machine template import); "
                                   + "import the root file system instead", reason: .refused)
        }
        return Template(name: name, origin: origin, uuid: info.uuid, generation: info.changedGeneration)
    }

    /// Every template on the store, by name.
    public static func list(in store: borrowing Store) throws(ReplicaError) -> [Template] {
        guard let folder = try? store.directory(directory) else { return [] }
        var all: [Template] = []
        for name in try DirectoryEntries.names(in: folder).sorted() where !name.hasPrefix(".") {
            if let template = try? template(name, in: store) { all.append(template) }
        }
        return all
    }

    /// Removes template `name`: refused while a machine forked from it exists, unless `force`.
    public static func remove(_ name: String, from store: borrowing Store, force: Bool = false) throws(ReplicaError) {
        let template = try template(name, in: store)
        let forks = try Machines.list(in: store).filter { $0.templateUUID == template.uuid }
        guard forks.isEmpty || force else {
            throw ReplicaError("remove template", [name], errno: .EBUSY,
                               hint: "machines were forked from it (\(forks.map(\.name).joined(separator: ", "))); remove them first, "
                                   + "or pass --force (they keep their data)", reason: .busy)
        }
        let folder = try store.directory(directory)
        let fd = try folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        let info = try Btrfs.info(fd, path: "\(store.path)/\(directory)/\(name)")
        try Btrfs.deleteSubvolume(id: info.id, on: folder, path: "\(store.path)/\(directory)/\(name)")
    }
}
