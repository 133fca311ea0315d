// replica-store: the embedded default store, a sparse btrfs image file loop-mounted where services
// expect their store, for hosts without a spare btrfs disk. Run at boot by replica-store.service.
// Every step is one library call; this file parses and prints.
import Glibc
import ReplicaKit
import ReplicaStore

let place: [OptionSpec] = [
    .option("image", "path", "The store's image file, made sparse on first use.", default: EmbeddedStore.defaultImage),
    .option("mount-point", "path", "Where services find the store.", default: EmbeddedStore.defaultMountPoint),
    .json,
]
let tool = ToolSpec(
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

let arguments = tool.parseOrExit()
let image = arguments.value("image")!, mountPoint = arguments.value("mount-point")!
let asJSON = arguments.flag("json")

/// The sentence for people, or the command's JSON document (`JSONEnvelope`) for programs.
func report(_ text: @autoclosure () -> String, _ members: [(String, JSON)]) {
    if asJSON { JSONEnvelope.print(tool: "replica-store", action: arguments.command, members) } else { print(text()) }
}

do {
    switch arguments.command {
    case "prepare":
        // The image is only a fallback: a btrfs already mounted there (a real disk) is used instead.
        if let existing = try MountInfo.read().last(where: { $0.mountPoint == mountPoint }), existing.fsType == "btrfs" {
            report("replica-store: btrfs from \(existing.source) is already mounted on \(mountPoint); no image needed",
                   [("mount_point", .string(mountPoint)), ("image", .string(image)), ("created", .bool(false))])
            break
        }
        let created = try EmbeddedStore.prepare(image: image)
        report("replica-store: \(image) \(created ? "made, \(EmbeddedStore.defaultSize >> 30) GiB sparse with mkfs.btrfs" : "is a btrfs image"); "
               + "run-replica-store.mount mounts it on \(mountPoint)",
               [("mount_point", .string(mountPoint)), ("image", .string(image)), ("created", .bool(created))])
    case "mount":
        // Idempotent, and the image is only a fallback: a btrfs already mounted there (this image,
        // or a real disk from fstab) is left as it is and used.
        if let existing = try MountInfo.read().last(where: { $0.mountPoint == mountPoint }), existing.fsType == "btrfs" {
            report("replica-store: btrfs from \(existing.source) is already mounted on \(mountPoint); using it",
                   [("mount_point", .string(mountPoint)), ("source", .string(existing.source)), ("image", .null), ("created", .bool(false))])
            break
        }
        let opened = try EmbeddedStore.mount(image: image, at: mountPoint)
        opened.mounted.leaveMounted()
        let made = opened.createdImage ? "made \(EmbeddedStore.defaultSize >> 30) GiB sparse with mkfs.btrfs" : "reused"
        report("replica-store: \(image) (\(made)) mounted on \(mountPoint) from \(opened.mounted.device)",
               [("mount_point", .string(mountPoint)), ("source", .string(opened.mounted.device)), ("image", .string(image)),
                ("created", .bool(opened.createdImage))])
    case "unmount":
        guard let mounted = try MountedImage.mounted(at: mountPoint) else {
            report("replica-store: no loop-mounted store on \(mountPoint); nothing to do",
                   [("mount_point", .string(mountPoint)), ("unmounted", .bool(false)), ("image", .null)])
            break
        }
        // Only this image's store: one mounted there from elsewhere (a container's bind of the host's
        // store, a real disk) is not ours to unmount, and waiting for its loop device would hang.
        let resolved = realpath(image, nil).map { path in defer { free(path) }; return String(cString: path) } ?? image
        guard mounted.image == resolved else {
            report("replica-store: \(mountPoint) holds \(mounted.image), not \(image); left mounted (give --image \(mounted.image) to unmount it)",
                   [("mount_point", .string(mountPoint)), ("unmounted", .bool(false)), ("image", .string(mounted.image))])
            break
        }
        try mounted.unmount()
        report("replica-store: unmounted \(mountPoint); \(mounted.device) released \(mounted.image)",
               [("mount_point", .string(mountPoint)), ("unmounted", .bool(true)), ("image", .string(mounted.image))])
    case "resize":
        let text = arguments.positionals[0]
        guard let amount = parseByteSize(text.hasPrefix("+") ? String(text.dropFirst()) : text), amount <= UInt64(Int64.max) else {
            printError("replica-store: resize: \"\(text)\" is not a size; write e.g. 8G (the new size) or +2G (to add)")
            exit(ExitCode.usage)
        }
        guard let mounted = try MountedImage.mounted(at: mountPoint) else {
            printError("replica-store: no loop-mounted store on \(mountPoint); mount it with: replica-store mount")
            exit(ExitCode.notConfigured)
        }
        let current = try OwnedFD.open(mounted.image, O_RDONLY).status().size
        let (target, overflow) = text.hasPrefix("+") ? current.addingReportingOverflow(Int64(amount)) : (Int64(amount), false)
        guard !overflow else {
            printError("replica-store: resize: \(text) is too large")
            exit(ExitCode.usage)
        }
        let before = try mounted.resize(to: target)
        let after = try Store(path: mountPoint).space()
        report("replica-store: \(mountPoint) resized from \(before >> 20) MiB to \(target >> 20) MiB (\(after.available >> 20) MiB free)",
               [("mount_point", .string(mountPoint)), ("image", .string(mounted.image)), ("bytes_before", .int(before)),
                ("bytes", .int(target)), ("available_bytes", .int(Int64(after.available)))])
    default:
        guard let mounted = try MountedImage.mounted(at: mountPoint) else {
            printError("replica-store: no loop-mounted store on \(mountPoint); mount it with: replica-store mount")
            exit(ExitCode.notConfigured)
        }
        let store = try Store(path: mountPoint)
        let space = try store.space()
        var table = Table(["SUBVOLUME", "SNAPSHOTS", "NEWEST"])
        var subvolumes: [JSON] = []
        for name in try store.subvolumes() {
            let snapshots = try store.snapshots(of: name)
            table.append([name, "\(snapshots.count)", snapshots.last?.name.time.description ?? "-"])
            subvolumes.append(.object([("name", .string(name)), ("snapshots", .int(Int64(snapshots.count))),
                                       ("newest", snapshots.last.map { .string($0.name.time.description) } ?? .null)]))
        }
        report("""
            store      \(mountPoint) (btrfs\(space.readOnly ? ", read-only" : ""))
            image      \(mounted.image) on \(mounted.device)
            space      \(space.available >> 20) MiB free of \(space.total >> 20) MiB

            \(table)
            """,
               [("mount_point", .string(mountPoint)), ("image", .string(mounted.image)), ("source", .string(mounted.device)),
                ("read_only", .bool(space.readOnly)), ("total_bytes", .int(Int64(space.total))),
                ("available_bytes", .int(Int64(space.available))), ("subvolumes", .array(subvolumes))])
    }
} catch {
    printError("replica-store: \(error)")
    exit(ExitCode.failure)
}
