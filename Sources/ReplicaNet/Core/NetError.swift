import ReplicaKit

/// ReplicaNet's one error type: the operation (netlink request or syscall), the objects it named,
/// the errno (the kernel's, for netlink), its extended-ack message when it sent one, and a hint.
public struct NetError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var objects: [String]
    public var errno: Errno
    /// The kernel's extended ack text (`NLMSGERR_ATTR_MSG`), e.g. `Unknown device type`.
    public var kernelMessage: String?
    public var hint: String?

    public init(_ operation: String, _ objects: [String] = [], errno: Errno, kernelMessage: String? = nil,
                hint: String? = nil) {
        self.operation = operation
        self.objects = objects
        self.errno = errno
        self.kernelMessage = kernelMessage
        self.hint = hint
    }

    /// Carries a ReplicaKit error across the module boundary unchanged.
    public init(_ error: SystemError) {
        self.init(error.call, error.paths, errno: error.errno, hint: error.hint)
    }

    public var description: String {
        var text = "\(operation)(\(objects.map { "\"\($0)\"" }.joined(separator: " → "))): \(errno)"
        if let kernelMessage { text += ": kernel says \"\(kernelMessage)\"" }
        if let hint { text += ": \(hint)" }
        return text
    }
}

/// Runs ReplicaKit code from ReplicaNet, turning its `SystemError` into a `NetError`.
@inline(__always)
func kit<T: ~Copyable>(_ body: () throws(SystemError) -> T) throws(NetError) -> T {
    do throws(SystemError) { return try body() } catch { throw NetError(error) }
}
