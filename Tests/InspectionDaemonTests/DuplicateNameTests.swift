import Checkpoints
import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// Issue #13.6: two inputs of the same name each keep their own verdict and heatmap, named as
/// the archived (or quarantined) input, also when one is inspected again after a crash.
final class DuplicateNameTests: XCTestCase {
    func makePipeline(_ folders: LineFolders, _ line: LineConfiguration, syscalls: any Syscalls = SystemCalls()) throws -> LinePipeline {
        let (logger, _) = MemoryLogHandler.logger()
        let pipeline = LinePipeline(configuration: line, instance: "host-a", inspector: PGMInspector(), syscalls: syscalls, logger: logger)
        try pipeline.prepare()
        return pipeline
    }

    let firstImage = PGMInspector.image(hot: [(1, 1, 4, 4)])
    let secondImage = PGMInspector.image()

    func testSameNameTwiceKeepsBothVerdicts() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration())
        try folders.write(firstImage, to: "inbox/dup.pgm")
        XCTAssertEqual(pipeline.pass(now: 0).decided, 1)
        try folders.write(secondImage, to: "inbox/dup.pgm")
        XCTAssertEqual(pipeline.pass(now: second).decided, 1)
        try folders.write(Array("corrupt".utf8), to: "inbox/dup.pgm")
        XCTAssertEqual(pipeline.pass(now: 2 * second).quarantined, 1)

        XCTAssertEqual(folders.list("archive"), ["dup-1.pgm", "dup.pgm"])
        XCTAssertEqual(folders.list("quarantine"), ["dup-2.pgm", "dup-2.pgm.error.json"])
        XCTAssertEqual(folders.list("outbox").filter { !$0.hasPrefix(".") },
                       ["dup-1.pgm.heatmap.png", "dup-1.pgm.json", "dup-2.pgm.json", "dup.pgm.heatmap.png", "dup.pgm.json"])
        let verdicts = try ["dup.pgm", "dup-1.pgm", "dup-2.pgm"].map { try folders.json("outbox/\($0).json") }
        XCTAssertEqual(verdicts.map { $0["file"] as? String }, ["dup.pgm", "dup.pgm", "dup.pgm"], "the name it arrived with")
        XCTAssertEqual(verdicts.map { $0["verdict"] as? String }, ["defect", "ok", "error"])
        XCTAssertEqual(verdicts[0]["sha256"] as? String, sha256Hex(of: firstImage))
        XCTAssertEqual(verdicts[1]["sha256"] as? String, sha256Hex(of: secondImage))
        XCTAssertEqual(verdicts[0]["heatmap"] as? String, "dup.pgm.heatmap.png")
        XCTAssertEqual(verdicts[1]["heatmap"] as? String, "dup-1.pgm.heatmap.png")
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("archive/dup-1.pgm"))), secondImage)
        XCTAssertEqual(try folders.json("quarantine/dup-2.pgm.error.json")["file"] as? String, "dup.pgm")
    }

    /// With `processed_inputs: delete` nothing but the outbox keeps a deleted input's name: a
    /// later input of that name, even with the same bytes, replaced its verdict and heatmap.
    func testSameNameTwiceUnderDeleteKeepsBothVerdicts() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration(policy: .delete))
        for (index, image) in [firstImage, secondImage, firstImage].enumerated() {
            try folders.write(image, to: "inbox/dup.pgm")
            XCTAssertEqual(pipeline.pass(now: Int64(index) * second).decided, 1)
        }
        try folders.write(Array("corrupt".utf8), to: "inbox/dup.pgm")
        XCTAssertEqual(pipeline.pass(now: 3 * second).quarantined, 1)

        XCTAssertEqual(folders.list("inbox") + folders.list("work/host-a") + folders.list("archive"), [])
        XCTAssertEqual(folders.list("quarantine"), ["dup-3.pgm", "dup-3.pgm.error.json"])
        XCTAssertEqual(folders.list("outbox").filter { !$0.hasPrefix(".") }, [
            "dup-1.pgm.heatmap.png", "dup-1.pgm.json", "dup-2.pgm.heatmap.png", "dup-2.pgm.json", "dup-3.pgm.json",
            "dup.pgm.heatmap.png", "dup.pgm.json",
        ])
        let verdicts = try ["dup.pgm", "dup-1.pgm", "dup-2.pgm", "dup-3.pgm"].map { try folders.json("outbox/\($0).json") }
        XCTAssertEqual(verdicts.map { $0["file"] as? String }, ["dup.pgm", "dup.pgm", "dup.pgm", "dup.pgm"], "the name it arrived with")
        XCTAssertEqual(verdicts.map { $0["verdict"] as? String }, ["defect", "ok", "defect", "error"])
        XCTAssertEqual(verdicts.map { $0["sha256"] as? String }.prefix(3), [sha256Hex(of: firstImage), sha256Hex(of: secondImage), sha256Hex(of: firstImage)])
        XCTAssertEqual(verdicts.map { $0["heatmap"] as? String }.prefix(3), ["dup.pgm.heatmap.png", "dup-1.pgm.heatmap.png", "dup-2.pgm.heatmap.png"])
    }

    /// An input literally named like another's de-duplicated name, in work/ at the same time:
    /// neither takes the other's outputs.
    func testADeduplicatedNameAvoidsAnInputOfThatName() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration())
        try folders.write(firstImage, to: "inbox/x.pgm")
        XCTAssertEqual(pipeline.pass(now: 0).decided, 1)
        try folders.write(secondImage, to: "inbox/x.pgm")
        try folders.write(firstImage, to: "inbox/x-1.pgm")
        XCTAssertEqual(pipeline.pass(now: second).decided, 2)
        XCTAssertEqual(folders.list("archive"), ["x-1.pgm", "x-2.pgm", "x.pgm"])
        XCTAssertEqual(try folders.json("outbox/x-1.pgm.json")["file"] as? String, "x-1.pgm")
        XCTAssertEqual(try folders.json("outbox/x-2.pgm.json")["file"] as? String, "x.pgm")
        XCTAssertEqual(try folders.json("outbox/x-2.pgm.json")["sha256"] as? String, sha256Hex(of: secondImage))
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("archive/x-2.pgm"))), secondImage)
    }

    /// A crash at every changing system call while the second `dup.pgm` is handled, then a
    /// restart: the outputs carry the same name as the archived input, never a third one.
    func testDuplicateNameIsStableAcrossACrashAtEveryPoint() throws {
        try checkDuplicateNameIsStableAcrossACrashAtEveryPoint(policy: .archive)
    }

    /// The same under `processed_inputs: delete`: the verdict an input finds in the outbox after
    /// a crash is its own, and it keeps that name.
    func testDuplicateNameIsStableAcrossACrashAtEveryPointUnderDelete() throws {
        try checkDuplicateNameIsStableAcrossACrashAtEveryPoint(policy: .delete)
    }

    func checkDuplicateNameIsStableAcrossACrashAtEveryPoint(policy: ProcessedInputPolicy) throws {
        func run(crashAfter: Int) throws -> Int {
            let folders = try LineFolders("dupcrash")
            defer { folders.remove() }
            let line = folders.configuration(policy: policy)
            try folders.write(firstImage, to: "inbox/dup.pgm")
            XCTAssertEqual(try makePipeline(folders, line).pass(now: 0).decided, 1)
            try folders.write(secondImage, to: "inbox/dup.pgm")
            let crashing = CrashingSyscalls(crashAfter: crashAfter)
            try makePipeline(folders, line, syscalls: crashing).pass(now: 0)
            let restarted = try makePipeline(folders, line)
            restarted.recover(now: 0)
            restarted.pass(now: 0)
            let context = "\(policy), crash after \(crashAfter) calls"
            XCTAssertEqual(folders.list("inbox") + folders.list("work/host-a") + folders.list("quarantine"), [], context)
            XCTAssertEqual(folders.list("archive"), policy == .archive ? ["dup-1.pgm", "dup.pgm"] : [], context)
            XCTAssertEqual(folders.list("outbox").filter { !$0.hasPrefix(".") },
                           ["dup-1.pgm.heatmap.png", "dup-1.pgm.json", "dup.pgm.heatmap.png", "dup.pgm.json"], context)
            XCTAssertEqual(try folders.json("outbox/dup.pgm.json")["sha256"] as? String, sha256Hex(of: firstImage), context)
            XCTAssertEqual(try folders.json("outbox/dup-1.pgm.json")["sha256"] as? String, sha256Hex(of: secondImage), context)
            XCTAssertEqual(try folders.json("outbox/dup-1.pgm.json")["file"] as? String, "dup.pgm", context)
            return crashing.changingCalls
        }
        let total = try run(crashAfter: .max)
        XCTAssertGreaterThan(total, 5)
        for crashAfter in 0..<total { _ = try run(crashAfter: crashAfter) }
    }
}
