import Glibc
import ReplicaKit
import ReplicaNet

/// What a test must leave as it found: mount points, attached loop devices, links and pinned
/// network namespaces of the host. Compare a capture before and after.
public struct HostState: Equatable, Sendable, CustomStringConvertible {
    public var mountPoints: [String]
    public var loopDevices: [String]
    public var links: [String]
    public var namespaces: [String]

    /// Reads `/proc/self/mountinfo`, `/sys/block/loop*/loop/backing_file`, an RTM_GETLINK dump and
    /// `/run/netns`.
    public static func capture() throws -> HostState {
        let mounts = try MountInfo.read().map(\.mountPoint).sorted()
        var loops: [String] = []
        if let sys = try? OwnedFD.open("/sys/block", O_RDONLY | O_DIRECTORY) {
            for name in try DirectoryEntries.names(in: sys) where name.hasPrefix("loop") {
                if let backing = try? OwnedFD.open("/sys/block/\(name)/loop/backing_file", O_RDONLY).readLine() {
                    loops.append("\(name): \(backing)")
                }
            }
        }
        var socket = try NetlinkSocket()
        return HostState(mountPoints: mounts, loopDevices: loops.sorted(), links: try socket.linkNames().sorted(),
                         namespaces: NetworkNamespace.list())
    }

    /// Lines present in `after` but not in `self`: what was left behind. Tests run in parallel, so a
    /// test passes `concerning` to look only at objects it could have made; the test script compares
    /// the whole host once the suite is over.
    public func leftovers(in after: HostState, concerning: (String) -> Bool = { _ in true }) -> [String] {
        func added(_ kind: String, _ a: [String], _ b: [String]) -> [String] {
            b.filter { !a.contains($0) && concerning($0) }.map { "\(kind) \($0)" }
        }
        return added("mount", mountPoints, after.mountPoints) + added("loop", loopDevices, after.loopDevices)
            + added("link", links, after.links) + added("netns", namespaces, after.namespaces)
    }

    public var description: String {
        "\(mountPoints.count) mounts, \(loopDevices.count) loop devices, \(links.count) links, \(namespaces.count) netns"
    }
}
