import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import XCTest

/// Inbox entries rstpmd never takes (links, directories, FIFOs, names that are not UTF-8) stayed
/// without a trace: no log line, no metric, and `--once` reported success.
final class IgnoredEntryTests: XCTestCase {
    func testEachIgnoredEntryIsLoggedOnceAndCounted() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let (logger, store) = MemoryLogHandler.logger()
        let metrics = MetricsRegistry()
        let pipeline = LinePipeline(configuration: folders.configuration(), instance: "host-a", inspector: PGMInspector(), metrics: metrics, logger: logger)
        try pipeline.prepare()
        let inbox = folders.root.appendingPathComponent("inbox")
        try FileManager.default.createSymbolicLink(at: inbox.appendingPathComponent("link.pgm"), withDestinationURL: folders.root.appendingPathComponent("model"))
        try FileManager.default.createDirectory(at: inbox.appendingPathComponent("folder.pgm"), withIntermediateDirectories: false)
        XCTAssertEqual(mkfifo(inbox.appendingPathComponent("pipe.pgm").path, 0o644), 0)
        // "café.pgm" in Latin-1: the byte 0xE9 alone is not UTF-8.
        let latin1 = Array(inbox.path.utf8) + Array("/caf".utf8) + [0xe9] + Array(".pgm".utf8) + [0]
        let descriptor = latin1.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_CREAT | O_WRONLY, 0o644) }
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        close(descriptor)

        pipeline.pass(now: 0)
        pipeline.pass(now: 1_000_000_000)
        func ignoredEvents() -> [(Logger.Level, String, Logger.Metadata)] {
            store.lock.lock(); defer { store.lock.unlock() }
            return store.entries.filter { $0.2["MESSAGE_ID"] == DaemonEvent.ignoredEntry.messageID }
        }
        let kinds = ignoredEvents().compactMap { $0.2["entry.kind"].map { "\($0)" } }.sorted()
        XCTAssertEqual(kinds, ["directory", "non_utf8_name", "other", "symbolic_link"], "each once over two passes: \(ignoredEvents())")
        XCTAssertFalse(ignoredEvents().contains { $0.1.contains("a other") || $0.1.contains("symbolicLink") }, "\(ignoredEvents())")
        XCTAssertEqual(metrics.total("rstpmd_inbox_ignored_total"), 4)
        XCTAssertEqual(pipeline.scanner.undecodableCount, 1)
        XCTAssertEqual(folders.list("work/host-a"), [])
    }
}
