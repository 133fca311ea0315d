// replica-demo: the README's main job while the operator tools are being built. Mounts the embedded
// loop-image btrfs store, writes some service state, snapshots it through ReplicaStore, lists the
// snapshots, and unmounts. Every step is one library call; this file only parses and prints.
import ArgumentParser
import ReplicaKit
import ReplicaStore

@main
struct ReplicaDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica-demo",
        abstract: "Create the embedded btrfs store and show a snapshot made through the library.")

    @Option(help: "The store's image file (created sparse when missing).")
    var image = EmbeddedStore.defaultImage

    @Option(help: "Where to mount the store while the demo runs.")
    var mountPoint = EmbeddedStore.defaultMountPoint

    @Option(help: "The service state subvolume to create and snapshot.")
    var subvolume = "demo"

    mutating func run() throws {
        let opened = try EmbeddedStore.mount(image: image, at: mountPoint)
        let mounted = opened.mounted
        let size = "\(EmbeddedStore.defaultSize >> 30) GiB sparse"
        step("image", "\(image) (\(opened.createdImage ? "created, \(size), mkfs.btrfs" : "reused"))")
        step("mounted", "\(mountPoint) from \(mounted.device) (autoclear loop device)")
        do {
            try snapshotAndList()
        } catch {
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
    }

    private func snapshotAndList() throws {
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

    private func step(_ label: String, _ text: String) { print("\(label.padding(11)) \(text)") }
}

extension String {
    fileprivate func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(1, width - count)) }
}
