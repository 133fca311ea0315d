import Glibc

extension SystemdManager {
    /// A loaded unit's invocation id (hex, as in `$INVOCATION_ID`) and its service properties
    /// (`busctl get-property UNIT org.freedesktop.systemd1.Service NAME…`), asked of PID 1, which
    /// has the unit as it read its files.
    public static func serviceProperties(of unit: UnitName) throws(ReplicaError) -> ServiceProperties {
        try ServicePropertiesQuery(unit).answer()
    }

    /// A unit's invocation id and service properties, as PID 1 reports them.
    public struct ServiceProperties: Sendable {
        /// `InvocationID`, hex as in `$INVOCATION_ID`.
        public var invocation: String
        /// Every property of `org.freedesktop.systemd1.Service`, by name.
        public var properties: [String: BusValue]
    }

    /// The question of `serviceProperties(of:)`, asked before the answer is needed: PID 1 collects
    /// the properties while the caller reads its profile. One `Get` of `InvocationID` and one
    /// `GetAll` of the service interface, sent together. Through the system bus where dbus-daemon
    /// runs (PID 1 is connected to it already: about 1.4 ms less of PID 1's time than a
    /// connection to its private socket); when dbus-daemon has not begun to answer within 250 ms
    /// — a unit started before dbus.service, whose socket then only queues — the question goes
    /// to PID 1's private socket instead (root), as it does where there is no system bus.
    public final class ServicePropertiesQuery {
        private let unit: UnitName
        private let calls: [BusConnection.Call]
        private var connection: BusConnection
        private var sent: BusConnection.Sent
        private let asked = ContinuousClock.now

        /// Connects to the service manager and sends the two calls.
        public init(_ unit: UnitName) throws(ReplicaError) {
            self.unit = unit
            let path = SystemdManager.unitPath(unit.rawValue)
            calls = [
                .property("InvocationID", of: "org.freedesktop.systemd1.Unit", at: path),
                BusConnection.Call(path: path, interface: "org.freedesktop.DBus.Properties", member: "GetAll", signature: "s") { body in
                    body.string("org.freedesktop.systemd1.Service")
                },
            ]
            do throws(ReplicaError) {
                let bus: BusConnection
                if let systemBus = try? BusConnection.systemd(.systemBus) { bus = systemBus } else { bus = try BusConnection.systemd() }
                connection = bus
                sent = try connection.send(calls)
            } catch {
                throw Self.failure(unit, error)
            }
        }

        private static func failure(_ unit: UnitName, _ error: ReplicaError) -> ReplicaError {
            ReplicaError("systemd GetAll", [unit.rawValue], errno: error.errno, detail: error.description, hint: "is systemd running, with its D-Bus socket?")
        }

        /// Waits for PID 1's answer.
        public func answer() throws(ReplicaError) -> ServiceProperties {
            var replies: [BusConnection.Reply]
            do throws(ReplicaError) {
                if connection.throughBusDaemon, geteuid() == 0, access(BusConnection.systemdPrivateSocket, F_OK) == 0 {
                    do throws(ReplicaError) { replies = try connection.replies(to: sent, openedBy: asked + .milliseconds(250)) } catch where error.errno == .ETIMEDOUT {
                        connection = try BusConnection.systemd(.privateSocket)
                        sent = try connection.send(calls)
                        replies = try connection.replies(to: sent)
                    }
                } else {
                    replies = try connection.replies(to: sent)
                }
            } catch {
                throw Self.failure(unit, error)
            }
            let hint = "is \(unit) loaded (systemctl status \(unit))?"
            let invocationValues = try replies[0].values("systemd GetAll", [unit.rawValue], hint: hint)
            let allValues = try replies[1].values("systemd GetAll", [unit.rawValue], hint: hint)
            guard case .list(let bytes) = invocationValues.first, case .list(let entries) = allValues.first else {
                throw ReplicaError("systemd GetAll", [unit.rawValue], errno: .EBADMSG)
            }
            let invocation = bytes.map { if case .unsigned(let byte) = $0 { String(byte, radix: 16).leftPadded(2) } else { "" } }.joined()
            var properties: [String: BusValue] = [:]
            for case .record(let pair) in entries where pair.count == 2 {
                if case .string(let name) = pair[0] { properties[name] = pair[1] }
            }
            return ServiceProperties(invocation: invocation, properties: properties)
        }
    }
}
