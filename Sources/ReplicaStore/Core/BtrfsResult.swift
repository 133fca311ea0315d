import CBtrfsUtil
import ReplicaKit

/// Checks a libbtrfsutil result; on failure errno still holds the cause of the underlying call.
@inline(__always)
func btrfs(_ operation: String, _ paths: String..., hint: String? = nil, _ body: () -> btrfs_util_error)
    throws(ReplicaError)
{
    let result = body()
    guard result != BTRFS_UTIL_OK else { return }
    let errno = Errno.current
    let message = btrfs_util_strerror(result).map { String(cString: $0) }
    var hint = hint
    if result == BTRFS_UTIL_ERROR_NOT_BTRFS { hint = hint ?? "not on a btrfs filesystem" }
    let reported = errno.rawValue == 0 ? Errno.EINVAL : errno
    throw ReplicaError(operation, paths, errno: reported, detail: message, hint: hint,
                       reason: result == BTRFS_UTIL_ERROR_NOT_BTRFS ? .refused : .init(reported, fromCall: true))
}
