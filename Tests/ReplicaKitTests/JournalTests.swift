import CReplicaShim
import Glibc
import Logging
import ReplicaKit
import ReplicaTestSupport
import Testing

@Suite struct JournalTests {
    /// In a child with a private mount namespace, a tmpfs over /run holds a datagram socket where
    /// journald's would be; the entry `sd_journal_sendv` sends there is returned as text.
    static func captureJournalEntry(_ body: @escaping () -> Void) throws -> String {
        try ChildProcess.run(timeout: .seconds(20)) { () throws(ReplicaError) -> String in
            _ = try syscall("unshare(CLONE_NEWNS)") { replica_unshare(replica_CLONE_NEWNS) }
            _ = try syscall("mount(MS_SLAVE)", "/") { mount("", "/", nil, UInt(MS_SLAVE | MS_REC), nil) }
            _ = try syscall("mount", "/run") { mount("replica-test-journal", "/run", "tmpfs", 0, nil) }
            try createDirectories("/run/systemd/journal")
            let socket = OwnedFD(adopting: try syscall("socket") { Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0) })
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let path = Array("/run/systemd/journal/socket".utf8CString)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                path.withUnsafeBytes { raw.copyMemory(from: $0) }
            }
            _ = try syscall("bind", "/run/systemd/journal/socket") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
            body()
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = try syscall("recv") { buffer.withUnsafeMutableBytes { recv(socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } }
            return String(decoding: buffer[0..<n], as: UTF8.self)
        }
    }

    @Test(.requiresRoot)
    func entriesCarryMessageIDPriorityAndFields() throws {
        let entry = try Self.captureJournalEntry {
            var handler = ReplicaLogHandler(identifier: "replica-snap", sink: .journal)
            handler[metadataKey: "subvolume"] = "web"
            let logger = Logger(label: "test") { _ in handler }
            logger.warning("created snapshot web.20261122T023000Z",
                           metadata: [ReplicaLogHandler.messageIDKey: "5eebad6a1130448b9897db83e533d165", "snapshot-name": "x"])
        }
        let fields = entry.split(separator: "\n").map(String.init)
        #expect(fields.contains("MESSAGE=created snapshot web.20261122T023000Z"))
        #expect(fields.contains("MESSAGE_ID=5eebad6a1130448b9897db83e533d165"))
        #expect(fields.contains("PRIORITY=4"))
        #expect(fields.contains("SYSLOG_IDENTIFIER=replica-snap"))
        #expect(fields.contains("REPLICA_SUBVOLUME=web"))
        #expect(fields.contains("REPLICA_SNAPSHOT_NAME=x"))
    }
}
