import ReplicaKit

/// The tools' `--json` output checked against Docs/replica.schema.json by Debian's
/// python3-jsonschema (Draft 2020-12): one line per error, `FILE: PATH: MESSAGE`; empty when all
/// the files at `paths` are valid.
public func schemaErrors(_ paths: [String]) throws -> String {
    let validator = """
        import json, sys, jsonschema
        validator = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
        for path in sys.argv[2:]:
            for error in validator.iter_errors(json.load(open(path))):
                print(path.rsplit('/', 1)[1] + ': ' + '/'.join(map(str, error.absolute_path)) + ': ' + error.message)
        """
    let verdict = try Command.run(["/usr/bin/python3", "-c", validator, "\(repositoryRoot)Docs/replica.schema.json"] + paths)
    return verdict.status == .exited(0) ? verdict.output : "validator \(verdict.status): \(verdict.output)"
}
