import CReplicaShim
import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// Which namespace a mount made by this process reaches.
@Suite struct SystemdManagerTests {
    /// In the tests' own mount namespace mounts reach the host (PID 1 shares it); in a child
    /// that made a mount namespace of its own, they do not, and it says so.
    @Test func mountsReachTheHostOnlyFromItsNamespace() throws {
        // Where PID 1's namespace cannot be read (a container's init we may not trace), it is not claimed.
        let first = try Command.run(["readlink", "/proc/1/ns/mnt"])
        let mine = try Command.check(["readlink", "/proc/self/ns/mnt"])
        let shared = first.status == .exited(0) && first.output == mine
        #expect(SystemdManager.mountsReachHost == shared)
        let inside = try ChildProcess.run { () throws(ReplicaError) -> Bool in
            _ = try syscall("unshare(CLONE_NEWNS)") { replica_unshare(replica_CLONE_NEWNS) }
            return SystemdManager.mountsReachHost
        }
        #expect(inside == false)
        // Outside a unit, mounts are made directly whatever the namespace (tests, shells).
        #expect(getenv("INVOCATION_ID") != nil || !SystemdManager.mountsThroughPID1)
    }
}
