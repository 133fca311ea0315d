import CReplicaShim
import Glibc
@testable import ReplicaKit
import ReplicaTestSupport
import Testing

/// ReplicaKit's own D-Bus client (System/DBus): the wire format both ways, what it does with a
/// message that does not follow it, and calls answered by dbus-daemon, the reference implementation.
@Suite struct BusTests {
    /// A body as `StartTransientUnit` takes it reads back as written, alignment and all.
    @Test func aBodyReadsBackAsWritten() throws {
        var writer = BusWriter()
        writer.string("web.mount")
        writer.string("fail")
        writer.array(alignment: 8) { array in
            for (key, value) in [("What", "/srv/a"), ("Where", "/srv/b")] {
                array.structure { $0.string(key); $0.variant("s") { $0.string(value) } }
            }
        }
        writer.array(alignment: 8) { _ in }
        writer.bool(true)
        writer.uint32(7)
        var reader = BusReader(writer.bytes, bigEndian: false)
        let values = try reader.values("ssa(sv)a(sa(sv))bu")
        #expect(values == [.string("web.mount"), .string("fail"),
                           .list([.record([.string("What"), .string("/srv/a")]), .record([.string("Where"), .string("/srv/b")])]),
                           .list([]), .bool(true), .unsigned(7)])
        #expect(reader.atEnd)
        // Big-endian senders are read in their order.
        var big = BusReader([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], bigEndian: true)
        #expect(try big.values("ut") == [.unsigned(5), .unsigned(256)])
    }

    /// A method call parses back into its header fields and body; a message cut short, with a
    /// length that points past its end, or with any byte changed is refused with EBADMSG or read
    /// as some other valid message — never a crash or a read out of bounds.
    @Test func aMalformedMessageIsRefused() throws {
        let message = BusMessage.methodCall(serial: 9, destination: "org.freedesktop.systemd1", path: "/org/freedesktop/systemd1",
                                            interface: "org.freedesktop.DBus.Properties", member: "GetAll", signature: "sas") { body in
            body.string("org.freedesktop.systemd1.Service")
            body.array(alignment: 4) { $0.string("BindPaths"); $0.string("User") }
        }
        let parsed = try BusMessage(message)
        #expect(parsed.kind == .methodCall && parsed.serial == 9)
        #expect(parsed.body == [.string("org.freedesktop.systemd1.Service"), .list([.string("BindPaths"), .string("User")])])
        for length in [0, 15, 16, message.count - 1] {
            #expect(throws: ReplicaError.self) { try BusMessage(Array(message.prefix(length))) }
        }
        // The body's array (after the 36 bytes of the first string) claims 4 GiB.
        let bodyLength = message[4..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        var huge = message
        let arrayAt = message.count - bodyLength + 36
        huge.replaceSubrange(arrayAt..<arrayAt + 4, with: [0xF0, 0xFF, 0xFF, 0xFF])
        #expect(throws: ReplicaError.self) { try BusMessage(huge) }
        // An array of empty structs would never end: refused.
        var empty = BusReader([8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bigEndian: false)
        #expect(throws: ReplicaError.self) { try empty.values("a()") }
        var refused = 0
        for index in message.indices {
            for value: UInt8 in [0, 1, 0x7F, 0xFF] where message[index] != value {
                var changed = message
                changed[index] = value
                do { _ = try BusMessage(changed) } catch {
                    #expect(error.errno == .EBADMSG)
                    refused += 1
                }
            }
        }
        #expect(refused > 0, "the control: changed bytes are noticed")
    }

    /// Against a real dbus-daemon: the opening (AUTH EXTERNAL, BEGIN, Hello sent at once), calls
    /// sent together and answered in order, a dictionary of variants, and an error reply with the
    /// errno sd-bus gives its name.
    @Test(.enabled(if: access("/usr/bin/dbus-daemon", X_OK) == 0, "needs dbus-daemon (Debian: dbus-daemon)"))
    func callsAreAnsweredByDbusDaemon() throws {
        try withTemporaryDirectory { directory in
            let socket = directory + "/bus"
            let daemon = try Command.spawn(["dbus-daemon", "--session", "--nofork", "--address=unix:path=\(socket)"])
            // SIGKILL: a process spawned from a test's thread inherits its blocked SIGTERM.
            defer { kill(daemon, SIGKILL); var status: Int32 = 0; waitpid(daemon, &status, 0) }
            for _ in 0..<500 where access(socket, F_OK) != 0 { usleep(10_000) }
            let bus = try BusConnection(path: socket, destination: "org.freedesktop.DBus")
            let daemonPath = "/org/freedesktop/DBus", daemonInterface = "org.freedesktop.DBus"
            let replies = try bus.call([
                .init(path: daemonPath, interface: daemonInterface, member: "GetId"),
                .init(path: daemonPath, interface: daemonInterface, member: "NameHasOwner", signature: "s") { $0.string("org.freedesktop.DBus") },
                .init(path: daemonPath, interface: daemonInterface, member: "GetNameOwner", signature: "s") { $0.string("org.example.Nobody") },
                .init(path: daemonPath, interface: "org.freedesktop.DBus.Properties", member: "GetAll", signature: "s") { $0.string(daemonInterface) },
            ])
            guard case .values(let id) = replies[0], case .string(let text) = id.first else { Issue.record("GetId: \(replies[0])"); return }
            #expect(text.count == 32 && text.allSatisfy(\.isHexDigit))
            guard case .values(let owned) = replies[1] else { Issue.record("NameHasOwner: \(replies[1])"); return }
            #expect(owned == [.bool(true)])
            guard case .error(let name, let said) = replies[2] else { Issue.record("GetNameOwner: \(replies[2])"); return }
            #expect(name == "org.freedesktop.DBus.Error.NameHasNoOwner" && !said.isEmpty)
            #expect(BusConnection.errno(name) == .ENOENT)
            guard case .values(let all) = replies[3], case .list(let entries) = all.first else { Issue.record("GetAll: \(replies[3])"); return }
            let names = entries.compactMap { if case .record(let pair) = $0, case .string(let key) = pair.first { key } else { nil } }
            #expect(names.contains("Interfaces") && names.contains("Features"))
            // The same connection keeps serving: calls after the first batch.
            let again = try bus.call([.init(path: daemonPath, interface: "org.freedesktop.DBus.Peer", member: "Ping")])
            guard case .values(let none) = again[0] else { Issue.record("Ping: \(again[0])"); return }
            #expect(none.isEmpty)
        }
    }

    /// A socket that only queues (a daemon not started yet) gives ETIMEDOUT by the deadline
    /// instead of waiting for ever; the control: the same wait on dbus-daemon is answered.
    @Test func aSocketThatNeverAnswersTimesOut() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/queue"
            let listener = OwnedFD(adopting: socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
            _ = try syscall("bind", path) { replica_bind_unix(listener.rawValue, path) }
            _ = try syscall("listen", path) { listen(listener.rawValue, 4) }
            let bus = try BusConnection(path: path, destination: "org.freedesktop.DBus")
            let sent = try bus.send([.init(path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus.Peer", member: "Ping")])
            let start = ContinuousClock.now
            do throws(ReplicaError) {
                _ = try bus.replies(to: sent, openedBy: start + .milliseconds(100))
                Issue.record("a socket nobody accepts on answered")
            } catch {
                #expect(error.errno == .ETIMEDOUT)
            }
            let waited = ContinuousClock.now - start
            #expect(waited >= .milliseconds(90) && waited < .seconds(5), "waited \(waited)")
        }
    }
}
