import Glibc

/// Finds and merges a service's profile the way systemd finds unit files:
/// - the main file `UNIT.conf` is taken from the highest-priority directory that has it
///   (`/etc/replica/services` over `/run/replica/services` over `/usr/lib/replica/services`);
/// - drop-ins `UNIT.conf.d/*.conf` from all directories are applied after it in lexical order of
///   file name, a drop-in in a higher-priority directory masking one of the same name below.
public struct ProfileLoader: Sendable {
    /// Lowest priority first.
    public var directories: [String]
    /// True for service-set files, named as given (`lab.conf`); false for services' profiles, named
    /// by unit (`web` → `web.service.conf`).
    public var plainNames = false
    /// The sections and keys files are read with: a set's, or a service's profile's. Looked up only
    /// when a file is read: a name without one (`replica-snap create SUBVOLUME`) never builds the table.
    public var grammar: [String: [String: ProfileKeys.Key]] { plainNames ? ProfileKeys.setSections : ProfileKeys.sections }

    /// `/usr/lib/replica/sets`, `/run/replica/sets`, `/etc/replica/sets`, lowest priority first.
    public static let setDirectories = ["/usr/lib/replica/sets", "/run/replica/sets", "/etc/replica/sets"]

    /// A loader of service-set files (`NAME.conf` and `NAME.conf.d/` in `directories`).
    public static func sets(directories: [String] = setDirectories) -> ProfileLoader {
        var loader = ProfileLoader(directories: directories)
        loader.plainNames = true
        return loader
    }

    /// `/usr/lib/replica/services`, `/run/replica/services`, `/etc/replica/services`, lowest priority first.
    public static let systemDirectories = ["/usr/lib/replica/services", "/run/replica/services", "/etc/replica/services"]

    /// A loader reading `directories`, lowest priority first.
    public init(directories: [String] = ProfileLoader.systemDirectories) { self.directories = directories }

    /// The unit `name` names (`web` is `web.service`), refused as a profile error unless systemd
    /// would take it (`UnitName`): a name with a newline or `/` could otherwise reach a path or a drop-in.
    public static func unit(_ name: String) throws(ProfileError) -> UnitName {
        do throws(ReplicaError) { return try UnitName(name) } catch {
            throw ProfileError(file: error.objects.first ?? name, line: 0, key: nil, reason: error.hint ?? error.description)
        }
    }

    /// A profile is for one instance of a template unit (`postgresql@15-main.service.conf`), never
    /// for the template (`postgresql@.service.conf`): each instance has state paths of its own, and
    /// a template's drop-in would apply to every instance. The error names the fix.
    static func refuseTemplate(_ unit: UnitName) throws(ProfileError) {
        guard unit.isTemplate else { return }
        let base = unit.prefix.dropLast(), type = unit.type
        throw ProfileError(file: "\(unit).conf", line: 0, key: nil,
                           reason: "a profile names one instance of a template unit, not the template: name it "
                               + "\(base)@INSTANCE.\(type).conf (e.g. \(base)@main.\(type).conf), one per instance with its own state paths")
    }

    /// Loads the merged profile, or nil when no file for the unit exists anywhere.
    public func load(_ name: String) throws(ProfileError) -> Profile? {
        let unit: String
        if plainNames {
            _ = try Self.unit(name)     // a set's name: the characters of a unit name
            unit = name
        } else {
            let named = try Self.unit(name)
            try Self.refuseTemplate(named)
            unit = named.rawValue
        }
        var files: [String] = []
        let candidates: [String] = directories.reversed().map { "\($0)/\(unit).conf" }
        // Not following symlinks: a dangling one is a profile that exists (and is refused as one
        // when read), never a unit without a profile that would start unsandboxed.
        if let main = candidates.first(where: { (path: String) in faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0 }) {
            files.append(main)
        }
        var dropIns: [String: String] = [:]  // file name → path; later (higher) directories win
        for directory in directories {
            let folder = "\(directory)/\(unit).conf.d"
            guard let fd = try? OwnedFD.open(folder, O_RDONLY | O_DIRECTORY),
                  let names = try? DirectoryEntries.names(in: fd) else { continue }
            for name in names where name.hasSuffix(".conf") { dropIns[name] = "\(folder)/\(name)" }
        }
        files += dropIns.keys.sorted().map { dropIns[$0]! }
        guard !files.isEmpty else { return nil }
        var settings: [ProfileSetting] = []
        for file in files { settings += try ProfileParser.parse(try read(file), file: file, grammar: grammar) }
        return Profile(unit: unit, files: files, settings: settings)
    }

    /// Loads and reads the profile of `name` as one typed value; nil when there is none.
    public func loadService(_ name: String) throws(ProfileError) -> ServiceProfile? {
        try load(name).map { (profile) throws(ProfileError) in try ServiceProfile(profile) }
    }

    /// Where `load` looks, for "not configured" messages.
    public func searchedPaths(_ name: String) -> [String] {
        directories.reversed().map { "\($0)/\(plainNames ? name : (try? UnitName(name).rawValue) ?? name).conf" }
    }

    /// "NAME is not configured: no profile at …", then `fix` (reason `notConfigured`, exit 6).
    public func notConfigured(_ name: String, _ fix: String = "") -> ReplicaError {
        .notConfigured("\(name) is not configured: no profile at \(searchedPaths(name).joined(separator: ", "))" + (fix.isEmpty ? "" : ". \(fix)"))
    }

    private func read(_ file: String) throws(ProfileError) -> [UInt8] {
        do throws(ReplicaError) {
            let fd = try OwnedFD.open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            guard try fd.status().kind == .regular else {
                throw ReplicaError("open", [file], errno: .EINVAL, hint: "a profile must be a regular file")
            }
            return try fd.readAll(limit: ProfileParser.maxFileSize, name: file)
        } catch {
            throw ProfileError(file: file, line: 0, key: nil, reason: error.description)
        }
    }
}
