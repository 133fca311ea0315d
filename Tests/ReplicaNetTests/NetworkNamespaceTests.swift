import Glibc
import ReplicaKit
import ReplicaNet
import ReplicaTestSupport
import Testing

@Suite struct NetworkNamespaceTests {
    @Test(.requiresRoot)
    func aNewNamespaceHasOnlyLoopbackAndIsVisibleToIP() throws {
        try withThrowawayNetworkNamespace { name in
            #expect(NetworkNamespace.list().contains(name))
            let ipList = try Command.check(["ip", "netns", "list"])
            #expect(ipList.contains(name))
            let links = try NetworkNamespace.run(in: name) { () throws(ReplicaError) -> String in
                do throws(ReplicaError) {
                    var socket = try NetlinkSocket()
                    return try socket.linkNames().joined(separator: ",")
                } catch { throw ReplicaError(error.operation, errno: error.errno) }
            }
            #expect(links == "lo")
        }
    }

    @Test(.requiresRoot)
    func creatingAnExistingNameFailsAndLeavesItIntact() throws {
        try withThrowawayNetworkNamespace { name in
            let before = try FileStatus.of("\(NetworkNamespace.directory)/\(name)")
            let error = #expect(throws: ReplicaError.self) { try NetworkNamespace.create(name) }
            #expect(error?.errno == .EEXIST && error?.reason == .exists)
            #expect(error?.hint?.contains("delete it or pick another") == true)
            // The same namespace file, neither replaced nor unmounted. Its change time is not
            // compared: after one run of the whole suite it differed between the two stats, though
            // nothing here writes to the file (open with O_EXCL fails first).
            let after = try FileStatus.of("\(NetworkNamespace.directory)/\(name)")
            #expect(after.device == before.device && after.inode == before.inode && after.mode == before.mode
                    && after.linkCount == before.linkCount && after.owner == before.owner)
        }
    }

    @Test(.requiresRoot)
    func deletingIsIdempotent() throws {
        let name = "replica-test-del-\(getpid())"
        try NetworkNamespace.create(name)
        try NetworkNamespace.delete(name)
        try NetworkNamespace.delete(name)
        #expect(!NetworkNamespace.list().contains(name))
    }

    @Test(arguments: ["", ".", "..", "a/b", String(repeating: "n", count: 256)])
    func badNamesAreRefusedBeforeAnythingIsMade(name: String) throws {
        let error = #expect(throws: ReplicaError.self) { try NetworkNamespace.create(name) }
        #expect(error?.errno == .EINVAL)
        #expect(error?.operation == "network namespace")
        // Only what this name could have made is checked: the host may add others meanwhile.
        let first = String(name.split(separator: "/").first ?? "")
        #expect(!NetworkNamespace.list().contains { $0 == name || (!first.isEmpty && $0 == first) })
    }

    @Test func theHostHasALoopbackLink() throws {
        var socket = try NetlinkSocket()
        #expect(try socket.linkNames().contains("lo"))
    }

    @Test(.requiresRoot)
    func theNamespaceFixtureLeavesNothingBehind() throws {
        let before = try HostState.capture()
        var made = ""
        try withThrowawayNetworkNamespace { name in made = name }
        #expect(!made.isEmpty)
        #expect(before.leftovers(in: try HostState.capture()) { $0.contains(made) } == [])
        #expect(access("\(NetworkNamespace.directory)/\(made)", F_OK) == -1)
    }
}
