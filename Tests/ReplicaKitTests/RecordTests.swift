import ReplicaKit
import Testing

/// The one record format: what is written reads back the same, and no value can add a line.
@Suite struct RecordTests {
    @Test func whatIsWrittenReadsBackInOrderWithRepeatedKeys() throws {
        var record = Record()
        try record.append("hostname", "web1")
        try record.append("ssh-key", each: ["ssh-ed25519 AAAA a=b", "ssh-rsa BBBB c"])
        try record.append("empty", "")
        #expect(record.encoded == "hostname=web1\nssh-key=ssh-ed25519 AAAA a=b\nssh-key=ssh-rsa BBBB c\nempty=\n")
        let read = try Record(decoding: record.encoded, source: "test")
        #expect(read == record && read.values("ssh-key").count == 2 && read.value("empty") == "" && read.value("none") == nil)
    }

    @Test(arguments: ["a\nowner=root", "a\rb", "a\u{85}b", "a\u{2028}b", "a\0b"])
    func aValueThatWouldAddALineIsRefused(value: String) {
        var record = Record()
        let error = #expect(throws: ReplicaError.self) { try record.append("hostname", value) }
        #expect(error?.reason == .refused && record.fields.isEmpty)
    }

    @Test func keysAreWordsAndEveryLineNeedsAnEquals() {
        var record = Record()
        for key in ["", "a b", "a=b", "ä"] { #expect(throws: ReplicaError.self, "\(key)") { try record.append(key, "v") } }
        #expect(throws: ReplicaError.self) { try Record(decoding: "owner=web\ngarbage\n", source: "test") }
        #expect(throws: Never.self) { try Record(decoding: "\nowner=web\n\n", source: "test") }
    }
}
