import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// `replica-volume` run exactly as Nomad runs a dynamic host-volume plugin: `env -i` with only the
/// DHV_* variables (no PATH), the operation as the argument, Nomad's timeouts (5 s for fingerprint,
/// 60 s for create and delete), one JSON object expected on standard output.
@Suite(.requiresBtrfs, .serialized) struct NomadVolumeTests {
    struct Run {
        var status: ReplicaKit.ExitStatus
        var output: String
        var errors: String
        /// The one JSON object printed, or nil when the output is anything else.
        var json: JSON? { try? JSON.parse(output) }
        func member(_ key: String) -> JSON? {
            guard case .object(let members)? = json else { return nil }
            return members.first { $0.0 == key }?.1
        }
    }

    /// Runs the plugin with Nomad's environment for `operation` (the test's values unless `set`
    /// overrides or removes them).
    static func plugin(_ operation: String, store: String, parameters: String? = nil, set: [String: String?] = [:]) throws -> Run {
        var environment: [String: String?] = [
            "DHV_OPERATION": operation, "DHV_VOLUMES_DIR": "/var/lib/nomad/host_volumes", "DHV_PLUGIN_DIR": "/opt/nomad/plugins",
            "DHV_NODE_POOL": "default", "DHV_NAMESPACE": "default", "DHV_VOLUME_NAME": "data", "DHV_VOLUME_ID": "7a1f2c3d-0000-4000-8000-000000000001",
            "DHV_NODE_ID": "node-1", "DHV_PARAMETERS": parameters ?? #"{"store":"\#(store)"}"#,
        ]
        if operation == "create" {
            environment["DHV_CAPACITY_MIN_BYTES"] = "0"
            environment["DHV_CAPACITY_MAX_BYTES"] = "0"
        } else if operation == "delete" {
            environment["DHV_CREATED_PATH"] = "\(store)/nomad/default/data"
        }
        if operation == "fingerprint" { environment = ["DHV_OPERATION": "fingerprint"] }
        for (key, value) in set { environment[key] = value }
        let errors = try Command.check(["mktemp"]).split(separator: "\n")[0]
        defer { unlink(String(errors)) }
        let variables = environment.compactMap { key, value in value.map { "\(key)=\($0)" } }.sorted()
        let result = try Command.run(["sh", "-c", "exec \"$@\" 2>\(errors)", "sh", "timeout", operation == "fingerprint" ? "5" : "60",
                                      "env", "-i"] + variables + [try builtTool("replica-volume"), operation])
        return Run(status: result.status, output: result.output, errors: try Command.check(["cat", String(errors)]))
    }

    /// What is in the store below `nomad/`, for "nothing made" checks.
    static func made(_ store: String) throws -> String {
        try Command.check(["sh", "-c", "cd \(store) && find nomad 2>/dev/null | sort"])
    }

    @Test func fingerprintPrintsTheVersionFast() throws {
        let run = try Self.plugin("fingerprint", store: "")
        #expect(run.status == .exited(0))
        #expect(run.output == #"{"version":"\#(ReplicaVersion.string)"}"# + "\n")
    }

    @Test func createIsIdempotentAndDeleteRemovesOnlyWhatItsIdOwns() throws {
        try withBtrfsImage { image in
            let store = image.mountPoint
            let first = try Self.plugin("create", store: store)
            #expect(first.status == .exited(0), "\(first.errors)")
            #expect(first.member("path") == .string("\(store)/nomad/default/data"))
            #expect(first.member("bytes") == .int(0))
            let volume = try OwnedFD.open("\(store)/nomad/default/data", O_RDONLY | O_DIRECTORY)
            let isSubvolume = Btrfs.isSubvolume(volume)
            #expect(isSubvolume)
            try OwnedFD.open("\(store)/nomad/default/data/state", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("kept".utf8))

            let again = try Self.plugin("create", store: store)
            #expect(again.status == .exited(0) && again.output == first.output)
            let kept = try OwnedFD.open("\(store)/nomad/default/data/state", O_RDONLY).readAll()
            #expect(kept == Array("kept".utf8))

            let other = try Self.plugin("delete", store: store, set: ["DHV_VOLUME_ID": "someone-else"])
            #expect(other.status != .exited(0))
            #expect(other.errors.contains("belongs to volume 7a1f2c3d-0000-4000-8000-000000000001"), "\(other.errors)")
            let elsewhere = try Self.plugin("delete", store: store, set: ["DHV_CREATED_PATH": "/srv/other"])
            #expect(elsewhere.status != .exited(0) && elsewhere.errors.contains("is not where volume"))
            #expect(access("\(store)/nomad/default/data/state", F_OK) == 0, "a refused delete deleted")

            let deleted = try Self.plugin("delete", store: store)
            #expect(deleted.status == .exited(0) && deleted.member("deleted") == .bool(true), "\(deleted.errors)")
            #expect(access("\(store)/nomad/default/data", F_OK) != 0)
            let absent = try Self.plugin("delete", store: store)
            #expect(absent.status == .exited(0) && absent.member("deleted") == .bool(false))
        }
    }

    @Test func twoConcurrentCreatesMakeOneSubvolume() throws {
        try withBtrfsImage { image in
            let store = image.mountPoint
            for round in 0..<5 {
                let runs = try (0..<2).map { _ in
                    try Command.spawn(["env", "-i", "DHV_OPERATION=create", "DHV_NAMESPACE=default", "DHV_VOLUME_NAME=race\(round)",
                                       "DHV_VOLUME_ID=id-\(round)", #"DHV_PARAMETERS={"store":"\#(store)"}"#, try builtTool("replica-volume"), "create"])
                }
                for pid in runs { #expect(try ExitStatus.wait(for: pid) == .exited(0)) }
            }
            let listing = try Command.check(["btrfs", "subvolume", "list", "-o", "\(store)/nomad/default"])
            #expect(listing.split(separator: "\n").count == 5, "\(listing)")
            #expect(try Self.made(store).contains(".creating") == false)
        }
    }

    @Test func aCapacityBecomesAQuotaAndNeedsQuotasOn() throws {
        try withBtrfsImage { image in
            let store = image.mountPoint
            let capacity = ["DHV_CAPACITY_MIN_BYTES": "1000000", "DHV_CAPACITY_MAX_BYTES": "50000000"]
            let off = try Self.plugin("create", store: store, set: capacity)
            #expect(off.status != .exited(0) && off.output.isEmpty)
            #expect(off.errors.contains("btrfs quota enable \(store)"), "\(off.errors)")
            #expect(try Self.made(store).isEmpty)

            _ = try Command.check(["btrfs", "quota", "enable", store])
            let on = try Self.plugin("create", store: store, set: capacity)
            #expect(on.status == .exited(0) && on.member("bytes") == .int(50_000_000), "\(on.errors)")
            let limits = try Command.check(["btrfs", "qgroup", "show", "-re", "--raw", store])
            #expect(limits.split(separator: "\n").contains { $0.contains("50000000") && $0.contains("nomad/default/data") }, "\(limits)")
            let tooMuch = try Self.plugin("create", store: store, set: ["DHV_VOLUME_NAME": "big", "DHV_CAPACITY_MIN_BYTES": "\(1 << 40)"])
            #expect(tooMuch.status != .exited(0) && tooMuch.errors.contains("capacity_min"))
            #expect(access("\(store)/nomad/default/big", F_OK) != 0)
        }
    }

    @Test func aSnapshotIsKeptWhenTheParametersAskForIt() throws {
        try withBtrfsImage { image in
            let store = image.mountPoint
            let parameters = #"{"store":"\#(store)","snapshot_on_delete":"true"}"#
            #expect(try Self.plugin("create", store: store, parameters: parameters).status == .exited(0))
            let deleted = try Self.plugin("delete", store: store, parameters: parameters)
            guard case .string(let name)? = deleted.member("snapshot") else { Issue.record("no snapshot: \(deleted.output)"); return }
            let snapshot = try OwnedFD.open("\(store)/snapshots/nomad+default+data/\(name)", O_RDONLY | O_DIRECTORY)
            let info = try Btrfs.info(snapshot, path: name)
            #expect(info.isReadOnly)
        }
    }

    @Test(arguments: [
        (#"not json"#, "is not JSON"), (#"{"store":"/x","size":"1"}"#, "unknown parameter \"size\""),
        (#"{"store":1}"#, "values are strings"), (#"{"snapshot_on_delete":"yes"}"#, "\"true\" or \"false\""),
        (#"{"store":"/tmp"}"#, "not a btrfs filesystem"), (#"{"store":"relative"}"#, "an absolute path"),
        (#"{"store":"/run/replica/store\u0000x"}"#, "without . or .. or control characters"),
        (#"{"store":"/run/replica/store\nx"}"#, "without . or .. or control characters"),
    ])
    func badParametersAreRefusedAndNothingIsMade(parameters: String, message: String) throws {
        try withBtrfsImage { image in
            let run = try Self.plugin("create", store: image.mountPoint, parameters: parameters)
            #expect(run.status != .exited(0) && run.output.isEmpty)
            #expect(run.errors.contains(message), "\(run.errors)")
            #expect(try Self.made(image.mountPoint).isEmpty)
        }
    }

    /// A job's `store` may name only the root of a mounted store: one inside another volume would nest
    /// this volume in that one, whose delete then failed for good. A symlink to a store is resolved
    /// and the volume reported under the store's own path.
    @Test func aStoreInsideAVolumeIsRefusedAndALinkedStoreIsReportedCanonically() throws {
        try withBtrfsImage { image in
            let store = image.mountPoint
            let victim = try Self.plugin("create", store: store)
            #expect(victim.status == .exited(0), "the positive control: \(victim.errors)")
            let inside = "\(store)/nomad/default/data"
            let nested = try Self.plugin("create", store: inside, set: ["DHV_VOLUME_NAME": "evil", "DHV_VOLUME_ID": "id-evil"])
            #expect(nested.status != .exited(0) && nested.errors.contains("not the root of one"), "\(nested.errors)")
            #expect(try Self.made(store) == "nomad\nnomad/default\nnomad/default/data\n", "nothing made inside the victim")
            #expect(try Self.plugin("delete", store: store).status == .exited(0), "the victim's delete still works")
            try withTemporaryDirectory { dir in
                #expect(symlink(store, "\(dir)/link") == 0)
                let linked = try Self.plugin("create", store: "\(dir)/link")
                #expect(linked.status == .exited(0) && linked.member("path")?.string == "\(store)/nomad/default/data", "\(linked.output)")
                let delete = try Self.plugin("delete", store: "\(dir)/link", set: ["DHV_CREATED_PATH": "\(store)/nomad/default/data"])
                #expect(delete.status == .exited(0), "\(delete.errors)")
            }
        }
    }

    @Test(arguments: [("DHV_VOLUME_NAME", "../etc"), ("DHV_VOLUME_NAME", ".hidden"), ("DHV_NAMESPACE", "a/b"),
                      ("DHV_VOLUME_ID", ""), ("DHV_CAPACITY_MAX_BYTES", "10G"), ("DHV_NAMESPACE", String(repeating: "n", count: 129))])
    func badRequestsAreRefusedAndNothingIsMade(key: String, value: String) throws {
        try withBtrfsImage { image in
            let run = try Self.plugin("create", store: image.mountPoint, set: [key: value])
            #expect(run.status != .exited(0) && run.output.isEmpty)
            #expect(run.errors.contains(key), "\(run.errors)")
            #expect(try Self.made(image.mountPoint).isEmpty)
        }
    }
}
