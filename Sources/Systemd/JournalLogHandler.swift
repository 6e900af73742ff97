import CSystemd
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log backend for systemd-journald.
///
/// Each log call becomes one journal entry through sd_journal_sendv(3) (the variadic
/// sd_journal_send cannot be called from Swift) with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER,
/// CODE_FILE/CODE_LINE/CODE_FUNC and one field per metadata entry, its key upper-cased into a
/// journal field name (`image.path` becomes `IMAGE_PATH`, `MESSAGE_ID` stays as it is).
/// When stderr is not connected to the journal (`$JOURNAL_STREAM` does not name stderr's device
/// and inode) the handler writes one readable line per entry to stderr instead.
public struct JournalLogHandler: LogHandler {
    public enum Destination: Sendable {
        /// The native journal protocol (sd_journal_sendv).
        case journal
        /// Plain lines on stderr, for a terminal or a non-journald supervisor.
        case standardError
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public let label: String
    public let identifier: String
    public let destination: Destination

    /// - Parameters:
    ///   - label: the logger's label, sent as `LOGGER`.
    ///   - identifier: `SYSLOG_IDENTIFIER`, what `journalctl -t` filters on.
    ///   - destination: where entries go; `JournalLogHandler.detectDestination()` by default.
    public init(label: String, identifier: String = "rstpmd", destination: Destination = JournalLogHandler.detectDestination()) {
        self.label = label
        self.identifier = identifier
        self.destination = destination
    }

    /// `.journal` when `$JOURNAL_STREAM` (set by systemd for units whose output goes to the
    /// journal) names the device and inode of this process's stderr, else `.standardError`.
    public static func detectDestination() -> Destination {
        guard let stream = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return .standardError }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return .standardError }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return .standardError }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode ? .journal : .standardError
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        switch destination {
        case .journal:
            sendToJournal(event: event, metadata: merged)
        case .standardError:
            writeToStandardError(event: event, metadata: merged)
        }
    }

    /// syslog(3) priorities, which journald keeps in PRIORITY.
    public static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// A journal field name: upper case ASCII letters, digits and underscores, not starting with
    /// an underscore (those are journald's trusted fields) or a digit, at most 64 characters.
    public static func fieldName(forMetadataKey key: String) -> String {
        var name = String(key.uppercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "_" })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.isEmpty || name.first!.isNumber { name = "F_" + name }
        return String(name.prefix(64))
    }

    private func sendToJournal(event: LogEvent, metadata: Logger.Metadata) {
        var fields: [String] = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(of: event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "LOGGER=\(label)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
        ]
        for (key, value) in metadata {
            fields.append("\(Self.fieldName(forMetadataKey: key))=\(value)")
        }
        // One contiguous buffer, one iovec per field; sd_journal_sendv copes with newlines in
        // values by switching to the binary field form.
        let bytes = fields.map { Array($0.utf8) }
        var joined = [UInt8]()
        joined.reserveCapacity(bytes.reduce(0) { $0 + $1.count })
        for field in bytes { joined.append(contentsOf: field) }
        joined.withUnsafeMutableBytes { raw in
            var vectors = [iovec]()
            var offset = 0
            for field in bytes {
                vectors.append(iovec(iov_base: raw.baseAddress! + offset, iov_len: field.count))
                offset += field.count
            }
            _ = sd_journal_sendv(vectors, Int32(vectors.count))
        }
    }

    private func writeToStandardError(event: LogEvent, metadata: Logger.Metadata) {
        var line = "<\(Self.priority(of: event.level))>\(event.level): \(event.message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(metadata[key]!)"
        }
        line += "\n"
        fputs(line, stderr)
    }
}
