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

    /// `--NAME SECONDS` as a duration, nil when not given (an option with a default always is); a
    /// usage error unless whole seconds, at least `minimum`.
    func seconds(_ name: String, minimum: Int = 0) throws(ReplicaError) -> Duration? {
        guard let text = value(name) else { return nil }
        guard let seconds = Int(text), seconds >= minimum else { throw .usage("--\(name) takes whole seconds") }
        return .seconds(seconds)
    }

    /// The plan of service `name` from the profiles (`--profiles`, else the system's), checked as
    /// the generator checks it; exit 6 without a profile, a usage error for one that is wrong.
    func servicePlan(_ name: String) throws(ReplicaError) -> ServicePlan {
        let loader = profileLoader
        do throws(ReplicaError) {
            guard let plan = try ServicePlan.load(name, loader: loader) else { throw loader.notConfigured(name) }
            return plan
        } catch { throw error.reason == .notConfigured ? error : error.because(.usage) }
    }
}
