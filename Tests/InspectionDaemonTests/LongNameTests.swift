import DaemonSupport
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// Input names up to the file system's 255 bytes: every output derived from them must fit too.
/// Names of 232 bytes and more stayed in work/ for ever (the heatmap's temporary name was too
/// long, and was retried with backoff without end).
final class LongNameTests: XCTestCase {
    func makePipeline(_ folders: LineFolders) throws -> LinePipeline {
        let (logger, _) = MemoryLogHandler.logger()
        let pipeline = LinePipeline(configuration: folders.configuration(), instance: "host-a", inspector: PGMInspector(), logger: logger)
        try pipeline.prepare()
        return pipeline
    }

    func testLongNamesGetTheirVerdictsAndLeaveWork() throws {
        let names = [
            String(repeating: "a", count: 228) + ".pgm",  // 232 bytes: only the temporary names overflowed
            String(repeating: "é", count: 120) + "-x.pgm",  // 246 bytes, two-byte characters
            String(repeating: "b", count: 251) + ".pgm",  // 255 bytes: the most a name can have
        ]
        for name in names {
            let folders = try LineFolders()
            defer { folders.remove() }
            let pipeline = try makePipeline(folders)
            try folders.write(PGMInspector.image(), to: "inbox/\(name)")
            let summary = pipeline.pass(now: 0)
            XCTAssertEqual(summary.decided, 1, "\(name.utf8.count) bytes")
            XCTAssertEqual(summary.retrying, 0, "\(name.utf8.count) bytes")
            XCTAssertEqual(folders.list("work/host-a"), [])
            XCTAssertEqual(folders.list("archive"), [name])
            let verdictName = fittingFileName(name, suffix: ".json")
            XCTAssertLessThanOrEqual(verdictName.utf8.count, 255)
            let verdict = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: folders.root.appendingPathComponent("outbox/\(verdictName)"))) as? [String: Any])
            XCTAssertEqual(verdict["file"] as? String, name, "the verdict keeps the whole name")
            let heatmap = try XCTUnwrap(verdict["heatmap"] as? String)
            XCTAssertTrue(folders.exists("outbox/\(heatmap)"), heatmap)
            XCTAssertEqual(Set(folders.list("outbox")), [verdictName, heatmap], "no temporary file left")
        }
    }

    func testLongNameThatCannotBeInspectedIsQuarantined() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders)
        let name = String(repeating: "c", count: 251) + ".pgm"
        try folders.write(Array("not a PGM".utf8), to: "inbox/\(name)")
        let summary = pipeline.pass(now: 0)
        XCTAssertEqual(summary.quarantined, 1)
        XCTAssertEqual(folders.list("work/host-a"), [])
        XCTAssertEqual(Set(folders.list("quarantine")), [name, fittingFileName(name, suffix: ".error.json")])
    }

    func testFittingNamesAreUniqueAndKeepShortNames() {
        XCTAssertEqual(fittingFileName("a.png", suffix: ".json"), "a.png.json")
        let long1 = String(repeating: "x", count: 250) + "1.png", long2 = String(repeating: "x", count: 250) + "2.png"
        XCTAssertNotEqual(fittingFileName(long1, suffix: ".json"), fittingFileName(long2, suffix: ".json"))
        XCTAssertEqual(fittingFileName(long1, suffix: ".heatmap.png").utf8.count, 255)
        XCTAssertTrue(fittingFileName(long1, suffix: ".heatmap.png").hasSuffix(".heatmap.png"))
    }
}
