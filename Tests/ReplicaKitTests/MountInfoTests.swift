import ReplicaKit
import Testing

@Suite struct MountInfoTests {
    static let sample = """
        22 1 0:21 / / rw,relatime shared:1 - btrfs /dev/vda rw,space_cache=v2
        36 22 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        37 22 0:30 / /run/netns rw,nosuid shared:5 master:2 propagate_from:3 - tmpfs tmpfs rw,mode=755
        38 22 0:31 / /ro ro,nosuid,nodev,noexec - tmpfs none ro

        """

    @Test func parsesEveryFieldAndUnescapesPaths() throws {
        let entries = try MountInfo.parse(Self.sample)
        #expect(entries.count == 4)
        let second = entries[1]
        #expect(second.mountID == 36 && second.parentID == 22)
        #expect(second.major == 98 && second.minor == 0)
        #expect(second.root == "/mnt1")
        #expect(second.mountPoint == "/mnt with space")
        #expect(second.mountOptions == ["rw", "noatime"])
        #expect(second.masterPeerGroup == 1)
        #expect(second.fsType == "ext3" && second.source == "/dev/root")
        #expect(second.superOptions == ["rw", "errors=continue"])
        #expect(entries[2].optionalFields == ["shared:5", "master:2", "propagate_from:3"])
        #expect(entries[2].sharedPeerGroup == 5)
        #expect(entries[3].isReadOnly && !entries[0].isReadOnly)
    }

    @Test func keepsBackslashesThatAreNotEscapes() throws {
        let entries = try MountInfo.parse("1 0 0:1 / /a\\b\\0x rw - tmpfs t rw\n")
        #expect(entries[0].mountPoint == "/a\\b\\0x")
    }

    @Test(arguments: [
        ("1 0 0:1 / /x rw tmpfs t rw", "no \" - \" separator"),
        ("1 0 0:1 / - tmpfs t rw", "expected 6 fields"),
        ("x 0 0:1 / /x rw - tmpfs t rw", "must be numbers"),
        ("-1 0 0:1 / /x rw - tmpfs t rw", "must be numbers"),
        ("99999999999999999999 0 0:1 / /x rw - tmpfs t rw", "must be numbers"),
        ("1 0 01 / /x rw - tmpfs t rw", "MAJOR:MINOR"),
        ("1 0 0:4294967296 / /x rw - tmpfs t rw", "MAJOR:MINOR"),
        ("1 0 0:1 / /x rw - tmpfs", "after \" - \""),
    ])
    func malformedLinesNameTheSourceAndLine(line: String, why: String) {
        let error = #expect(throws: ReplicaError.self) {
            _ = try MountInfo.parse("22 1 0:21 / / rw - btrfs /dev/vda rw\n" + line + "\n", source: "fixture")
        }
        #expect(error?.objects == ["fixture:2"])
        #expect(error?.errno == .EINVAL)
        #expect(error?.hint?.contains(why) == true, "\(String(describing: error))")
    }

    @Test func aPathological8MBLineIsAnErrorNotACrash() {
        var bytes = Array("1 0 0:1 / /".utf8)
        bytes += [UInt8](repeating: UInt8(ascii: "a"), count: 8 << 20)
        bytes += Array(" rw - tmpfs t rw\n".utf8)
        let error = #expect(throws: ReplicaError.self) { _ = try MountInfo.parse(bytes, source: "big") }
        #expect(error?.errno == .E2BIG)
        #expect(error?.objects == ["big:1"])
    }

    @Test func readsThisProcessesMountTable() throws {
        let entries = try MountInfo.read()
        #expect(entries.contains { $0.mountPoint == "/" })
        #expect(entries.contains { $0.mountPoint == "/proc" && $0.fsType == "proc" })
    }
}
