import ReplicaKit
import Testing

/// `JSON.parse`: what RFC 8259 allows, refused otherwise with the offset; writing and reading
/// again gives the same value.
@Suite struct JSONParserTests {
    @Test func readsEveryKindOfValue() throws {
        let value = try JSON.parse(#" { "a": [1, -2.5, 3e2, true, false, null], "b": "x\"\\\/\n\u00e9\ud83d\ude00", "c": {} } "#)
        #expect(value == .object([
            ("a", .array([.int(1), .double(-2.5), .double(300), .bool(true), .bool(false), .null])),
            ("b", .string("x\"\\/\né😀")),
            ("c", .object([])),
        ]))
    }

    @Test func whatItWritesItReadsBack() throws {
        let value = JSON.object([("schema", .string("replica.v1")), ("tab\there", .array([.int(Int64.max), .int(Int64.min), .string("\u{01}")]))])
        #expect(try JSON.parse(value.serialized()) == value)
        #expect(try JSON.parse(value.serialized(indent: nil)) == value)
    }

    /// The exact text, pretty and compact: what scripts and the schema see.
    @Test func writesTheTextExactly() {
        let value = JSON.object([
            ("a", .array([.int(-7), .double(2.5), .double(.infinity), .bool(true), .null, .array([]), .object([])])),
            ("b\"\\", .string("q\"b\\n\nr\rt\t\u{01}\u{1f} é😀")),
            ("c", .object([("d", .array([.string("")]))])),
        ])
        #expect(value.serialized() == """
            {
              "a": [
                -7,
                2.5,
                null,
                true,
                null,
                [],
                {}
              ],
              "b\\"\\\\": "q\\"b\\\\n\\nr\\rt\\t\\u0001\\u001f é😀",
              "c": {
                "d": [
                  ""
                ]
              }
            }
            """)
        #expect(value.serialized(indent: nil)
                == #"{"a":[-7,2.5,null,true,null,[],{}],"b\"\\":"q\"b\\n\nr\rt\t\u0001\u001f é😀","c":{"d":[""]}}"#)
    }

    @Test(arguments: ["", "{", "{\"a\":1,}", "[1,]", "{'a':1}", "01", "1.", "-", "tru", "\"\u{01}\"", "\"\\x\"", "\"\\ud800\"",
                      "{\"a\":1}{", "{\"a\":1,\"a\":2}", "NaN", "// c\n1", "\"abc", String(repeating: "[", count: 100) + String(repeating: "]", count: 100)])
    func refusesWhatIsNotJSON(text: String) {
        let error = #expect(throws: ReplicaError.self) { try JSON.parse(text) }
        #expect(error?.reason == .refused)
        #expect(error?.hint?.contains("at byte") == true)
    }

    @Test func stringMembersAreOnlyForObjectsOfStrings() throws {
        #expect(try JSON.parse(#"{"k":"v","l":""}"#).stringMembers.map { $0.map { "\($0.0)=\($0.1)" } } == ["k=v", "l="])
        #expect(try JSON.parse(#"{"k":1}"#).stringMembers == nil)
        #expect(try JSON.parse(#"["k"]"#).stringMembers == nil)
    }
}
