import CBtrfsUtil
import ReplicaKit

/// ReplicaStore's one error type: the operation, the objects it acted on, the errno (and the
/// libbtrfsutil error when btrfs reported it), and the rule broken with its fix.
public struct StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var paths: [String]
    public var errno: Errno
    /// libbtrfsutil's own message, e.g. `Could not create snapshot`, when the failure came from it.
    public var btrfsMessage: String?
    public var hint: String?

    public init(_ operation: String, _ paths: [String] = [], errno: Errno, btrfsMessage: String? = nil,
                hint: String? = nil) {
        self.operation = operation
        self.paths = paths
        self.errno = errno
        self.btrfsMessage = btrfsMessage
        self.hint = hint
    }

    /// Carries a ReplicaKit error across the module boundary unchanged.
    public init(_ error: SystemError) {
        self.init(error.call, error.paths, errno: error.errno, hint: error.hint)
    }

    public var description: String {
        let objects = paths.map { "\"\($0)\"" }.joined(separator: " → ")
        var text = "\(operation)(\(objects)): "
        if let btrfsMessage { text += "\(btrfsMessage): " }
        text += errno.description
        if let hint { text += ": \(hint)" }
        return text
    }
}

/// Runs ReplicaKit code from ReplicaStore, turning its `SystemError` into a `StoreError`.
@inline(__always)
func kit<T: ~Copyable>(_ body: () throws(SystemError) -> T) throws(StoreError) -> T {
    do throws(SystemError) { return try body() } catch { throw StoreError(error) }
}

/// Checks a libbtrfsutil result; on failure errno still holds the cause of the underlying call.
@inline(__always)
func btrfs(_ operation: String, _ paths: String..., hint: String? = nil, _ body: () -> btrfs_util_error)
    throws(StoreError)
{
    let result = body()
    guard result != BTRFS_UTIL_OK else { return }
    let errno = Errno.current
    let message = btrfs_util_strerror(result).map { String(cString: $0) }
    var hint = hint
    if result == BTRFS_UTIL_ERROR_NOT_BTRFS { hint = hint ?? "not on a btrfs filesystem" }
    throw StoreError(operation, paths, errno: errno.rawValue == 0 ? .EINVAL : errno, btrfsMessage: message, hint: hint)
}
