import CSystemd
import Glibc
import Logging

/// Replica's swift-log handler. To the systemd journal it writes structured entries with
/// `sd_journal_sendv(3)`: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `CODE_*`, a `MESSAGE_ID` when
/// the metadata carries one (`journalctl MESSAGE_ID=…` then finds every event of that kind), and each
/// other metadata key as an upper-case `REPLICA_*` field. To a terminal it writes
/// `identifier: level: message key=value …` on standard error.
public struct ReplicaLogHandler: LogHandler {
    /// Where a handler writes.
    public enum Sink: Sendable {
        /// The systemd journal, with structured fields (`sd_journal_sendv`).
        case journal
        /// Standard error, one line per entry.
        case standardError
    }

    /// The metadata key whose value becomes the entry's `MESSAGE_ID` (32 hex digits).
    public static let messageIDKey = "message_id"

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    /// The `SYSLOG_IDENTIFIER` of journal entries, and the prefix of lines on standard error.
    public let identifier: String
    /// Where entries go.
    public let sink: Sink

    /// A handler writing to `sink` under `identifier`.
    public init(identifier: String, sink: Sink) {
        self.identifier = identifier
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
        switch sink {
        case .journal where LibSystemd.journalSendv != nil: sendToJournal(event, merged)
        case .journal, .standardError:  // without libsystemd, standard error still reaches the journal
            let extra = merged.filter { $0.key != Self.messageIDKey }.sorted { $0.key < $1.key }
                .map { " \($0.key)=\($0.value)" }.joined()
            let level = event.level == .info || event.level == .notice ? "" : "\(event.level): "
            printError("\(identifier): \(level)\(event.message)\(extra)")
        }
    }

    private func sendToJournal(_ event: LogEvent, _ metadata: Logger.Metadata) {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
        ]
        for (key, value) in metadata {
            if key == Self.messageIDKey { fields.append("MESSAGE_ID=\(value)"); continue }
            fields.append("REPLICA_\(Self.fieldName(key))=\(value)")
        }
        let buffers = fields.map { strdup($0)! }  // owned copies, freed after the call
        defer { buffers.forEach { free($0) } }
        let vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: strlen($0)) }
        _ = LibSystemd.journalSendv?(vectors, Int32(vectors.count))
    }

    /// syslog priorities: 2 critical … 7 debug.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Journal field names are upper-case letters, digits and underscores.
    static func fieldName(_ key: String) -> String {
        String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }
}

/// Chooses where logs go, once per process.
public enum ReplicaLogging {
    /// Whether standard error is connected to the journal: `$JOURNAL_STREAM` names its device and
    /// inode (systemd.exec(5)).
    public static var stderrIsJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":").compactMap { UInt64($0) }
        var st = stat()
        guard parts.count == 2, fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == parts[0] && UInt64(st.st_ino) == parts[1]
    }

    /// A tool's logger: to the journal when run by systemd (every event from `journalLevel` up),
    /// to standard error otherwise (from `terminalLevel` up: a person reads the tool's own output).
    /// Made with its handler (`Logger(label:factory:)`), not through `LoggingSystem`: a tool's start
    /// then never sets up swift-log's global factory (its first use is ~50 µs of runtime type
    /// lookups), and a program embedding the libraries keeps its own `LoggingSystem` as it is.
    public static func logger(identifier: String, journalLevel: Logger.Level = .info, terminalLevel: Logger.Level = .warning) -> Logger {
        Logger(label: identifier) { _ in handler(identifier: identifier, journalLevel: journalLevel, terminalLevel: terminalLevel) }
    }

    /// `LoggingSystem.bootstrap` with the handler `logger` uses, for a program that logs through
    /// `Logger(label:)`; `LoggingSystem` may be bootstrapped once, first thing.
    public static func bootstrap(identifier: String, journalLevel: Logger.Level = .info, terminalLevel: Logger.Level = .warning) {
        LoggingSystem.bootstrap { _ in handler(identifier: identifier, journalLevel: journalLevel, terminalLevel: terminalLevel) }
    }

    static func handler(identifier: String, journalLevel: Logger.Level, terminalLevel: Logger.Level) -> ReplicaLogHandler {
        let journal = stderrIsJournal
        var handler = ReplicaLogHandler(identifier: identifier, sink: journal ? .journal : .standardError)
        handler.logLevel = journal ? journalLevel : terminalLevel
        return handler
    }
}
