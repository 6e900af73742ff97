import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// `InboxWatcher`: the poll timer and inotify, calling back on the line's queue.
final class InboxWatcherTests: XCTestCase {
    func makeWatcher(_ folders: LineFolders, settleSeconds: Double, pollSeconds: Double, queue: DispatchQueue) -> InboxWatcher {
        let (logger, _) = MemoryLogHandler.logger()
        let scanner = InboxScanner(inbox: folders.path("inbox"), settleNanoseconds: Int64(settleSeconds * 1e9), syscalls: SystemCalls())
        return InboxWatcher(scanner: scanner, pollIntervalSeconds: pollSeconds, queue: queue, logger: logger)
    }

    /// An hour's poll and a minute's settle: only inotify's IN_MOVED_TO makes the renamed-in
    /// file complete within seconds.
    func testARenamedInFileIsCompleteAtOnce() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let queue = DispatchQueue(label: "watcher-test")
        let watcher = makeWatcher(folders, settleSeconds: 60, pollSeconds: 3600, queue: queue)
        let found = expectation(description: "the renamed-in file is complete")
        watcher.start {
            if (try? watcher.scanner.scan(now: monotonicNanoseconds())) == ["moved.pgm"] { found.fulfill() }
        }
        defer { watcher.stop() }
        try folders.write(PGMInspector.image(), to: "upload.tmp")
        try FileManager.default.moveItem(at: folders.root.appendingPathComponent("upload.tmp"), to: folders.root.appendingPathComponent("inbox/moved.pgm"))
        wait(for: [found], timeout: 10)
    }

    /// A file written in place (SMB, NFS) waits out the settle interval; the timer looks again.
    func testTheTimerCallsBackAndAFileWrittenInPlaceSettles() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let queue = DispatchQueue(label: "watcher-test")
        let watcher = makeWatcher(folders, settleSeconds: 0.2, pollSeconds: 0.05, queue: queue)
        try folders.write(PGMInspector.image(), to: "inbox/written.pgm")
        let seen = monotonicNanoseconds()
        let found = expectation(description: "the file settles")
        var looks = 0
        watcher.start {
            looks += 1
            guard let ready = try? watcher.scanner.scan(now: monotonicNanoseconds()), ready == ["written.pgm"] else { return }
            XCTAssertGreaterThanOrEqual(monotonicNanoseconds() - seen, 200_000_000, "complete only after the settle interval")
            watcher.stop()
            found.fulfill()
        }
        wait(for: [found], timeout: 10)
        XCTAssertGreaterThan(queue.sync { looks }, 2, "the poll timer called back more than once")
    }

    func testStoppedItCallsBackNoMore() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let queue = DispatchQueue(label: "watcher-test")
        let watcher = makeWatcher(folders, settleSeconds: 0, pollSeconds: 0.02, queue: queue)
        var calls = 0
        watcher.start { calls += 1 }
        Thread.sleep(forTimeInterval: 0.1)
        queue.sync { watcher.stop() }
        let stoppedAt = queue.sync { calls }
        try folders.write(PGMInspector.image(), to: "upload.tmp")
        try FileManager.default.moveItem(at: folders.root.appendingPathComponent("upload.tmp"), to: folders.root.appendingPathComponent("inbox/late.pgm"))
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertGreaterThan(stoppedAt, 0)
        XCTAssertEqual(queue.sync { calls }, stoppedAt)
    }
}
