import Glibc

/// Finds and merges a service's profile the way systemd finds unit files:
/// - the main file `UNIT.conf` is taken from the highest-priority directory that has it
///   (`/etc/replica/services` over `/run/replica/services` over `/usr/lib/replica/services`);
/// - drop-ins `UNIT.conf.d/*.conf` from all directories are applied after it in lexical order of
///   file name, a drop-in in a higher-priority directory masking one of the same name below.
public struct ProfileLoader: Sendable {
    /// Lowest priority first.
    public var directories: [String]

    public static let systemDirectories = ["/usr/lib/replica/services", "/run/replica/services", "/etc/replica/services"]

    public init(directories: [String] = ProfileLoader.systemDirectories) { self.directories = directories }

    /// `web` and `web.service` both name `web.service`.
    public static func unitName(_ name: String) -> String {
        let suffixes = [".service", ".socket", ".timer", ".target", ".mount", ".path"]
        return suffixes.contains { name.hasSuffix($0) } ? name : name + ".service"
    }

    /// Loads the merged profile, or nil when no file for the unit exists anywhere.
    public func load(_ name: String) throws(ProfileError) -> Profile? {
        let unit = Self.unitName(name)
        guard !unit.contains("/"), !unit.hasPrefix(".") else {
            throw ProfileError(file: name, line: 0, key: nil, reason: "a unit name cannot contain \"/\" or start with \".\"")
        }
        var files: [String] = []
        let candidates: [String] = directories.reversed().map { "\($0)/\(unit).conf" }
        if let main = candidates.first(where: { (path: String) in access(path, F_OK) == 0 }) {
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
        for file in files { settings += try ProfileParser.parse(try read(file), file: file) }
        return Profile(unit: unit, files: files, settings: settings)
    }

    /// Where `load` looks, for "not configured" messages.
    public func searchedPaths(_ name: String) -> [String] {
        directories.reversed().map { "\($0)/\(Self.unitName(name)).conf" }
    }

    private func read(_ file: String) throws(ProfileError) -> String {
        do throws(SystemError) {
            let fd = try OwnedFD.open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            guard try fd.status().kind == .regular else {
                throw SystemError("open", [file], errno: .EINVAL, hint: "a profile must be a regular file")
            }
            return String(decoding: try fd.readAll(limit: ProfileParser.maxFileSize, name: file), as: UTF8.self)
        } catch {
            throw ProfileError(file: file, line: 0, key: nil, reason: error.description)
        }
    }
}
