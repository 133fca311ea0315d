import CSystemd
import Glibc

/// libsystemd, opened with `dlopen("libsystemd.so.0")` the first time one of its functions is
/// needed (see CSystemd.h for why it is not linked). Each function is nil when the library is absent.
enum LibSystemd {
    nonisolated(unsafe) private static let handle: UnsafeMutableRawPointer? = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL)

    static let booted: replica_sd_booted_fn? = symbol("sd_booted")
    static let notify: replica_sd_notify_fn? = symbol("sd_notify")
    static let journalSendv: replica_sd_journal_sendv_fn? = symbol("sd_journal_sendv")
    static let busOpenSystem: replica_sd_bus_open_system_fn? = symbol("sd_bus_open_system")
    static let busFlushCloseUnref: replica_sd_bus_flush_close_unref_fn? = symbol("sd_bus_flush_close_unref")
    static let busNewMethodCall: replica_sd_bus_message_new_method_call_fn? = symbol("sd_bus_message_new_method_call")
    static let busAppendBasic: replica_sd_bus_message_append_basic_fn? = symbol("sd_bus_message_append_basic")
    static let busOpenContainer: replica_sd_bus_message_open_container_fn? = symbol("sd_bus_message_open_container")
    static let busCloseContainer: replica_sd_bus_message_close_container_fn? = symbol("sd_bus_message_close_container")
    static let busCall: replica_sd_bus_call_fn? = symbol("sd_bus_call")
    static let busMessageUnref: replica_sd_bus_message_unref_fn? = symbol("sd_bus_message_unref")
    static let busErrorFree: replica_sd_bus_error_free_fn? = symbol("sd_bus_error_free")
    static let busGetPropertyString: replica_sd_bus_get_property_string_fn? = symbol("sd_bus_get_property_string")
    static let busPathEncode: replica_sd_bus_path_encode_fn? = symbol("sd_bus_path_encode")
    static let busPeekType: replica_sd_bus_message_peek_type_fn? = symbol("sd_bus_message_peek_type")
    static let busEnterContainer: replica_sd_bus_message_enter_container_fn? = symbol("sd_bus_message_enter_container")
    static let busExitContainer: replica_sd_bus_message_exit_container_fn? = symbol("sd_bus_message_exit_container")
    static let busReadBasic: replica_sd_bus_message_read_basic_fn? = symbol("sd_bus_message_read_basic")
    static let busAtEnd: replica_sd_bus_message_at_end_fn? = symbol("sd_bus_message_at_end")
    static let busNew: replica_sd_bus_new_fn? = symbol("sd_bus_new")
    static let busSetAddress: replica_sd_bus_set_address_fn? = symbol("sd_bus_set_address")
    static let busStart: replica_sd_bus_start_fn? = symbol("sd_bus_start")
    /// The `free(3)` of the C library libsystemd allocates with: a static Replica tool has a C
    /// library of its own, and freeing libsystemd's memory with that one corrupts both heaps.
    static let free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)? = symbol("free")

    /// Frees memory libsystemd allocated and handed over (`sd_bus_path_encode`, `sd_bus_get_property_string`).
    static func release(_ pointer: UnsafeMutableRawPointer?) { free?(pointer) }

    private static func symbol<Function>(_ name: String) -> Function? {
        guard let handle, let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: Function.self)
    }
}

/// Facts about the systemd around this process, from libsystemd.
public enum Systemd {
    /// Whether the machine was booted with systemd as init, `sd_booted(3)`.
    public static var isBooted: Bool { (LibSystemd.booted?() ?? 0) > 0 }

    /// Whether this process was started by systemd as (part of) a unit: `$INVOCATION_ID` is set.
    public static var isUnderSystemd: Bool { getenv("INVOCATION_ID") != nil }

    /// `sd_notify(0, STATE)`, e.g. `READY=1`: tells the service manager about this service. False
    /// when not run by systemd (no `$NOTIFY_SOCKET`) or libsystemd is missing.
    @discardableResult
    public static func notify(_ state: String) -> Bool { (LibSystemd.notify?(0, state) ?? 0) > 0 }
}
