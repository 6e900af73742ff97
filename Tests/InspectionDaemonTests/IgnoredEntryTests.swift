import DaemonSupport
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// Inbox entries rstpmd never takes (links, directories, FIFOs) stayed without a trace: no log
/// line, no metric. (A regular file whose name is not UTF-8 is taken now: NonUTF8NameTests.)
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

        pipeline.pass(now: 0)
        pipeline.pass(now: 1_000_000_000)
        func ignoredEvents() -> [(Logger.Level, String, Logger.Metadata)] {
            store.lock.lock(); defer { store.lock.unlock() }
            return store.entries.filter { $0.2["MESSAGE_ID"] == JournalEvent.ignoredEntry.messageID }
        }
        let kinds = ignoredEvents().compactMap { $0.2["entry.kind"].map { "\($0)" } }.sorted()
        XCTAssertEqual(kinds, ["directory", "other", "symbolic_link"], "each once over two passes: \(ignoredEvents())")
        XCTAssertFalse(ignoredEvents().contains { $0.1.contains("a other") || $0.1.contains("symbolicLink") }, "\(ignoredEvents())")
        XCTAssertEqual(metrics.total("rstpmd_inbox_ignored_total"), 3)
        XCTAssertEqual(folders.list("work/host-a"), [])
    }
}
