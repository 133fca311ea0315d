import BenchmarkSupport
import Glibc
import ReplicaKit

/// The Nomad host-volume plugin as Nomad runs it (`env -i`, a whole process): `fingerprint`
/// against Nomad's 5 s limit, and `create` of a new quota-limited volume against what an operator
/// would run instead (`btrfs subvolume create` then `btrfs qgroup limit`) and Nomad's 60 s limit.
func benchmarkVolume() throws -> [Comparison] {
    try withBenchmarkStore(size: 1 << 30) { _, mountPoint in
        try Command.check(["btrfs", "quota", "enable", mountPoint])
        try Command.check(["mkdir", "-p", "\(mountPoint)/by-hand"])
        let plugin = Command.beside("replica-volume")
        var fingerprint: [Double] = [], create: [Double] = [], byHand: [Double] = []
        for round in 0..<40 {
            var began = monotonicNanoseconds()
            try Command.check(["env", "-i", "DHV_OPERATION=fingerprint", plugin, "fingerprint"])
            fingerprint.append(Double(monotonicNanoseconds() - began))
            began = monotonicNanoseconds()
            try Command.check(["env", "-i", "DHV_OPERATION=create", "DHV_NAMESPACE=default", "DHV_VOLUME_NAME=v\(round)",
                               "DHV_VOLUME_ID=id-\(round)", "DHV_CAPACITY_MAX_BYTES=104857600", #"DHV_PARAMETERS={"store":"\#(mountPoint)"}"#,
                               plugin, "create"])
            create.append(Double(monotonicNanoseconds() - began))
            began = monotonicNanoseconds()
            try Command.check(["btrfs", "-q", "subvolume", "create", "\(mountPoint)/by-hand/v\(round)"])
            try Command.check(["btrfs", "qgroup", "limit", "104857600", "\(mountPoint)/by-hand/v\(round)"])
            byHand.append(Double(monotonicNanoseconds() - began))
        }
        return [
            Comparison(operation: "replica-volume fingerprint, whole process", replica: median(fingerprint),
                       tool: "Nomad's limit:", toolTime: 5e9),
            Comparison(operation: "replica-volume create, 100 MiB quota, whole process", replica: median(create),
                       tool: "btrfs subvolume create + qgroup limit:", toolTime: median(byHand)),
            Comparison(operation: "replica-volume create, against Nomad's limit", replica: median(create),
                       tool: "Nomad's limit:", toolTime: 60e9),
        ]
    }
}
