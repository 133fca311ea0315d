import ReplicaKit

/// What several tools' command lines share, read one way.
extension OptionSpec {
    /// `--profiles DIR`: profile directories replacing the system's, lowest priority first (tests).
    static let profiles = option("profiles", "dir", "A profile directory, lowest priority first.", repeatable: true, hidden: true)
}

extension ParsedArguments {
    /// The profiles `--profiles` names, else the system's.
    var profileLoader: ProfileLoader {
        let directories = all("profiles")
        return directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
    }

    /// `--NAME SECONDS` as a duration, nil when not given (or `absent` when the option has a default);
    /// a usage error unless whole seconds at least `minimum`.
    func seconds(_ name: String, minimum: Int = 0) throws(ReplicaError) -> Duration? {
        guard let text = value(name) else { return nil }
        guard let seconds = Int(text), seconds >= minimum else { throw .usage("--\(name) takes whole seconds") }
        return .seconds(seconds)
    }

    /// The value of an option that has a default.
    func required(_ name: String) -> String { value(name) ?? "" }
}
