import Glibc
import ReplicaKit

/// IPv4 forwarding, per interface (`/proc/sys/net/ipv4/conf/IF/forwarding`): the kernel forwards a
/// packet when the interface it came in on forwards, so turning it on for the bridges (machines
/// out) and the uplinks — the interfaces of the host's default routes (replies and port forwards
/// in) — is enough; `net.ipv4.ip_forward`, which turns it on everywhere, is never written. Each
/// interface Replica turned on is remembered (`.forwarding` beside the records) and turned off
/// again once no bridge needs it.
enum Forwarding {
    static func path(_ interface: String) -> String { "/proc/sys/net/ipv4/conf/\(interface)/forwarding" }

    /// The interfaces of the default IPv4 routes (`ip -4 route show default`, from /proc/net/route).
    static func uplinks() -> [String] {
        guard let text = try? OwnedFD.open("/proc/net/route", O_RDONLY).readAll(limit: 1 << 20) else { return [] }
        return String(decoding: text, as: UTF8.self).split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count > 7 && fields[1] == "00000000" && fields[7] == "00000000" ? String(fields[0]) : nil
        }
    }

    /// Forwarding on for `bridges` and the uplinks (off again for what Replica turned on, when
    /// `bridges` is empty). Interfaces that do not exist yet are skipped.
    static func follow(_ bridges: [String], records: String) throws(ReplicaError) {
        let memory = "\(records)/.forwarding"
        var turnedOn = ((try? OwnedFD.open(memory, O_RDONLY).readAll(limit: 1 << 16)).map { String(decoding: $0, as: UTF8.self) } ?? "")
            .split(separator: "\n").map(String.init)
        if bridges.isEmpty {
            for interface in turnedOn { try? write(interface, "0") }
            unlink(memory)
            return
        }
        for interface in Array(Set(bridges + uplinks())).sorted() {
            guard let fd = try? OwnedFD.open(path(interface), O_RDONLY), let value = try? fd.readAll(limit: 16), value.first == UInt8(ascii: "0") else {
                continue
            }
            try write(interface, "1")
            if !turnedOn.contains(interface) { turnedOn.append(interface) }
        }
        try RootDirectory(records).writeFileAtomically(".forwarding", contents: Array(turnedOn.map { $0 + "\n" }.joined().utf8), mode: 0o644)
    }

    static func write(_ interface: String, _ value: String) throws(ReplicaError) {
        try OwnedFD.open(path(interface), O_WRONLY).writeAll(Array(value.utf8), name: path(interface))
    }
}
