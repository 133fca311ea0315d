import Glibc
import ReplicaKit
import ReplicaStore

/// `replica-store`: the embedded default store, a sparse btrfs image file loop-mounted where
/// services expect their store, for hosts without a spare btrfs disk; run at boot by
/// replica-store.service. Every step is one call of `EmbeddedStore` or `MountedImage`.
public enum StoreTool: Tool {
    static let place: [OptionSpec] = [
        .option("image", "path", "The store's image file, made sparse on first use.", default: EmbeddedStore.defaultImage),
        .option("mount-point", "path", "Where services find the store.", default: EmbeddedStore.defaultMountPoint),
    ]
    public static let spec = ToolSpec(
        name: "replica-store",
        abstract: "Mount, unmount and show the embedded btrfs store (a loop-mounted image file).",
        discussion: "Exit codes: 0 ok, 1 failure, 2 usage, 6 not mounted (status, resize).",
        commands: [
            CommandSpec("prepare", "Make the image on first use (mkfs.btrfs), or check it is btrfs; mount nothing (replica-store.service).",
                        options: place),
            CommandSpec("mount", "Make the image on first use (mkfs.btrfs), mount it and leave it mounted.", options: place),
            CommandSpec("unmount", "Commit and unmount the store; its loop device detaches itself.", options: place),
            CommandSpec("status", "Show the mounted store: image, device, space, subvolumes and snapshot counts.", options: place),
            CommandSpec("resize", "Grow (or shrink) the mounted store online: image file, loop device, then filesystem.", options: place,
                        positionals: [PositionalSpec("size", "The new size (8G), or how much to add (+2G); never below what is used.")]),
        ])

    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        let image = arguments.value("image")!, mountPoint = arguments.value("mount-point")!
        func output(_ text: String, _ members: @autoclosure @escaping () -> [(String, JSON)], prefix: String = "replica-store: ") -> ToolOutput {
            ToolOutput(prefix + text, [("mount_point", .string(mountPoint))] + members())
        }
        /// The image is only a fallback: a btrfs already mounted there (this image, or a real disk
        /// from fstab) is left as it is and used.
        func mountedBtrfs() throws(ReplicaError) -> MountInfoEntry? {
            let top = try MountInfo.read().last { $0.mountPoint == mountPoint }
            return top?.fsType == "btrfs" ? top : nil
        }
        switch arguments.command {
        case "prepare":
            if let existing = try mountedBtrfs() {
                return output("btrfs from \(existing.source) is already mounted on \(mountPoint); no image needed",
                              [("image", .string(image)), ("created", .bool(false))])
            }
            let created = try EmbeddedStore.prepare(image: image)
            return output("\(image) \(created ? "made, \(EmbeddedStore.defaultSize >> 30) GiB sparse with mkfs.btrfs" : "is a btrfs image"); "
                          + "run-replica-store.mount mounts it on \(mountPoint)", [("image", .string(image)), ("created", .bool(created))])
        case "mount":
            if let existing = try mountedBtrfs() {
                return output("btrfs from \(existing.source) is already mounted on \(mountPoint); using it",
                              [("source", .string(existing.source)), ("image", .null), ("created", .bool(false))])
            }
            let opened = try EmbeddedStore.mount(image: image, at: mountPoint)
            opened.mounted.leaveMounted()
            let made = opened.createdImage ? "made \(EmbeddedStore.defaultSize >> 30) GiB sparse with mkfs.btrfs" : "reused"
            return output("\(image) (\(made)) mounted on \(mountPoint) from \(opened.mounted.device)",
                          [("source", .string(opened.mounted.device)), ("image", .string(image)), ("created", .bool(opened.createdImage))])
        case "unmount":
            guard let mounted = try MountedImage.mounted(at: mountPoint) else {
                return output("no loop-mounted store on \(mountPoint); nothing to do", [("unmounted", .bool(false)), ("image", .null)])
            }
            // Only this image's store: one mounted there from elsewhere (a container's bind of the
            // host's store, a real disk) is not ours to unmount, and waiting for its loop device would hang.
            guard mounted.image == (try? resolvedPath(image)) ?? image else {
                return output("\(mountPoint) holds \(mounted.image), not \(image); left mounted (give --image \(mounted.image) to unmount it)",
                              [("unmounted", .bool(false)), ("image", .string(mounted.image))])
            }
            try mounted.unmount()
            return output("unmounted \(mountPoint); \(mounted.device) released \(mounted.image)",
                          [("unmounted", .bool(true)), ("image", .string(mounted.image))])
        case "resize":
            let mounted = try mountedImage(mountPoint)
            let target = try mounted.size(asked: arguments.positionals[0])
            let before = try mounted.resize(to: target)
            let after = try Store(path: mountPoint).space()
            return output("\(mountPoint) resized from \(before >> 20) MiB to \(target >> 20) MiB (\(after.available >> 20) MiB free)",
                          [("image", .string(mounted.image)), ("bytes_before", .int(before)), ("bytes", .int(target)),
                           ("available_bytes", .int(Int64(after.available)))])
        default:
            let mounted = try mountedImage(mountPoint)
            let store = try Store(path: mountPoint)
            let space = try store.space()
            var table = Table(["SUBVOLUME", "SNAPSHOTS", "NEWEST"])
            var subvolumes: [JSON] = []
            for name in try store.subvolumes() {
                let snapshots = try store.snapshots(of: name), newest = snapshots.last?.name.time.description
                table.append([name, "\(snapshots.count)", newest ?? "-"])
                subvolumes.append(.object([("name", .string(name)), ("snapshots", .int(Int64(snapshots.count))),
                                           ("newest", newest.map(JSON.string) ?? .null)]))
            }
            return output("""
                store      \(mountPoint) (btrfs\(space.readOnly ? ", read-only" : ""))
                image      \(mounted.image) on \(mounted.device)
                space      \(space.available >> 20) MiB free of \(space.total >> 20) MiB

                \(table)
                """, [("image", .string(mounted.image)), ("source", .string(mounted.device)), ("read_only", .bool(space.readOnly)),
                      ("total_bytes", .int(Int64(space.total))), ("available_bytes", .int(Int64(space.available))),
                      ("subvolumes", .array(subvolumes))], prefix: "")
        }
    }

    /// The loop-mounted store on `mountPoint`; exit 6 when there is none.
    static func mountedImage(_ mountPoint: String) throws(ReplicaError) -> MountedImage {
        guard let mounted = try MountedImage.mounted(at: mountPoint) else {
            throw .notConfigured("no loop-mounted store on \(mountPoint); mount it with: replica-store mount")
        }
        return mounted
    }
}
