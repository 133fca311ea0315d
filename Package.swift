// swift-tools-version: 6.2
// Replica: sandboxing primitives and tools for running services partially containerized under systemd.
// Layers: C targets → ReplicaKit → ReplicaStore | ReplicaNet → Replica (the composing module) → Tools.
import PackageDescription

/// Every target of ours builds in Swift 6 mode with warnings as errors; dependencies are not affected.
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

/// A system library found with pkg-config, with the Debian package that provides it.
func systemLibrary(_ name: String, pkgConfig: String, apt: String) -> Target {
    .systemLibrary(name: name, pkgConfig: pkgConfig, providers: [.apt([apt])])
}

let package = Package(
    name: "Replica",
    // Linux only: namespaces, mounts, btrfs, netlink and seccomp have no counterpart elsewhere.
    products: [
        .library(name: "ReplicaKit", targets: ["ReplicaKit"]),
        .library(name: "ReplicaStore", targets: ["ReplicaStore"]),
        .library(name: "ReplicaNet", targets: ["ReplicaNet"]),
        .library(name: "Replica", targets: ["Replica"]),
        .executable(name: "replica-store", targets: ["replica-store"]),
        .executable(name: "replica-snap", targets: ["replica-snap"]),
        .executable(name: "replica-run", targets: ["replica-run"]),
        .executable(name: "replica-shift", targets: ["replica-shift"]),
        .executable(name: "replica-net", targets: ["replica-net"]),
        .executable(name: "replica-generator", targets: ["replica-generator"]),
        .executable(name: "replica-volume", targets: ["replica-volume"]),
        .executable(name: "replica-machine", targets: ["replica-machine"]),
        .executable(name: "replica-bench", targets: ["ReplicaBench"]),
        .executable(name: "replica-net-bench", targets: ["ReplicaNetBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C: system libraries (each wrapped once, by the module that owns it) and one shim.
        // Headers only: ReplicaKit opens libsystemd and ReplicaNet libmnl with dlopen on first use
        // (CSystemd.h and CMnl.h say why), so their pkg-config link flags are deliberately not taken.
        .systemLibrary(name: "CSystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CMnl", providers: [.apt(["libmnl-dev"])]),
        systemLibrary("CSeccomp", pkgConfig: "libseccomp", apt: "libseccomp-dev"),
        systemLibrary("CCap", pkgConfig: "libcap", apt: "libcap-dev"),
        systemLibrary("CBtrfsUtil", pkgConfig: "libbtrfsutil", apt: "libbtrfsutil-dev"),
        .target(name: "CReplicaShim", cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror"])]),

        // Libraries.
        .target(name: "ReplicaKit",
                dependencies: ["CReplicaShim", "CSystemd", "CSeccomp", "CCap", .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),
        .target(name: "ReplicaStore",
                dependencies: ["ReplicaKit", "CReplicaShim", "CBtrfsUtil", .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),
        .target(name: "ReplicaNet", dependencies: ["ReplicaKit", "CReplicaShim", "CMnl"],
                swiftSettings: strict),
        // The one module that joins the three: a service's and a machine's plan, what renders them for
        // systemd, and every tool's commands.
        .target(name: "Replica", dependencies: ["ReplicaKit", "ReplicaStore", "ReplicaNet", .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),

        // Tools: doorways, each one call of its Tool in Replica (parse, run, print, exit).
        .executableTarget(name: "replica-store", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-store", swiftSettings: strict),
        .executableTarget(name: "replica-net", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-net", swiftSettings: strict),
        .executableTarget(name: "replica-snap", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-snap", swiftSettings: strict),
        .executableTarget(name: "replica-run", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-run", swiftSettings: strict),
        .executableTarget(name: "replica-shift", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-shift", swiftSettings: strict),
        .executableTarget(name: "replica-machine", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-machine", swiftSettings: strict),
        .executableTarget(name: "replica-volume", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-volume", swiftSettings: strict),
        .executableTarget(name: "replica-generator", dependencies: ["ReplicaKit", "Replica"], path: "Sources/Tools/replica-generator", swiftSettings: strict),

        // Benchmarks: in-process loops against the command a user would run, same run.
        .target(name: "BenchmarkSupport", path: "Benchmarks/Support", swiftSettings: strict),
        .executableTarget(name: "ReplicaBench", dependencies: ["ReplicaKit", "ReplicaStore", "Replica", "BenchmarkSupport"],
                          path: "Benchmarks/ReplicaBench", swiftSettings: strict),
        .executableTarget(name: "ReplicaNetBench", dependencies: ["ReplicaKit", "ReplicaNet", "BenchmarkSupport"],
                          path: "Benchmarks/ReplicaNetBench", swiftSettings: strict),

        // Tests: a support library (traits, fixtures) and one test target per module.
        .target(name: "ReplicaTestSupport", dependencies: ["ReplicaKit", "ReplicaStore", "ReplicaNet"],
                path: "Tests/ReplicaTestSupport", swiftSettings: strict),
        .testTarget(name: "ReplicaKitTests", dependencies: ["ReplicaKit", "ReplicaTestSupport", "CReplicaShim"],
                    swiftSettings: strict),
        .testTarget(name: "ReplicaStoreTests", dependencies: ["ReplicaStore", "ReplicaTestSupport"],
                    swiftSettings: strict),
        .testTarget(name: "ReplicaNetTests", dependencies: ["ReplicaNet", "ReplicaTestSupport"],
                    swiftSettings: strict),
        .testTarget(name: "ReplicaTests", dependencies: ["Replica", "ReplicaStore", "ReplicaNet", "ReplicaTestSupport"], swiftSettings: strict),
    ]
)
