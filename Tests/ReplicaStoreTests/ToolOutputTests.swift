import Glibc
import ReplicaKit
import ReplicaStore
import ReplicaTestSupport
import Testing

/// Every command that prints, run with `--json` as a program would run it, prints one object that
/// Docs/replica.schema.json accepts (validated by Debian's python3-jsonschema, Draft 2020-12), with the
/// envelope naming the tool and the command.
@Suite(.requiresBtrfs, .serialized) struct ToolOutputTests {
    /// Standard output alone (the JSON), the exit code, and what went to standard error.
    private func json(_ tool: String, _ arguments: [String]) throws -> (output: String, status: ReplicaKit.ExitStatus, errors: String) {
        let errors = try Command.run(["mktemp"]).output.split(separator: "\n")[0]
        defer { unlink(String(errors)) }
        let result = try Command.run(["sh", "-c", "exec \"$@\" 2>\(errors)", "sh", try builtTool(tool)] + arguments + ["--json"])
        return (result.output, result.status, try Command.check(["cat", String(errors)]))
    }

    private func write(_ path: String, _ text: String) throws {
        let fd = try OwnedFD.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        try fd.writeAll(Array(text.utf8))
    }

    @Test func everyCommandsJSONMatchesTheSchema() throws {
        try withTemporaryDirectory { dir in
            let (image, store, profiles) = ("\(dir)/store.img", "\(dir)/store", "\(dir)/profiles")
            let place = ["--image", image, "--mount-point", store]
            mkdir(profiles, 0o700)
            mkdir("\(dir)/state", 0o700)
            try write("\(dir)/app.conf", "v1\n")
            try write("\(profiles)/web.service.conf", """
                [State]
                Path=\(dir)/state/web
                Store=\(store)
                [Config]
                Directory=\(dir)/config
                [Snapshots]
                Preserve=1d
                """)
            let suffix = "\(getpid() % 100_000)"
            let (namespace, bridge) = ("rj\(suffix)", "rjbr\(suffix)")
            var documents: [(name: String, expected: (tool: String, action: String), text: String)] = []
            func record(_ tool: String, _ action: String, _ arguments: [String], status expected: Int32 = 0) throws {
                let (output, status, errors) = try json(tool, [action] + arguments)
                #expect(status == .exited(expected), "\(tool) \(action) \(arguments): \(status): \(errors)")
                documents.append(("\(tool)-\(action)-\(documents.count)", (tool, action), output))
            }
            defer {
                _ = try? Command.run([try builtTool("replica-net"), "down", namespace])
                _ = try? Command.run(["ip", "link", "del", bridge])
                _ = try? Command.run([try builtTool("replica-store"), "unmount"] + place)
            }

            try record("replica-store", "prepare", place)
            try record("replica-store", "mount", place)
            try record("replica-store", "status", place)
            try record("replica-store", "resize", place + ["+64M"])
            try record("replica-shift", "prepare", ["--profiles", profiles, "web"])
            try record("replica-shift", "config", ["--profiles", profiles, "web", "--file", "/etc/app.conf=\(dir)/app.conf"])
            try record("replica-shift", "config", ["--profiles", profiles, "web"])
            try record("replica-shift", "status", ["--profiles", profiles, "web", "--pid", "\(getpid())"], status: 1)  // this process sees no config
            try record("replica-shift", "drop-in", ["--profiles", profiles, "web"])
            let printed = try json("replica-run", ["--profiles", profiles, "--print", "web"])
            #expect(printed.status == .exited(0), "\(printed.errors)")
            documents.append(("replica-run-print", ("replica-run", "run"), printed.output))
            try record("replica-volume", "fingerprint", [])
            let snap = ["--profiles", profiles, "--metrics-file", ""]
            try record("replica-snap", "create", snap + ["web"])
            sleep(1)  // snapshot names are to the second
            try record("replica-snap", "run", snap + ["web"])
            try record("replica-snap", "prune", snap + ["--dry-run", "--explain", "web"])
            try record("replica-snap", "list", ["--store", store])
            try record("replica-snap", "check", ["--profiles", profiles, "web"])
            let snapshots = try Store(path: store).snapshots(of: "web").map(\.name.description)
            try #require(snapshots.count == 2)
            sleep(1)  // rollback keeps the present state as a snapshot of this second
            try record("replica-shift", "rollback", ["--profiles", profiles, "web", snapshots[0]])
            try record("replica-snap", "delete", snap + ["web", snapshots[1]])
            try record("replica-snap", "send", ["--profiles", profiles, "--to", "\(store)/backup", "web"])
            try record("replica-snap", "clean", ["--profiles", profiles, "--target", "\(store)/backup", "web"])
            try record("replica-snap", "receive", ["--list", "\(store)/backup/web"])
            let net = [namespace, "--bridge", bridge, "--subnet", "10.199.\(getpid() % 200).0/24"]
            try record("replica-net", "up", net + ["--dry-run"])
            try record("replica-net", "check", net, status: 1)  // nothing made yet: all drift
            try record("replica-net", "up", net)
            try record("replica-net", "list", [])
            try record("replica-net", "down", [namespace])
            _ = try Command.check(["mkdir", "-p", "\(dir)/root/etc", "\(dir)/root/usr"])
            _ = try Command.check(["mkfifo", "\(dir)/root/etc/initctl"])  // a finding, so import's list has an entry
            let machine = ["--store", store]
            try record("replica-machine", "template", ["import", "tiny", "\(dir)/root"] + machine)
            try record("replica-machine", "fork", ["box", "--template", "tiny"] + machine)
            try record("replica-machine", "template", ["list"] + machine)
            try record("replica-machine", "list", machine)
            try record("replica-machine", "stop", ["box"] + machine)
            // A failure is an envelope too: its error's message, reason, errno and exit code.
            try record("replica-machine", "fork", ["other", "--template", "nosuch"] + machine, status: 6)
            try record("replica-machine", "start", ["box", "--wait", "soon"] + machine, status: 2)
            #expect(documents.suffix(2).allSatisfy { $0.text.contains("\"error\": {") && $0.text.contains("\"exit_code\": ") })
            try record("replica-machine", "remove", ["box"] + machine)
            try record("replica-machine", "template", ["remove", "tiny"] + machine)
            try record("replica-store", "unmount", place)

            var paths: [String] = []
            for document in documents {
                try write("\(dir)/\(document.name).json", document.text)
                paths.append("\(dir)/\(document.name).json")
                #expect(document.text.contains("\"tool\": \"\(document.expected.tool)\""), "\(document.name): \(document.text)")
                #expect(document.text.contains("\"action\": \"\(document.expected.action)\""), "\(document.name)")
            }
            let errors = try schemaErrors(paths)
            #expect(errors.isEmpty, "\(errors)")
            #expect(documents.count == 36)
        }
    }

    @Test func theSchemaRefusesWhatNoCommandPrints() throws {
        let validator = """
            import json, sys, jsonschema
            validator = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
            envelope = {"schema": "replica.v1", "tool": "replica-store", "version": "0.5.0", "action": "unmount"}
            good = dict(envelope, mount_point="/run/replica/store", unmounted=True, image=None)
            bad = [dict(good, extra=1), dict(good, action="list"), dict(good, schema="replica.snap.v1"),
                   {k: v for k, v in good.items() if k != "unmounted"}, dict(good, tool="replica-nothing")]
            print(validator.is_valid(good), [validator.is_valid(b) for b in bad])
            """
        let output = try Command.check(["/usr/bin/python3", "-c", validator, "\(repositoryRoot)Docs/replica.schema.json"])
        #expect(output == "True [False, False, False, False, False]\n")
    }
}
