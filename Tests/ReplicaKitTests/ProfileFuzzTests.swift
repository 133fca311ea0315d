import Glibc
import ReplicaKit
import ReplicaTestSupport
import Testing

/// The profile grammar fuzzed: generated profiles (every section and key, quoting, escapes,
/// continuations, comments) and byte-level mutations of them (control bytes, invalid UTF-8,
/// truncation, splices). Nothing crashes, and whatever parses renders back to text that parses to
/// the same settings. `REPLICA_FUZZ_ITERATIONS` sets how many inputs (default 10⁶; the
/// suite runs them all).
@Suite struct ProfileFuzzTests {
    static let fragments: [String] = {
        var lines = ProfileKeys.sections.keys.sorted().map { "[\($0)]" } + ["[Stat]", "[", "[]", "[State", "Sandbox]"]
        for (_, keys) in ProfileKeys.sections.sorted(by: { $0.key < $1.key }) {
            for key in keys.keys.sorted() {
                for value in ["", "yes", "no", "strict", "/var/lib/web", "/a /b", "\"/a b\" '/c'", "-/x:/y:norbind",
                              "/run/x:mode=0755,size=1M", "24h 14d *m", "../etc", "/a\\nb", "\\x41", "web # c", "10.88.0.0/24", "%h"] {
                    lines.append("\(key)=\(value)")
                }
            }
        }
        return lines + ["# comment", "; comment", "  # indented", "", "Path=/a \\", "  continued", "NoEquals", "=value", "Bad Key=1"]
    }()

    static func input(_ random: inout SeededRandom) -> [UInt8] {
        var text = ""
        for _ in 0..<Int.random(in: 0...12, using: &random) {
            text += fragments.randomElement(using: &random)! + (Bool.random(using: &random) ? "\n" : "\n\n")
        }
        var bytes = Array(text.utf8)
        for _ in 0..<Int.random(in: 0...3, using: &random) where !bytes.isEmpty {
            let at = Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<5, using: &random) {
            case 0: bytes[at] = UInt8.random(in: 0...255, using: &random)
            case 1: bytes.insert([0x0D, 0x00, 0x1B, 0xFF, 0xC3, 0x5C, 0x22, 0x27].randomElement(using: &random)!, at: at)
            case 2: bytes.removeSubrange(at...)
            case 3: bytes.remove(at: at)
            default: bytes.insert(contentsOf: Array(bytes[at...].prefix(16)), at: at)
            }
        }
        return bytes
    }

    @Test func parseNeverCrashesAndRoundTrips() throws {
        let iterations = getenv("REPLICA_FUZZ_ITERATIONS").flatMap { Int(String(cString: $0)) } ?? 1_000_000
        var random = SeededRandom(seed: 0x5EED_0F_F11E)
        var parsed = 0, refused = 0
        for iteration in 0..<iterations {
            let bytes = Self.input(&random)
            do {
                let settings = try ProfileParser.parse(bytes, file: "fuzz.conf")
                parsed += 1
                let again = try ProfileParser.parse(ProfileParser.render(settings), file: "fuzz.conf")
                guard again.map({ [$0.section, $0.key, $0.value] }) == settings.map({ [$0.section, $0.key, $0.value] }) else {
                    Issue.record("iteration \(iteration): render → parse changed \(settings) into \(again)")
                    return
                }
                // A typed profile either builds or says why, naming a line of the file.
                do { _ = try ServiceProfile(Profile(unit: "fuzz.service", files: ["fuzz.conf"], settings: settings)) } catch {
                    #expect(error.location?.file == "fuzz.conf")
                }
            } catch {
                refused += 1
                #expect(error.location?.file == "fuzz.conf" && !error.rule.isEmpty)
            }
        }
        print("profile fuzz: \(iterations) inputs, \(parsed) parsed and round-tripped, \(refused) refused with a reason")
        #expect(parsed > iterations / 20 && refused > iterations / 20, "both outcomes should be common: \(parsed) / \(refused)")
    }
}
