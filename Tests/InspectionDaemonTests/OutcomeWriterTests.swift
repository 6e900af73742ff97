import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// `OutcomeWriter`: output names that never replace another input's, and quarantine.
final class OutcomeWriterTests: XCTestCase {
    func makeWriter(_ folders: LineFolders, syscalls: any Syscalls = SystemCalls()) throws -> (OutcomeWriter, WorkQueue) {
        let (logger, _) = MemoryLogHandler.logger()
        let line = folders.configuration()
        let files = FileOperations(syscalls: syscalls)
        try FileManager.default.createDirectory(atPath: folders.path("work/host-a").string, withIntermediateDirectories: true)
        let queue = WorkQueue(directory: folders.path("work/host-a"), inbox: line.inbox, inFlightRecordPath: folders.path("work/.record.json"),
                              lineName: line.name, settleIntervalSeconds: 0, files: files, metrics: MetricsRegistry(), logger: logger)
        let writer = OutcomeWriter(configuration: line, instance: "host-a", workQueue: queue, model: ServingModel(AnyInspector(PGMInspector())),
                                   files: files, metrics: MetricsRegistry(), logger: logger, autoAcceptor: nil)
        return (writer, queue)
    }

    func testAnOutputNameTakenByAnotherInputGetsANumber() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let (writer, _) = try makeWriter(folders)
        XCTAssertEqual(try writer.outputName(for: "a.pgm", sha256: "00", received: 0, otherWorkNames: []), "a.pgm")
        try folders.write([1], to: "archive/a.pgm")
        XCTAssertEqual(try writer.outputName(for: "a.pgm", sha256: "00", received: 0, otherWorkNames: []), "a-1.pgm")
        try folders.write([1], to: "quarantine/a-1.pgm")
        XCTAssertEqual(try writer.outputName(for: "a.pgm", sha256: "00", received: 0, otherWorkNames: ["a-2.pgm"]), "a-3.pgm")
    }

    func testQuarantineMovesTheInputWithItsRecordAndAnErrorVerdict() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let (writer, _) = try makeWriter(folders)
        try folders.write([7, 7], to: "work/host-a/bad.pgm")
        var summary = PassSummary()
        writer.quarantine(name: "bad.pgm", sha256: nil, received: 0, kind: "decode_failure", message: "cannot decode image: test",
                          hint: "check the file", now: 0, summary: &summary)
        XCTAssertEqual(summary.quarantined, 1)
        XCTAssertEqual(folders.list("quarantine"), ["bad.pgm", "bad.pgm.error.json"])
        XCTAssertEqual(folders.list("work/host-a"), [])
        XCTAssertEqual(try folders.json("quarantine/bad.pgm.error.json")["kind"] as? String, "decode_failure")
        let verdict = try folders.json("outbox/bad.pgm.json")
        XCTAssertEqual(verdict["verdict"] as? String, "error")
        XCTAssertEqual((verdict["model"] as? [String: Any])?["id"] as? String, "pgm-test-double")
    }

    func testAFailedQuarantineLeavesTheInputInWorkForARetry() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let syscalls = FaultySyscalls()
        let (writer, queue) = try makeWriter(folders, syscalls: syscalls)
        try folders.write([7, 7], to: "work/host-a/bad.pgm")
        syscalls.inject(.rename, pathContains: "/quarantine/", errno: .ioError, times: 1)
        var summary = PassSummary()
        writer.quarantine(name: "bad.pgm", sha256: nil, received: 0, kind: "decode_failure", message: "m", hint: "h", now: 0, summary: &summary)
        XCTAssertEqual(summary.quarantined, 0)
        XCTAssertEqual(summary.retrying, 1)
        XCTAssertEqual(folders.list("work/host-a"), ["bad.pgm"])
        XCTAssertEqual(queue.due(try queue.items(), now: 0).items.count, 0, "waiting for its retry")
    }
}
