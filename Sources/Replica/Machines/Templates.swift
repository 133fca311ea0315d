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
        /// What it boots when it is a VM template (`import --vm`); nil for a container's root.
        public var vm: VMImage? = nil
    }

    /// What an imported root holds that every machine forked from it would get as it is, and an
    /// operator should know of: device nodes, set-user-ID and set-group-ID files, FIFOs and sockets.
    public struct Finding: Equatable, Sendable, CustomStringConvertible {
        /// The entry's path in the root (`/usr/bin/su`).
        public var path: String
        /// What it is: `block device 8:0`, `character device 1:3`, `set-user-ID`, `set-group-ID`, `FIFO`, `socket`.
        public var what: String
        /// Its permission bits, with the set-ID bits (`4755`).
        public var mode: UInt32
        /// Its owner and group.
        public var owner: UInt32, group: UInt32

        /// `/usr/bin/su: set-user-ID, 4755, 0:0`.
        public var description: String { "\(path): \(what), \(String(mode, radix: 8)), \(owner):\(group)" }
    }

    /// Every finding in the root `directory` (whose path is `path`), in path order.
    public static func findings(in directory: borrowing OwnedFD, path: String) throws(ReplicaError) -> [Finding] {
        var found: [Finding] = []
        try DirectoryTree.walk(directory, path: path) { relative, status in
            let setID = [(UInt32(S_ISUID), "set-user-ID"), (UInt32(S_ISGID), "set-group-ID")]
                .filter { status.mode & $0.0 != 0 && status.kind == .regular }.map(\.1)
            let what: [String] = switch status.kind {
            case .blockDevice: ["block device \(status.deviceNumberText)"]
            case .characterDevice: ["character device \(status.deviceNumberText)"]
            case .fifo: ["FIFO"]
            case .socket: ["socket"]
            default: setID
            }
            guard !what.isEmpty else { return }
            found.append(Finding(path: "/" + relative, what: what.joined(separator: ", "), mode: status.mode & 0o7777,
                                 owner: status.owner, group: status.group))
        }
        return found
    }

    /// Imports a root file system as template `name`: copied from a folder (`cp -a --reflink=auto`,
    /// so a folder on the same btrfs costs no data) or unpacked from a tarball (`tar -xpf
    /// --numeric-owner --xattrs`) into `templates/.importing-NAME`, checked to look like a root (an
    /// `/etc` and a `/usr`), made read-only and renamed into place. Returns it with its findings
    /// (device nodes, set-ID files, FIFOs, sockets); `strict` refuses a root with any. Refused when
    /// the name is taken; a failed or refused import leaves nothing. `minimal` trims its boot
    /// (`TemplateTrim`).
    ///
    /// With `vm`, a VM template instead (`VMDisk`): the root becomes a raw disk of `diskSize`
    /// bytes with the guest's READY unit, beside its kernel and initrd, and unless `check` is false
    /// it is booted once (QEMU `-snapshot`, the disk untouched) and refused when it does not say
    /// READY within `checkTimeout`.
    @discardableResult
    public static func importTemplate(_ name: String, from source: String, into store: borrowing Store,
                                      strict: Bool = false, minimal: Bool = false, vm: VMImage? = nil, diskSize: UInt64 = 4 << 30, check: Bool = true,
                                      checkTimeout: Duration = .seconds(180)) throws(ReplicaError) -> (template: Template, findings: [Finding]) {
        _ = try PlainName(name, kind: "template")
        if let vm { try QEMU.checkFirmware(vm.machineType, vm.firmware) }  // before anything is made
        let top = try store.directory(".")
        try store.makeDirectory(directory, in: top, mode: 0o700)
        let folder = try store.directory(directory)
        let path = "\(store.path)/\(directory)"
        guard (try? folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) == nil else {
            throw ReplicaError("import template", ["\(path)/\(name)"], errno: .EEXIST,
                               hint: "a template of that name exists; remove it first (replica-machine template remove \(name))", reason: .exists)
        }
        let status = try OwnedFD.open(source, replica_O_PATH).status()  // the operator's path: a link to a folder is that folder
        let staging = ".importing-\(name)"
        if (try? folder.openat(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) != nil {
            try Btrfs.deleteSubvolume(in: folder, named: staging, parentPath: path)
        }
        var found: [Finding] = []
        try Btrfs.publish(name, staging: staging, in: folder, path: path) { (imported) throws(ReplicaError) in
            if let vm {
                let made = try VMDisk.make(from: source, isFolder: status.kind == .directory, into: imported, stagingPath: "\(path)/\(staging)",
                                           vm: vm, size: diskSize, minimal: minimal)
                if check { try VMDisk.checkBoot(name, made, stagingPath: "\(path)/\(staging)", timeout: checkTimeout) }
                try Btrfs.removeAttributes(imported, prefix: "user.replica.", path: "\(path)/\(staging)")
                try Btrfs.setAttribute(imported, VMImage.attribute, try made.record().encoded, path: "\(path)/\(staging)")
                try Btrfs.setAttribute(imported, attribute, "\(source) at \(UTCTimestamp.now)", path: "\(path)/\(staging)")
                try Btrfs.setReadOnly(imported, true, path: "\(path)/\(staging)")
                return
            }
            if status.kind == .directory {
                try Command.check(["cp", "-a", "--reflink=auto", "--", "\(source)/.", "\(path)/\(staging)/"])
            } else {
                try ParserSandbox.unpack(source, into: "\(path)/\(staging)")
            }
            for needed in ["etc", "usr"] where (try? imported.openat(needed, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) == nil {
                throw ReplicaError("import template", [source], errno: .EINVAL,
                                   hint: "has no /\(needed): not a root file system", reason: .refused)
            }
            if minimal { try TemplateTrim.apply(to: try RootDirectory("\(path)/\(staging)")) }
            found = try findings(in: imported, path: "\(path)/\(staging)")
            if strict, !found.isEmpty {
                throw ReplicaError("import template", [source], errno: .EPERM,
                                   hint: "--strict: it holds \(found.count) device node(s), set-ID file(s), FIFO(s) or socket(s) every fork would get "
                                       + "(\(found.prefix(3).map(\.description).joined(separator: "; "))\(found.count > 3 ? "; …" : "")); remove them "
                                       + "from the source, or import without --strict to keep them (listed with --json)", reason: .refused)
            }
            try Btrfs.removeAttributes(imported, prefix: "user.replica.", path: "\(path)/\(staging)")  // a machine's, when one is imported
            try Btrfs.setAttribute(imported, attribute, "\(source) at \(UTCTimestamp.now)", path: "\(path)/\(staging)")
            try Btrfs.setReadOnly(imported, true, path: "\(path)/\(staging)")
        }
        return (try template(name, in: store), found)
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
        let vm = try Btrfs.attribute(fd, VMImage.attribute).map { (text) throws(ReplicaError) in
            try VMImage(try Record(decoding: text, source: "\(store.path)/\(directory)/\(name) \(VMImage.attribute)"))
        }
        return Template(name: name, origin: origin, uuid: info.uuid, generation: info.changedGeneration, vm: vm)
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

    /// Removes template `name`: refused while a machine forked from it exists, unless `force`, and
    /// while it has a warm pool (`MachinePool`), which would fork from it again.
    public static func remove(_ name: String, from store: borrowing Store, force: Bool = false) throws(ReplicaError) {
        let template = try template(name, in: store)
        if try MachinePool.settings(name, in: store) != nil {
            throw ReplicaError("remove template", [name], errno: .EBUSY,
                               hint: "it has a warm pool, which forks from it; empty the pool first: replica-machine pool \(name) --size 0", reason: .busy)
        }
        let forks = try Machines.list(in: store).filter { $0.templateUUID == template.uuid }
        guard forks.isEmpty || force else {
            throw ReplicaError("remove template", [name], errno: .EBUSY,
                               hint: "machines were forked from it (\(forks.map(\.name).joined(separator: ", "))); remove them first, "
                                   + "or pass --force (they keep their data)", reason: .busy)
        }
        let folder = try store.directory(directory)
        let info = try Btrfs.info(try folder.openat(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: "\(store.path)/\(directory)/\(name)")
        try Btrfs.deleteSubvolume(id: info.id, on: folder, path: "\(store.path)/\(directory)/\(name)")
        try Btrfs.sync(folder, path: "\(store.path)/\(directory)")  // the cleaner frees it now, as a machine's (Machines.remove)
    }
}
