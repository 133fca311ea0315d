import CReplicaShim
import Glibc
import ReplicaKit

/// Where `replica-snap send` puts copies of a subvolume's snapshots: a folder on a btrfs
/// filesystem of this host, or one on another host reached with ssh (`ssh://[user@]host[:port]/path`,
/// with ssh's own options, keys and known_hosts; `replica-snap receive` runs there). Each
/// subvolume's copies go in `TARGET/NAME/`, under the snapshots' own names, as btrbk lays them out.
public struct ReplicationTarget: Equatable, Sendable, CustomStringConvertible {
    /// Where the copies go.
    public enum Location: Equatable, Sendable {
        /// A folder on this host.
        case local(String)
        /// A folder on another host, through ssh.
        case ssh(user: String?, host: String, port: Int?, path: String)
    }

    /// Where the copies go.
    public var location: Location

    /// Parses `/path` or `ssh://[user@]host[:port]/path`; refuses relative paths, `.` and `..`,
    /// and hosts or users ssh would read as options.
    public init(parsing text: String) throws(ReplicaError) {
        func refuse(_ why: String) -> ReplicaError {
            ReplicaError("replication target", [text], errno: .EINVAL, hint: why + "; write /PATH or ssh://[USER@]HOST[:PORT]/PATH", reason: .refused)
        }
        func checkPath(_ path: String) throws(ReplicaError) -> String {
            guard path.hasPrefix("/"), !path.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) else {
                throw refuse("the path must be absolute, without . or ..")
            }
            return path
        }
        guard text.hasPrefix("ssh://") else {
            location = .local(try checkPath(text))
            return
        }
        let rest = text.dropFirst("ssh://".count)
        guard let slash = rest.firstIndex(of: "/") else { throw refuse("no path after the host") }
        var authority = String(rest[..<slash])
        let path = try checkPath(String(rest[slash...]))
        var user: String?
        if let at = authority.firstIndex(of: "@") {
            user = String(authority[..<at])
            authority = String(authority[authority.index(after: at)...])
        }
        var port: Int?
        if let colon = authority.lastIndex(of: ":") {
            guard let number = Int(authority[authority.index(after: colon)...]), (1...65535).contains(number) else {
                throw refuse("the port must be a number from 1 to 65535")
            }
            port = number
            authority = String(authority[..<colon])
        }
        let allowed = { (word: String) in
            !word.isEmpty && !word.hasPrefix("-") && word.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "'") }
        }
        guard allowed(authority), user.map(allowed) ?? true else { throw refuse("the host and user must be plain words, not starting with '-'") }
        location = .ssh(user: user, host: authority, port: port, path: path)
    }

    /// The target as it was written.
    public var description: String {
        switch location {
        case .local(let path): path
        case .ssh(let user, let host, let port, let path): "ssh://\(user.map { "\($0)@" } ?? "")\(host)\(port.map { ":\($0)" } ?? "")\(path)"
        }
    }
}

/// A subvolume in a target folder, as btrfs describes it.
public struct TargetCopy: Equatable, Sendable {
    /// Its name in the folder (`web.20261122T023000Z`).
    public var name: String
    /// Its subvolume id on the target's filesystem: what deletes act on.
    public var id: UInt64
    /// The uuid of the snapshot it was received from; nil for a subvolume not made by a receive.
    public var receivedUUID: String?
    /// Whether it is read-only: a finished receive is.
    public var readOnly: Bool

    /// A copy as a target describes it.
    public init(name: String, id: UInt64, receivedUUID: String?, readOnly: Bool) {
        (self.name, self.id, self.receivedUUID, self.readOnly) = (name, id, receivedUUID, readOnly)
    }

    /// How the sender names a copy to delete on the other side: `NAME:ID`.
    public var deletionRequest: String { "\(name):\(id)" }

    /// The copy a `NAME:ID` deletion request names, split at the last `:` (a name may hold `:`; an
    /// id never does); nil when it is not one.
    public init?(deletionRequest text: String) {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex, let id = UInt64(text[text.index(after: colon)...]) else {
            return nil
        }
        self.init(name: String(text[..<colon]), id: id, receivedUUID: nil, readOnly: true)
    }

    /// Whether it is a finished copy of the snapshot with this uuid.
    public func isCopy(of uuid: String) -> Bool { readOnly && receivedUUID == uuid }
}

/// What sending one subvolume's snapshots to a target did.
public struct ReplicationReport: Sendable {
    /// One snapshot sent, or to be sent for a dry run.
    public struct Sent: Sendable {
        /// The snapshot's name.
        public var name: String
        /// The snapshot it was sent as a difference from; nil for a full send.
        public var parent: String?
        /// The error, when this one failed (the rest were not tried).
        public var error: ReplicaError?

        /// A snapshot sent as a difference from `parent` (nil: in full).
        public init(name: String, parent: String?, error: ReplicaError? = nil) { (self.name, self.parent, self.error) = (name, parent, error) }
    }

    /// The subvolume.
    public var subvolume: String
    /// The target, as written.
    public var target: String
    /// What was (or would be) sent, oldest first.
    public var sent: [Sent] = []
    /// Snapshots the target already held.
    public var alreadyThere: [String] = []
    /// Interrupted receives found and removed before sending (garbled copies).
    public var cleaned: [String] = []
    /// A failure before anything could be sent.
    public var error: ReplicaError?

    /// Whether everything that was to be sent arrived.
    public var succeeded: Bool { error == nil && sent.allSatisfy { $0.error == nil } }

    /// The exit code of a send of these subvolumes (`ExitCode.of(done:failures:)`): a subvolume
    /// counts as done when it succeeded or sent anything.
    public static func exitCode(_ reports: [ReplicationReport]) -> Int32 {
        ExitCode.of(done: reports.filter { $0.succeeded || $0.sent.contains { $0.error == nil } }.count,
                    failures: reports.flatMap { [$0.error].compactMap { $0 } + $0.sent.compactMap(\.error) })
    }
}

/// What a send does, decided from the snapshots alone: oldest first, each one the target holds a
/// copy of (by its received uuid) is already there; each other one is sent, incrementally from the
/// snapshot before it — which the target holds by then, already or just sent — and in full only
/// when it is the oldest.
public struct SendPlan: Equatable, Sendable {
    /// One snapshot's fate, by its index in the oldest-first list.
    public enum Step: Equatable, Sendable {
        /// The target holds a copy.
        case alreadyThere(Int)
        /// Send it, incrementally from `parent` (an index), in full when nil.
        case send(Int, parent: Int?)
    }

    /// One step per snapshot, in order.
    public let steps: [Step]

    /// The plan for snapshots with these uuids (oldest first) and a target holding copies of `held`.
    public init(uuids: [String], held: Set<String>) {
        steps = uuids.indices.map { index in
            held.contains(uuids[index]) ? .alreadyThere(index) : .send(index, parent: index == 0 ? nil : index - 1)
        }
    }
}
