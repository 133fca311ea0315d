import Glibc
import ReplicaKit

/// What `replica-generator` does at every boot and `systemctl daemon-reload`: read every profile
/// (`/usr/lib` → `/run` → `/etc`, with drop-ins) and write each unit's drop-in,
/// `OUTPUT/UNIT.d/replica.conf`, into the generator's output folder (systemd empties it each run,
/// so nothing stale survives and nothing is lost at a reboot). A profile that does not parse gets
/// the refusing drop-in (`ServicePlan.refusingDropIn`): its unit fails to start, naming the
/// error, and never runs unsandboxed. Each profile is checked whole, as a `ServicePlan`: one that
/// `replica-shift`, `replica-snap` or `replica-net` would refuse is refused here first.
public struct ProfileGenerator {
    /// Where profiles are looked up.
    public var loader: ProfileLoader
    /// `replica-shift` as the units' drop-ins run it.
    public var shiftCommand: String

    /// A generator reading profiles with `loader`, writing drop-ins that run `shiftCommand`.
    public init(loader: ProfileLoader = ProfileLoader(), shiftCommand: String = "/usr/bin/replica-shift") {
        self.loader = loader
        self.shiftCommand = shiftCommand
    }

    /// One unit's outcome.
    public struct Outcome: Sendable {
        /// The unit, e.g. `web.service`.
        public var unit: String
        /// nil when its drop-in sandboxes it; the error when it refuses to start.
        public var error: ProfileError?
    }

    /// The units that have a profile file or a drop-in folder in any profile directory, sorted;
    /// names that are not profile names (`UNIT.service.conf`) are reported in `ignored`.
    public func units() -> (units: [String], ignored: [String]) {
        var units: Set<String> = [], ignored: [String] = []
        for directory in loader.directories {
            guard let fd = try? OwnedFD.open(directory, O_RDONLY | O_DIRECTORY),
                  let names = try? DirectoryEntries.names(in: fd) else { continue }
            for name in names {
                let unit = name.hasSuffix(".conf") ? String(name.dropLast(5))
                    : name.hasSuffix(".conf.d") ? String(name.dropLast(7)) : nil
                guard let unit else { continue }
                if (try? UnitName(unit))?.rawValue == unit {
                    units.insert(unit)
                } else {
                    ignored.append("\(directory)/\(name)")
                }
            }
        }
        return (units.sorted(), ignored.sorted())
    }

    /// Writes every unit's drop-in into `output`, returning what was written. Every profile is
    /// checked alone, then against the others (`conflicts`): two services on one state path, on
    /// nested ones, or on one subvolume of one store both refuse to start, each naming the other.
    public func generate(into output: String) throws(ReplicaError) -> [Outcome] {
        var loaded: [(unit: String, plan: Result<ServicePlan, ProfileError>)] = []
        for unit in units().units {
            do throws(ProfileError) {
                guard let plan = try ServicePlan.load(unit, loader: loader) else {
                    // Listed in a profile directory, yet nothing to read: fail closed, never unsandboxed.
                    throw ProfileError(file: unit, line: 0, key: nil, reason: "its profile is listed but cannot be read")
                }
                loaded.append((unit, .success(plan)))
            } catch {
                loaded.append((unit, .failure(error)))
            }
        }
        let conflicts = Self.conflicts(loaded.compactMap { try? $0.plan.get() })
        var outcomes: [Outcome] = []
        for (unit, result) in loaded {
            var text: String
            var failure: ProfileError?
            do throws(ProfileError) {
                let plan = try result.get()
                if let conflict = conflicts[unit] { throw conflict }
                do throws(ReplicaError) { text = try plan.dropIn(shiftCommand: shiftCommand) } catch {
                    throw ProfileError(file: plan.profile.files.first ?? unit, line: 0, key: nil, reason: error.description)
                }
            } catch {
                failure = error
                text = ServicePlan.refusingDropIn(unit: unit, error: error, shiftCommand: shiftCommand)
            }
            let directory = "\(output)/\(unit).d"
            if mkdir(directory, 0o755) != 0 && Errno.current != .EEXIST { throw ReplicaError.current("mkdir", [directory]) }
            let fd = try OwnedFD.open("\(directory)/replica.conf", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o644)
            try fd.writeAll(Array(text.utf8), name: "\(directory)/replica.conf")
            outcomes.append(Outcome(unit: unit, error: failure))
        }
        return outcomes
    }

    /// What no profile shows alone: two services whose state paths are the same or nested (one would
    /// run on the other's state, or bind over it), or whose state is one subvolume of one store (the
    /// second's prepare, snapshots and rollback would act on the first's). Each unit involved gets an
    /// error naming the other; a unit not involved gets none.
    public static func conflicts(_ plans: [ServicePlan]) -> [String: ProfileError] {
        struct Claim { var unit: String; var path: String; var store: String; var subvolume: String; var file: String }
        let claims = plans.flatMap { plan in
            plan.profile.state.map { Claim(unit: plan.profile.unit, path: $0.path, store: plan.profile.storePath, subvolume: $0.subvolume,
                                           file: plan.profile.files.first ?? plan.profile.unit) }
        }
        var errors: [String: ProfileError] = [:]
        for (index, a) in claims.enumerated() {
            for b in claims[(index + 1)...] where a.unit != b.unit {
                let why: String? =
                    a.path == b.path ? "both keep their state in \(a.path)"
                    : StatePath.isBelow(a.path, b.path) || StatePath.isBelow(b.path, a.path) ? "their state paths \(a.path) and \(b.path) are nested"
                    : a.store == b.store && a.subvolume == b.subvolume ? "both name subvolume \(a.subvolume) of \(a.store)"
                    : nil
                guard let why else { continue }
                for (this, other) in [(a, b), (b, a)] where errors[this.unit] == nil {
                    errors[this.unit] = ProfileError(file: this.file, line: 0, key: nil,
                                                     reason: "\(this.unit) and \(other.unit): \(why); each service's state is its own, "
                                                         + "so neither starts until one of them changes its [State] Path= or [Snapshots] Subvolume=")
                }
            }
        }
        // A state path on, in or above another profile's store would copy that store into itself or
        // bind over it: only the unit naming the path is refused.
        let stores = Set(plans.map(\.profile.storePath))
        for claim in claims where errors[claim.unit] == nil {
            guard let store = stores.sorted().first(where: { claim.path == $0 || StatePath.isBelow(claim.path, $0) || StatePath.isBelow($0, claim.path) })
            else { continue }
            let users = plans.filter { $0.profile.storePath == store }.map(\.profile.unit).sorted().joined(separator: ", ")
            errors[claim.unit] = ProfileError(file: claim.file, line: 0, key: nil,
                                              reason: "\(claim.unit): its state path \(claim.path) overlaps \(store), the store of \(users); "
                                                  + "state is outside every store, so it does not start until its [State] Path= changes")
        }
        return errors
    }
}
