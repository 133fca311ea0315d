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

    static func write(_ interface: String, _ value: String) throws(ReplicaError) { try write(path: path(interface), value) }

    static func write(path: String, _ value: String) throws(ReplicaError) {
        try OwnedFD.open(path, O_WRONLY).writeAll(Array(value.utf8), name: path)
    }

    static func read(path: String) -> String? {
        try? OwnedFD.open(path, O_RDONLY).readLine()
    }

    /// IPv6 forwarding (`/proc/sys/net/ipv6/conf/all/forwarding`): Linux has no per-interface
    /// switch for it (`conf/IF/forwarding` only makes the interface act as a router), so the
    /// host-wide one is turned on for bridges with IPv6 — with the firewall forwarding nothing
    /// but what enters or leaves a bridge of ours (`Firewall.script(confineIPv6:)`), and every
    /// interface that took router advertisements (`accept_ra=1`) made to go on taking them
    /// (`accept_ra=2`: forwarding would stop them otherwise). All of it undone with the last bridge.
    static let ipv6Forwarding = "/proc/sys/net/ipv6/conf/all/forwarding"

    /// What Replica changed for IPv6, remembered beside the records: `forwarding` and each `accept_ra IF`.
    static func ipv6Memory(_ records: String) -> String { "\(records)/.forwarding6" }

    /// Whether IPv6 forwarding is Replica's to confine: on by its hand, or off and about to be.
    static func willTurnOnIPv6(records: String) -> Bool {
        access(ipv6Memory(records), F_OK) == 0 || read(path: ipv6Forwarding) == "0"
    }

    /// IPv6 forwarding on (`needed`), as above, or back off where Replica turned it on.
    static func followIPv6(_ needed: Bool, records: String) throws(ReplicaError) {
        let memory = ipv6Memory(records)
        let remembered = ((try? OwnedFD.open(memory, O_RDONLY).readAll(limit: 1 << 16)).map { String(decoding: $0, as: UTF8.self) } ?? "")
            .split(separator: "\n").map(String.init)
        if !needed {
            if remembered.contains("forwarding") { try? write(path: ipv6Forwarding, "0") }
            for line in remembered where line.hasPrefix("accept_ra ") {
                try? write(path: "/proc/sys/net/ipv6/conf/\(line.dropFirst(10))/accept_ra", "1")
            }
            unlink(memory)
            return
        }
        guard !remembered.contains("forwarding"), read(path: ipv6Forwarding) == "0" else { return }
        var lines: [String] = ["forwarding"]
        let interfaces = (try? DirectoryEntries.names(in: try OwnedFD.open("/proc/sys/net/ipv6/conf", O_RDONLY | O_DIRECTORY))) ?? []
        for interface in interfaces.sorted() where interface != "all" && interface != "lo" {
            if read(path: "/proc/sys/net/ipv6/conf/\(interface)/accept_ra") == "1" {
                try write(path: "/proc/sys/net/ipv6/conf/\(interface)/accept_ra", "2")
                lines.append("accept_ra \(interface)")
            }
        }
        try RootDirectory(records).writeFileAtomically(".forwarding6", contents: Array(lines.map { $0 + "\n" }.joined().utf8), mode: 0o644)
        try write(path: ipv6Forwarding, "1")
    }
}
