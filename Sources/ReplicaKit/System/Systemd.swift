import CSystemd
import Glibc

/// Facts about the systemd around this process, from libsystemd.
public enum Systemd {
    /// Whether the machine was booted with systemd as init, `sd_booted(3)`.
    public static var isBooted: Bool { sd_booted() > 0 }

    /// Whether this process was started by systemd as (part of) a unit: `$INVOCATION_ID` is set.
    public static var isUnderSystemd: Bool { getenv("INVOCATION_ID") != nil }
}
