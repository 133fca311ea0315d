import Glibc
import ReplicaKit
import Testing

/// What this host can do, probed once; the traits below skip a test with the reason when it cannot.
public enum HostAbilities {
    /// CAP_SYS_ADMIN in the effective set (root, as CI runs the suite).
    public static let isPrivileged: Bool = (try? Capabilities.current().has(.sysAdmin)) ?? false
    /// btrfs is registered with the kernel and `mkfs.btrfs` is installed.
    public static let hasBtrfs: Bool = {
        let filesystems = (try? OwnedFD.open("/proc/filesystems", O_RDONLY).readAll()) ?? []
        let text = String(decoding: filesystems, as: UTF8.self)
        let mkfs = (try? Command.run(["mkfs.btrfs", "--version"]))?.status.isSuccess ?? false
        return text.contains("\tbtrfs\n") && mkfs
    }()
    /// Loop devices can be attached (`/dev/loop-control` exists).
    public static let hasLoopDevices: Bool = access("/dev/loop-control", R_OK | W_OK) == 0
}

extension Trait where Self == ConditionTrait {
    /// Skips unless the test runs with CAP_SYS_ADMIN.
    public static var requiresRoot: Self {
        .enabled(if: HostAbilities.isPrivileged, "needs root (CAP_SYS_ADMIN); run the suite as root, as CI does")
    }

    /// Skips unless root, btrfs, mkfs.btrfs and loop devices are all available.
    public static var requiresBtrfs: Self {
        .enabled(if: HostAbilities.isPrivileged && HostAbilities.hasBtrfs && HostAbilities.hasLoopDevices,
                 "needs root, btrfs in /proc/filesystems, mkfs.btrfs (btrfs-progs) and /dev/loop-control")
    }

    /// Skips unless the kernel has openat2(2) (Linux 5.6).
    public static var requiresOpenat2: Self {
        .enabled(if: RootDirectory.hasOpenat2, "needs openat2(2), Linux 5.6 or later")
    }
}
