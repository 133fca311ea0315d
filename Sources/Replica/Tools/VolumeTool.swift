import Glibc
import ReplicaKit
import ReplicaStore

/// `replica-volume`: Nomad's dynamic host-volume plugin (Nomad 1.10+). Nomad runs it with the
/// operation as its argument and the request in a replaced environment (DHV_*, no PATH); it prints
/// exactly one JSON object on standard output and its diagnostics on standard error. Every step is
/// one call of `NomadVolume`.
public enum VolumeTool: Tool {
    public static let spec = ToolSpec(
        name: "replica-volume",
        abstract: "Nomad's dynamic host-volume plugin: volumes as subvolumes of the btrfs store.",
        discussion: """
            Nomad runs it as PLUGIN_DIR/replica-volume OPERATION with the request in DHV_* variables.
            create makes (or finds) the subvolume nomad/NAMESPACE/NAME of the store in the volume's
            parameters (store, default /run/replica/store), limited to capacity_max (else capacity_min)
            by a btrfs qgroup, and prints {"path": …, "bytes": …}; delete removes it when DHV_VOLUME_ID
            owns it (a snapshot first with snapshot_on_delete "true"). Exit codes: 0 ok, 1 failure, 2 usage.
            """,
        commands: [
            CommandSpec("fingerprint", "Print {\"version\": …} (DHV_OPERATION only)."),
            CommandSpec("create", "Make or find the volume and print {\"path\": …, \"bytes\": …}."),
            CommandSpec("delete", "Remove the volume its id owns (nothing there is fine); print what was done."),
        ])

    /// The request's variables, as Nomad documents them.
    static let variables = ["DHV_OPERATION", "DHV_VOLUMES_DIR", "DHV_PLUGIN_DIR", "DHV_NODE_POOL", "DHV_NAMESPACE", "DHV_VOLUME_NAME",
                            "DHV_VOLUME_ID", "DHV_CAPACITY_MIN_BYTES", "DHV_CAPACITY_MAX_BYTES", "DHV_NODE_ID", "DHV_PARAMETERS",
                            "DHV_CREATED_PATH"]

    /// Nomad reads exactly one bare JSON object (not the envelope): the text is that object.
    public static func run(_ arguments: ParsedArguments) throws(ReplicaError) -> ToolOutput {
        var environment: [String: String] = [:]
        for key in variables { if let value = getenv(key) { environment[key] = String(cString: value) } }
        if let operation = environment["DHV_OPERATION"], operation != arguments.command {
            throw .usage("DHV_OPERATION=\(operation) but the argument is \(arguments.command); Nomad passes the same in both")
        }
        func answer(_ members: [(String, JSON)], _ said: String) -> ToolOutput {
            ToolOutput(JSON.object(members).serialized(indent: nil), members, warnings: [said])
        }
        switch arguments.command {
        case "fingerprint":
            return ToolOutput(JSON.object([("version", .string(ReplicaVersion.string))]).serialized(indent: nil), [("version", .string(ReplicaVersion.string))])
        case "create":
            let created = try NomadVolume.create(try NomadVolume.Request(environment: environment, operation: "create"))
            return answer([("path", .string(created.path)), ("bytes", .int(Int64(clamping: created.bytes)))],
                          "\(created.path) \(created.made ? "made" : "exists")\(created.bytes > 0 ? ", limited to \(created.bytes) bytes" : "")")
        default:
            let deleted = try NomadVolume.delete(try NomadVolume.Request(environment: environment, operation: "delete"))
            return answer([("path", .string(deleted.path)), ("deleted", .bool(deleted.deleted)), ("snapshot", deleted.snapshot.map(JSON.string) ?? .null)],
                          "\(deleted.path) \(deleted.deleted ? "deleted" : "was not there")" + (deleted.snapshot.map { "; kept as snapshot \($0)" } ?? ""))
        }
    }
}
