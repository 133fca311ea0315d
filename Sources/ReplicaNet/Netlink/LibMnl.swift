import CMnl
import Glibc
import ReplicaKit

/// libmnl, opened with `dlopen("libmnl.so.0")` the first time a netlink message or socket is made
/// (CMnl.h says why it is not linked). `NetlinkSocket` checks `available()` first, so a host
/// without the library gets an error naming the package instead of a crash.
enum LibMnl {
    nonisolated(unsafe) private static let handle: UnsafeMutableRawPointer? = dlopen("libmnl.so.0", RTLD_NOW | RTLD_LOCAL)

    /// Throws unless the library and every function Replica uses were found.
    static func available() throws(ReplicaError) {
        guard handle != nil, missing.isEmpty else {
            throw ReplicaError("dlopen", ["libmnl.so.0"] + missing, errno: .ENOENT,
                               hint: "replica-net needs libmnl 1.0.4 or later: apt-get install libmnl0")
        }
    }

    static let putHeader: replica_mnl_nlmsg_put_header_fn = symbol("mnl_nlmsg_put_header")
    static let putExtraHeader: replica_mnl_nlmsg_put_extra_header_fn = symbol("mnl_nlmsg_put_extra_header")
    static let attrPut: replica_mnl_attr_put_fn = symbol("mnl_attr_put")
    static let attrPutStr: replica_mnl_attr_put_str_fn = symbol("mnl_attr_put_str")
    static let attrPutStrz: replica_mnl_attr_put_str_fn = symbol("mnl_attr_put_strz")
    static let attrPutU8: replica_mnl_attr_put_u8_fn = symbol("mnl_attr_put_u8")
    static let attrPutU32: replica_mnl_attr_put_u32_fn = symbol("mnl_attr_put_u32")
    static let nestStart: replica_mnl_attr_nest_start_fn = symbol("mnl_attr_nest_start")
    static let nestEnd: replica_mnl_attr_nest_end_fn = symbol("mnl_attr_nest_end")
    static let socketFdopen: replica_mnl_socket_fdopen_fn = symbol("mnl_socket_fdopen")
    static let socketBind: replica_mnl_socket_bind_fn = symbol("mnl_socket_bind")
    static let socketClose: replica_mnl_socket_close_fn = symbol("mnl_socket_close")
    static let socketPortID: replica_mnl_socket_get_portid_fn = symbol("mnl_socket_get_portid")
    static let socketSendto: replica_mnl_socket_sendto_fn = symbol("mnl_socket_sendto")
    static let socketRecvfrom: replica_mnl_socket_recvfrom_fn = symbol("mnl_socket_recvfrom")

    private static let names = [
        "mnl_nlmsg_put_header", "mnl_nlmsg_put_extra_header", "mnl_attr_put", "mnl_attr_put_str", "mnl_attr_put_strz",
        "mnl_attr_put_u8", "mnl_attr_put_u32", "mnl_attr_nest_start", "mnl_attr_nest_end", "mnl_socket_fdopen",
        "mnl_socket_bind", "mnl_socket_close", "mnl_socket_get_portid", "mnl_socket_sendto", "mnl_socket_recvfrom",
    ]
    private static let missing: [String] = names.filter { name in handle.map { dlsym($0, name) == nil } ?? true }

    private static func symbol<Function>(_ name: String) -> Function {
        guard let handle, let address = dlsym(handle, name) else {
            fatalError("replica: \(name) is not in libmnl.so.0: apt-get install libmnl0")
        }
        return unsafeBitCast(address, to: Function.self)
    }
}
