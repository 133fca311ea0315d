// replica-demo: the README's main job while the operator tools are being built. Mounts the embedded
// loop-image btrfs store, writes some service state, snapshots it through ReplicaStore, lists the
// snapshots, and unmounts. Every step is one library call; this file only parses and prints.
import Glibc
import ReplicaKit
import ReplicaStore

let tool = ToolSpec(name: "replica-demo", abstract: "Create the embedded btrfs store and show a snapshot made through the library.",
                    commands: [CommandSpec("", "Create the embedded btrfs store and show a snapshot made through the library.", options: [
                        .option("image", "path", "The store's image file (created sparse when missing).", default: EmbeddedStore.defaultImage),
                        .option("mount-point", "path", "Where to mount the store while the demo runs.", default: EmbeddedStore.defaultMountPoint),
                        .option("subvolume", "name", "The service state subvolume to create and snapshot.", default: "demo"),
                    ])])

let arguments = tool.parseOrExit()
let image = arguments.value("image")!, mountPoint = arguments.value("mount-point")!, subvolume = arguments.value("subvolume")!

func step(_ label: String, _ text: String) { print(label + String(repeating: " ", count: max(1, 11 - label.count)) + text) }

func snapshotAndList() throws {
    let store = try Store(path: mountPoint)
    try store.ensureSubvolume(subvolume)
    step("subvolume", "\(subvolume) (btrfs subvolume, one per service's state)")
    let now = UTCTimestamp.now
    try store.root.writeFileAtomically("\(subvolume)/state.txt", contents: Array("last run \(now)\n".utf8))
    step("wrote", "\(subvolume)/state.txt: \"last run \(now)\"")
    let name = try store.snapshot(subvolume, at: now)
    step("snapshot", "\(Store.snapshotsDirectory)/\(subvolume)/\(name) (read-only)")
    var table = Table(["NAME", "TAKEN (UTC)", "RO", "PARENT UUID"])
    for snapshot in try store.snapshots(of: subvolume) {
        table.append([snapshot.name.description, snapshot.name.time.description,
                      snapshot.info.isReadOnly ? "yes" : "no", snapshot.info.parentUUID ?? "-"])
    }
    print("\nSnapshots of \(subvolume) (ours: name parses, read-only, parent uuid = source uuid):\n\(table)\n")
}

do {
    let opened = try EmbeddedStore.mount(image: image, at: mountPoint)
    let mounted = opened.mounted
    step("image", "\(image) (\(opened.createdImage ? "created, \(EmbeddedStore.defaultSize >> 30) GiB sparse, mkfs.btrfs" : "reused"))")
    step("mounted", "\(mountPoint) from \(mounted.device) (autoclear loop device)")
    do { try snapshotAndList() } catch {
        try? mounted.unmount()
        throw error
    }
    try mounted.unmount()
    step("unmounted", "\(mountPoint); the loop device detached itself")
    print("""

        Where to look: the state lives in \(image). Mount it again with
          mount -o loop \(image) /mnt && btrfs subvolume list -s /mnt
        Each run adds one snapshot. Run the tests with: sudo scripts/test
        """)
} catch {
    printError("replica-demo: \(error)")
    exit(ExitCode.failure)
}
