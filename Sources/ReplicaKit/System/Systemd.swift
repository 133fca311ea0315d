import CSystemd
import Glibc

/// libsystemd, opened with `dlopen("libsystemd.so.0")` the first time one of its functions is
/// needed (see CSystemd.h for why it is not linked). Each function is nil when the library is absent.
enum LibSystemd {
    nonisolated(unsafe) private static let handle: UnsafeMutableRawPointer? = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL)

    static let notify: replica_sd_notify_fn? = symbol("sd_notify")
    static let journalSendv: replica_sd_journal_sendv_fn? = symbol("sd_journal_sendv")

    private static func symbol<Function>(_ name: String) -> Function? {
        guard let handle, let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: Function.self)
    }
}

/// Facts about the systemd around this process.
public enum Systemd {
    /// Whether the machine was booted with systemd as init: `/run/systemd/system/` exists, the
    /// test `sd_booted(3)` makes (here without loading libsystemd).
    public static var isBooted: Bool { access("/run/systemd/system/", F_OK) == 0 }

    /// Whether this process was started by systemd as (part of) a unit: `$INVOCATION_ID` is set.
    public static var isUnderSystemd: Bool { getenv("INVOCATION_ID") != nil }

    /// `sd_notify(0, STATE)`, e.g. `READY=1`: tells the service manager about this service. False
    /// when not run by systemd (no `$NOTIFY_SOCKET`) or libsystemd is missing.
    @discardableResult
    public static func notify(_ state: String) -> Bool { (LibSystemd.notify?(0, state) ?? 0) > 0 }
}
