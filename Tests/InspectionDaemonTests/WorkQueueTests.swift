import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// `WorkQueue`: claims by rename, claim order, and retry backoff.
final class WorkQueueTests: XCTestCase {
    func makeQueue(_ folders: LineFolders, metrics: MetricsRegistry = MetricsRegistry()) throws -> WorkQueue {
        let (logger, _) = MemoryLogHandler.logger()
        try FileManager.default.createDirectory(atPath: folders.path("work/host-a").string, withIntermediateDirectories: true)
        return WorkQueue(directory: folders.path("work/host-a"), inbox: folders.path("inbox"), inFlightRecordPath: folders.path("work/.record.json"),
                         lineName: "line-1", settleIntervalSeconds: 0, files: FileOperations(syscalls: SystemCalls()), metrics: metrics, logger: logger)
    }

    func testAClaimRenamesIntoWorkAndALostRaceIsCounted() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let metrics = MetricsRegistry()
        let queue = try makeQueue(folders, metrics: metrics)
        try folders.write([1], to: "inbox/a.pgm")
        var forgotten: [String] = []
        XCTAssertTrue(queue.claim("a.pgm") { forgotten.append("a.pgm") })
        XCTAssertEqual(folders.list("work/host-a"), ["a.pgm"])
        XCTAssertEqual(folders.list("inbox"), [])
        // Another daemon took it first: the scanner forgets it, and the loss is counted.
        XCTAssertFalse(queue.claim("gone.pgm") { forgotten.append("gone.pgm") })
        XCTAssertEqual(forgotten, ["a.pgm", "gone.pgm"])
        XCTAssertEqual(metrics.counter("rstpmd_claims_lost_total", labels: ["line": "line-1"]), 1)
    }

    func testASameNamedFileWaitsInTheInboxWhileOneIsInWork() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let queue = try makeQueue(folders)
        try folders.write([1], to: "work/host-a/a.pgm")
        try folders.write([2], to: "inbox/a.pgm")
        XCTAssertFalse(queue.claim("a.pgm") { XCTFail("the name did not leave the inbox") })
        XCTAssertEqual(folders.list("inbox"), ["a.pgm"])
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("work/host-a/a.pgm"))), [1])
    }

    func testItemsComeInClaimOrder() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let queue = try makeQueue(folders)
        for name in ["c.pgm", "a.pgm", "b.pgm"] {
            try folders.write([1], to: "inbox/\(name)")
            XCTAssertTrue(queue.claim(name) {})
            // ctime comes from the kernel's coarse clock (a tick is 4 or 10 ms): 5 ms apart
            // sometimes gave two claims the same ctime.
            usleep(25_000)
        }
        try folders.write([1], to: "work/host-a/.hidden")
        XCTAssertEqual(try queue.items().map(\.name), ["c.pgm", "a.pgm", "b.pgm"], "by claim time (ctime), dot files left out")
    }

    func testARetryWaitsOutItsBackoff() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let queue = try makeQueue(folders)
        try folders.write([1], to: "work/host-a/a.pgm")
        try folders.write([1], to: "work/host-a/b.pgm")
        let items = try queue.items()
        var summary = PassSummary()
        queue.scheduleRetry("a.pgm", now: 0, stage: "write", error: Errno.noSpace, summary: &summary)
        XCTAssertEqual(summary.retrying, 1)
        XCTAssertEqual(queue.due(items, now: 0).items.map(\.name), ["b.pgm"])
        XCTAssertEqual(queue.due(items, now: second).items.map(\.name).sorted(), ["a.pgm", "b.pgm"], "1 s after the first failure")
        queue.scheduleRetry("a.pgm", now: second, stage: "write", error: Errno.noSpace, summary: &summary)
        XCTAssertEqual(queue.due(items, now: 2 * second).items.map(\.name), ["b.pgm"], "2 s after the second")
        XCTAssertEqual(queue.due(items, now: 3 * second).items.count, 2)
        queue.scheduleRetry("a.pgm", now: 3 * second, stage: "write", error: Errno.noSpace, summary: &summary)
        queue.finished("a.pgm")
        XCTAssertEqual(queue.due(items, now: 3 * second).items.count, 2, "a finished input's retry is forgotten")
        XCTAssertEqual((0..<11).map { WorkQueue.backoffSeconds(afterAttempts: $0) }, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300])
    }
}
