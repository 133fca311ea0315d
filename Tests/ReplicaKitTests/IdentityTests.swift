import ReplicaKit
import ReplicaTestSupport
import Testing

/// Each identity holds one rule: what it takes, what it refuses (naming the rule), and that no
/// refusal can carry a control character into a message.
@Suite struct IdentityTests {
    @Test func unitNamesAreSystemdsAndKnowTheirTemplate() throws {
        #expect(try UnitName("web").rawValue == "web.service")
        #expect(try UnitName("replica-snap@web.timer").rawValue == "replica-snap@web.timer")
        let instance = try UnitName("postgresql@15-main")
        #expect(instance.rawValue == "postgresql@15-main.service" && instance.instance == "15-main" && !instance.isTemplate)
        let template = try UnitName("postgresql@.service")
        #expect(template.isTemplate && template.instance == nil && template.prefix == "postgresql@" && template.type == "service")
        for bad in ["", "web\n.service", "../etc/passwd", ".hidden", "@x", "a b", "web/x", "100%", String(repeating: "a", count: 250)] {
            #expect(throws: ReplicaError.self, "\(bad)") { try UnitName(bad) }
        }
    }

    @Test(arguments: [
        (".migrating-web", "staging"), ("snapshots", "store's folders"), ("machines", "store's folders"),
        ("templates", "store's folders"), ("nomad", "store's folders"), ("other.lock", "lock files"),
        ("", "cannot be empty"), ("..", "is not a name"), ("a/b", "one path component"), ("a\0b", "NUL"),
    ])
    func subvolumeNamesTheStoreKeepsAreRefused(name: String, rule: String) {
        let error = #expect(throws: ReplicaError.self) { try SubvolumeName(name) }
        #expect(error?.reason == .refused && error?.hint?.contains(rule) == true, "\(String(describing: error))")
    }

    @Test func subvolumeNamesOfServicesAreTaken() throws {
        for name in ["web", "web+var-lib-web", "postgresql@15-main", "a\\x2ddata", "web.lock.d", String(repeating: "a", count: 255)] {
            #expect(try SubvolumeName(name).rawValue == name)
        }
        #expect(throws: ReplicaError.self) { try SubvolumeName(String(repeating: "a", count: 256)) }
        #expect(throws: Never.self) { try SubvolumeName.requireBtrfsName(".migrating-web") }
    }

    @Test func machineNamesAreHostnames() throws {
        for name in ["web1", "web1.lab", "a-b", String(repeating: "a", count: 64)] { #expect(try MachineName(name).rawValue == name) }
        for bad in ["web_1", "-web", "web..1", "web1.", ".web", "", String(repeating: "a", count: 65), "wéb"] {
            #expect(throws: ReplicaError.self, "\(bad)") { try MachineName(bad) }
        }
    }

    @Test func namespaceLeaseAndPlainNames() throws {
        #expect(try NamespaceName("m-web1.lab").rawValue == "m-web1.lab")
        for bad in ["", ".", "..", "a/b", "a\nb"] { #expect(throws: ReplicaError.self, "\(bad)") { try NamespaceName(bad) } }
        #expect(try LeaseOwner("web.service").rawValue == "web.service")
        // The Unicode line separators end a line in a log or terminal as \n does.
        for bad in ["", ".lock", "a/b", "a\nb", "a\u{85}b", "a\u{2028}b", "a\u{7f}"] {
            #expect(throws: ReplicaError.self, "\(bad.debugDescription)") { try LeaseOwner(bad) }
        }
        #expect(try PlainName("debian-12_x.1", kind: "template").rawValue == "debian-12_x.1")
        for bad in ["", ".x", "a b", "a/b", "a:b", String(repeating: "a", count: 65)] {
            #expect(throws: ReplicaError.self, "\(bad)") { try PlainName(bad, kind: "template") }
        }
        #expect(throws: Never.self) { try PlainName(String(repeating: "a", count: 128), kind: "DHV_NAMESPACE", maxLength: 128) }
    }

    @Test func aRefusalShowsControlCharactersAsQuestionMarks() {
        let error = #expect(throws: ReplicaError.self) { try MachineName("web\n1\u{2028}x") }
        #expect(error?.objects == ["web?1?x"] && error?.description.contains("\n") == false, "\(String(describing: error))")
    }

    /// systemd-escape itself is the oracle.
    @Test(arguments: ["/var/lib/web", "/var/lib/my-app/.x", "/.hidden", "/run/netns/a b:c_d", "/run/netns/ünï", "//run//netns/", "/",
                      "/srv/100%", "/a\\b"])
    func pathsEscapeAsSystemdEscapes(path: String) throws {
        #expect(SystemdEscape.path(path) + "\n" == (try Command.check(["systemd-escape", "--path", path])))
        #expect(SystemdEscape.mountUnit(for: path) + "\n" == (try Command.check(["systemd-escape", "--path", "--suffix=mount", path])))
    }
}
