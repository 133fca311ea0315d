import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// The job specs in Deploy/nomad, parsed with python-hcl2 (HashiCorp's syntax, as Nomad reads it)
/// and their tasks run the way Nomad's raw_exec driver runs them: the task's command and args with
/// `${NOMAD_*}` interpolated, Nomad's task environment, the task directory as working directory.
/// Each task runs in a mount namespace of its own that looks like a Nomad client with Replica
/// installed: the tools in /usr/bin, the profile in /run/replica/services, this test's store on
/// /run/replica/store, and a fresh /var/lib (so nothing is written to the host's).
@Suite(.requiresBtrfs, .serialized) struct NomadJobTests {
    static let deploy = "\(repositoryRoot)Deploy/nomad"

    /// Every spec file, as JSON: python-hcl2 keeps quotes and block markers, which are dropped here.
    static func specs() throws -> JSON {
        let script = """
            import hcl2, json, sys
            def clean(value):
                if isinstance(value, dict):
                    return {(json.loads(k) if k.startswith('"') else k): clean(v) for k, v in value.items() if k != "__is_block__"}
                if isinstance(value, list):
                    return [clean(v) for v in value]
                if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                    return json.loads(value)
                return value
            print(json.dumps({path.rsplit("/", 1)[1]: clean(hcl2.load(open(path))) for path in sys.argv[1:]}))
            """
        let files = ["web.nomad.hcl", "replica-snap.nomad.hcl", "data.volume.hcl"].map { "\(deploy)/\($0)" }
        return try JSON.parse(try Command.check(["python3", "-c", script] + files))
    }

    /// A task as raw_exec sees it: its driver, command, args, and the whole task block.
    struct Task {
        var name: String
        var block: JSON
        var command: String { block["config"]?[0]?["command"]?.string ?? "" }
        var args: [String] { block["config"]?[0]?["args"]?.array?.compactMap(\.string) ?? [] }
    }

    /// The tasks of a job's group, in order.
    static func tasks(_ spec: JSON, job: String, group: String) -> [Task] {
        let groupBlock = spec["job"]?[0]?[job]?["group"]?[0]?[group]
        return (groupBlock?["task"]?.array ?? []).compactMap { entry in
            guard case .object(let members) = entry, let (name, block) = members.first else { return nil }
            return Task(name: name, block: block)
        }
    }

    /// Runs `command` as raw_exec would, in a namespace that looks like a client with Replica.
    static func runTask(_ command: [String], environment: [String: String], taskDirectory: String, store: String,
                        background: Bool = false) throws -> (pid: pid_t, result: CommandResult?) {
        let setup = """
            set -e
            mkdir -p /run/replica
            mount -t tmpfs replica-nomad-test /run/replica
            mkdir -p /run/replica/store /run/replica/services
            mount --bind "$1" /run/replica/store
            cp "$2" /run/replica/services/
            mount -t tmpfs replica-nomad-test /var/lib
            mount -t overlay replica-nomad-test -o "lowerdir=$4:/usr/bin" /usr/bin
            cd "$3"
            shift 4
            exec env -i "$@"
            """
        let variables = environment.map { "\($0.key)=\($0.value)" }.sorted()
        let arguments = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", store,
                         "\(deploy)/web.service.conf", taskDirectory, try installedTools()] + variables + command
        if background { return (try Command.spawn(arguments), nil) }
        return (0, try Command.run(arguments))
    }

    /// A folder with the built tools under their installed names, laid over /usr/bin in each task's
    /// namespace, as on a client where the package is installed.
    static func installedTools() throws -> String {
        let folder = "\(Command.beside("replica-run").dropLast("replica-run".count))nomad-test-bin"
        _ = try Command.check(["mkdir", "-p", folder])
        for tool in ["replica-shift", "replica-run", "replica-snap", "replica-volume"] {
            _ = try Command.check(["ln", "-sfn", try builtTool(tool), "\(folder)/\(tool)"])
        }
        return folder
    }

    /// Nomad's task environment for one task of an allocation, and its task directory.
    static func taskEnvironment(job: String, task: String, allocation: String, port: Int) -> [String: String] {
        [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",  // raw_exec passes the client's own
            "NOMAD_JOB_NAME": job, "NOMAD_JOB_ID": job, "NOMAD_TASK_NAME": task, "NOMAD_GROUP_NAME": job,
            "NOMAD_ALLOC_ID": "5a0c8f2e-\(getpid())-4000-8000-000000000001", "NOMAD_ALLOC_INDEX": "0", "NOMAD_NAMESPACE": "default",
            "NOMAD_REGION": "global", "NOMAD_DC": "dc1", "NOMAD_ALLOC_DIR": "\(allocation)/alloc",
            "NOMAD_TASK_DIR": "\(allocation)/\(task)/local", "NOMAD_SECRETS_DIR": "\(allocation)/\(task)/secrets",
            "NOMAD_PORT_http": "\(port)", "NOMAD_ADDR_http": "127.0.0.1:\(port)", "NOMAD_IP_http": "127.0.0.1",
        ]
    }

    /// `${NAME}` replaced from the environment, as Nomad interpolates task config.
    static func interpolate(_ word: String, _ environment: [String: String]) -> String {
        environment.reduce(word) { text, pair in text.replacing("${\(pair.key)}", with: pair.value) }
    }

    @Test func theSpecsParseAndSayWhatTheDocsSay() throws {
        let specs = try Self.specs()
        let web = try #require(specs["web.nomad.hcl"])
        #expect(web["job"]?[0]?["web"]?["type"]?.string == "service")
        let tasks = Self.tasks(web, job: "web", group: "web")
        #expect(tasks.map(\.name) == ["prepare", "web"])
        #expect(tasks.allSatisfy { $0.block["driver"]?.string == "raw_exec" })
        #expect(tasks[0].block["lifecycle"]?[0]?["hook"]?.string == "prestart")
        #expect(tasks[0].command == "/usr/bin/replica-shift" && tasks[0].args.first == "prepare")
        #expect(tasks[1].command == "/usr/bin/replica-run" && tasks[1].args.prefix(2) == ["web", "--"])

        let snap = try #require(specs["replica-snap.nomad.hcl"]?["job"]?[0]?["replica-snap"])
        #expect(snap["type"]?.string == "sysbatch")
        #expect(snap["periodic"]?[0]?["prohibit_overlap"] == .bool(true))
        #expect(snap["periodic"]?[0]?["time_zone"]?.string == "UTC")
        #expect(snap["periodic"]?[0]?["crons"]?[0]?.string == "0 * * * *")

        let volume = try #require(specs["data.volume.hcl"])
        #expect(volume["type"]?.string == "host" && volume["plugin_id"]?.string == "replica-volume")
        #expect(volume["parameters"]?[0]?.stringMembers != nil)
    }

    @Test func theServiceJobPreparesThenServesFromItsSubvolume() throws {
        let specs = try Self.specs()
        let web = try #require(specs["web.nomad.hcl"])
        let tasks = Self.tasks(web, job: "web", group: "web")
        try #require(tasks.count == 2)
        try withBtrfsImage { image in
            try withTemporaryDirectory { allocation in
                let port = 20_000 + Int(getpid() % 20_000)
                for task in tasks { _ = try Command.check(["mkdir", "-p", "\(allocation)/alloc", "\(allocation)/\(task.name)/local",
                                                           "\(allocation)/\(task.name)/secrets"]) }
                // The prestart task: exit 0, the state subvolume made on the store.
                let prepareEnvironment = Self.taskEnvironment(job: "web", task: "prepare", allocation: allocation, port: port)
                let prepare = try Self.runTask([tasks[0].command] + tasks[0].args.map { Self.interpolate($0, prepareEnvironment) },
                                               environment: prepareEnvironment, taskDirectory: "\(allocation)/prepare", store: image.mountPoint)
                #expect(prepare.result?.status == .exited(0), "\(prepare.result?.output ?? "")")
                let state = try OwnedFD.open("\(image.mountPoint)/web", O_RDONLY | O_DIRECTORY)
                let isSubvolume = Btrfs.isSubvolume(state)
                #expect(isSubvolume)
                try OwnedFD.open("\(image.mountPoint)/web/hello.txt", O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("from the subvolume\n".utf8))

                // The main task, until its kill_signal.
                let environment = Self.taskEnvironment(job: "web", task: "web", allocation: allocation, port: port)
                let command = [tasks[1].command] + tasks[1].args.map { Self.interpolate($0, environment) }
                #expect(command.contains("\(port)"))
                let server = try Self.runTask(command, environment: environment, taskDirectory: "\(allocation)/web",
                                              store: image.mountPoint, background: true).pid
                var body = ""
                for _ in 0..<100 {
                    let fetch = try Command.run(["python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                                                 + "'http://127.0.0.1:\(port)/hello.txt', timeout=1).read().decode(), end='')"])
                    if fetch.status == .exited(0) { body = fetch.output; break }
                    usleep(100_000)
                }
                #expect(body == "from the subvolume\n")
                let signal = tasks[1].block["kill_signal"]?.string == "SIGTERM" ? SIGTERM : SIGINT
                kill(server, signal)
                let ended = try ExitStatus.wait(for: server)
                #expect(ended == .signaled(signal) || ended == .exited(0) || ended == .exited(1), "\(ended)")
            }
        }
    }

    @Test func thePeriodicJobSnapshotsAndTheVolumeSpecMakesAVolume() throws {
        let specs = try Self.specs()
        let snapSpec = try #require(specs["replica-snap.nomad.hcl"])
        let run = try #require(Self.tasks(snapSpec, job: "replica-snap", group: "snapshots").first)
        let volume = try #require(specs["data.volume.hcl"])
        try withBtrfsImage(size: 2 << 30) { image in
            try withTemporaryDirectory { allocation in
                try Store(path: image.mountPoint).ensureSubvolume("web")
                _ = try Command.check(["mkdir", "-p", "\(allocation)/run/local"])
                let environment = Self.taskEnvironment(job: "replica-snap", task: "run", allocation: allocation, port: 0)
                let snap = try Self.runTask([run.command] + run.args, environment: environment, taskDirectory: "\(allocation)/run",
                                            store: image.mountPoint)
                #expect(snap.result?.status == .exited(0), "\(snap.result?.output ?? "")")
                #expect(try Store(path: image.mountPoint).snapshots(of: "web").count == 1)

                // `nomad volume create data.volume.hcl`: the plugin with the spec's values, as Nomad passes them.
                _ = try Command.check(["btrfs", "quota", "enable", image.mountPoint])
                let bytes = { (text: String?) -> String in
                    let units: [(String, UInt64)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
                    guard let text, let unit = units.first(where: { text.hasSuffix($0.0) }), let number = UInt64(text.dropLast(3)) else { return "0" }
                    return "\(number * unit.1)"
                }
                let parameters = JSON.object((volume["parameters"]?[0]?.stringMembers ?? []).map { ($0.0, .string($0.1)) }).serialized(indent: nil)
                let plugin = [
                    "DHV_OPERATION=create", "DHV_VOLUMES_DIR=\(allocation)/host_volumes", "DHV_PLUGIN_DIR=/opt/nomad/plugins",
                    "DHV_NODE_POOL=default", "DHV_NAMESPACE=\(volume["namespace"]?.string ?? "")", "DHV_VOLUME_NAME=\(volume["name"]?.string ?? "")",
                    "DHV_VOLUME_ID=vol-\(getpid())", "DHV_NODE_ID=node-1", "DHV_PARAMETERS=\(parameters)",
                    "DHV_CAPACITY_MIN_BYTES=\(bytes(volume["capacity_min"]?.string))", "DHV_CAPACITY_MAX_BYTES=\(bytes(volume["capacity_max"]?.string))",
                ]
                // Nomad reads standard output alone; standard error carries the diagnostics.
                let stdoutOnly = ["/bin/sh", "-c", "exec \"$@\" 2>/dev/null", "sh", "/usr/bin/env", "-i"]
                let created = try Self.runTask(stdoutOnly + plugin + ["/usr/bin/replica-volume", "create"], environment: [:],
                                               taskDirectory: allocation, store: image.mountPoint)
                let answer = try #require(try? JSON.parse(created.result?.output ?? ""), "\(created.result?.output ?? "")")
                #expect(answer["path"]?.string == "/run/replica/store/nomad/default/data", "\(created.result?.output ?? "")")
                #expect(answer["bytes"] == .int(1 << 30))
                let deleted = try Self.runTask(stdoutOnly + plugin.map { $0.replacing("DHV_OPERATION=create", with: "DHV_OPERATION=delete") }
                                                + ["DHV_CREATED_PATH=/run/replica/store/nomad/default/data", "/usr/bin/replica-volume", "delete"],
                                               environment: [:], taskDirectory: allocation, store: image.mountPoint)
                #expect(try JSON.parse(deleted.result?.output ?? "")["snapshot"]?.string?.hasPrefix("nomad+default+data.") == true)
            }
        }
    }
}
