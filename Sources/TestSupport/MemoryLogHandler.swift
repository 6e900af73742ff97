import Foundation
import Logging

/// A log handler that keeps every entry in memory, so tests can read what was logged.
public struct MemoryLogHandler: LogHandler {
    public final class Store: @unchecked Sendable {
        public let lock = NSLock()
        public var entries: [(Logger.Level, String, Logger.Metadata)] = []
        public var messages: [String] { lock.lock(); defer { lock.unlock() }; return entries.map(\.1) }
    }
    public let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init(store: Store) { self.store = store }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        store.lock.lock(); store.entries.append((event.level, "\(event.message)", merged)); store.lock.unlock()
    }

    /// A logger writing into a new store.
    public static func logger() -> (Logger, Store) {
        let store = Store()
        return (Logger(label: "test") { _ in MemoryLogHandler(store: store) }, store)
    }
}
