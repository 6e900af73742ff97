import Checkpoints
import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// Issue #13.11: a writer that pauses longer than the settle interval, its descriptor open. The
/// file was claimed in a pause, quarantined as truncated, and then finished by the writer inside
/// the quarantine, so the quarantined file no longer matched its error.json. An input that
/// cannot be decoded is now looked at a second time once it has stayed unchanged for four
/// settle intervals, and the quarantine gets exactly the bytes that were judged.
final class SlowWriterTests: XCTestCase {
    func makePipeline(_ folders: LineFolders, inspector: PGMInspector = PGMInspector(), syscalls: any Syscalls = SystemCalls()) throws -> LinePipeline {
        let (logger, _) = MemoryLogHandler.logger()
        let pipeline = LinePipeline(configuration: folders.configuration(settleSeconds: 1), instance: "host-a", inspector: inspector, syscalls: syscalls, logger: logger)
        try pipeline.prepare()
        return pipeline
    }

    let image = PGMInspector.image()

    /// A writer holding the file open in the inbox, its first `count` bytes written.
    func startWriting(_ folders: LineFolders, _ name: String, count: Int) throws -> FileHandle {
        try folders.write(Array(image[..<count]), to: "inbox/\(name)")
        let handle = try FileHandle(forWritingTo: folders.root.appendingPathComponent("inbox/\(name)"))
        handle.seekToEndOfFile()
        return handle
    }

    func testAnInputStillBeingWrittenIsLookedAtAgainAndDecided() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let inspector = PGMInspector()
        let pipeline = try makePipeline(folders, inspector: inspector)
        let writer = try startWriting(folders, "slow.pgm", count: image.count / 3)
        XCTAssertEqual(pipeline.pass(now: 0).claimed, 0)
        // The writer pauses longer than the settle interval: claimed, and not decodable yet.
        let claimed = pipeline.pass(now: second)
        XCTAssertEqual([claimed.claimed, claimed.decided, claimed.quarantined], [1, 0, 0])
        XCTAssertEqual(folders.list("work/host-a"), ["slow.pgm"])
        // It writes on into the claimed file, which waits for four unchanged settle intervals.
        writer.write(Data(image[(image.count / 3)...]))
        try writer.close()
        for now in [2 * second, 5 * second, 6 * second - 1] {
            let waiting = pipeline.pass(now: now)
            XCTAssertEqual([waiting.decided, waiting.quarantined], [0, 0], "at \(now)")
        }
        XCTAssertEqual(pipeline.pass(now: 6 * second).decided, 1)
        XCTAssertEqual(inspector.names, ["slow.pgm", "slow.pgm"])
        XCTAssertEqual(folders.list("quarantine"), [])
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("archive/slow.pgm"))), image)
        XCTAssertEqual(try folders.json("outbox/slow.pgm.json")["sha256"] as? String, sha256Hex(of: image))
    }

    func testTheQuarantineKeepsTheBytesThatWereJudged() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders)
        let judged = Array(image[..<(image.count / 2)])
        let writer = try startWriting(folders, "stalled.pgm", count: judged.count)
        pipeline.pass(now: 0)
        XCTAssertEqual(pipeline.pass(now: second).quarantined, 0, "first look")
        XCTAssertEqual(pipeline.pass(now: 5 * second - 1).quarantined, 0, "unchanged for less than four settle intervals")
        XCTAssertEqual(pipeline.pass(now: 5 * second).quarantined, 1, "second look")
        // The writer wakes up after the judgement and writes through its open descriptor.
        writer.write(Data(image[judged.count...]))
        try writer.close()

        XCTAssertEqual(folders.list("work/host-a"), [])
        XCTAssertEqual(folders.list("quarantine"), ["stalled.pgm", "stalled.pgm.error.json"])
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("quarantine/stalled.pgm"))), judged)
        let record = try folders.json("quarantine/stalled.pgm.error.json")
        XCTAssertEqual(record["sha256"] as? String, sha256Hex(of: judged))
        XCTAssertEqual(record["kind"] as? String, "decode_failure")
        let verdict = try folders.json("outbox/stalled.pgm.json")
        XCTAssertEqual(verdict["sha256"] as? String, sha256Hex(of: judged))
        XCTAssertEqual((verdict["size"] as? [String: Any])?["bytes"] as? Int, judged.count)
    }

    /// `--once` waits for the second look instead of leaving the input in work/.
    func testOnceWaitsForTheSecondLook() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let yaml = bareLineYAML(folders, settings: ["poll_interval_seconds: 0.05", "settle_interval_seconds: 0.2"])
        try folders.write(Array(yaml.utf8), to: "rstpmd.yaml")
        try folders.write(Array("not a PGM".utf8), to: "inbox/bad.pgm")
        let inspector = PGMInspector()
        let (logger, _) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: folders.path("rstpmd.yaml"), modelLoader: { _ in inspector }, logger: logger)
        try service.load()
        XCTAssertEqual(service.runOnce(), 0)
        XCTAssertEqual(inspector.names, ["bad.pgm", "bad.pgm"])
        XCTAssertEqual(folders.list("work/test-host"), [])
        XCTAssertEqual(folders.list("quarantine"), ["bad.pgm", "bad.pgm.error.json"])
    }

    /// A crash at every changing system call from the claim to the quarantine, then a restart:
    /// the input ends in quarantine once, with one record and one verdict.
    func testQuarantineAfterASecondLookSurvivesACrashAtEveryPoint() throws {
        let corrupt = Array("not a PGM, and never will be".utf8)
        func run(crashAfter: Int) throws -> Int {
            let folders = try LineFolders("slowcrash")
            defer { folders.remove() }
            try folders.write(corrupt, to: "inbox/bad.pgm")
            let crashing = CrashingSyscalls(crashAfter: crashAfter)
            let pipeline = try makePipeline(folders, syscalls: crashing)
            for now in [0, second, 5 * second] { pipeline.pass(now: now) }
            let restarted = try makePipeline(folders)
            restarted.recover(now: 10 * second)
            for seconds: Int64 in 11...30 { restarted.pass(now: seconds * second) }
            let context = "crash after \(crashAfter) calls"
            XCTAssertEqual(folders.list("inbox") + folders.list("work/host-a") + folders.list("archive"), [], context)
            XCTAssertEqual(folders.list("quarantine").filter { !$0.hasPrefix(".") }, ["bad.pgm", "bad.pgm.error.json"], context)
            XCTAssertEqual(folders.list("outbox").filter { !$0.hasPrefix(".") }, ["bad.pgm.json"], context)
            XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("quarantine/bad.pgm"))), corrupt, context)
            return crashing.changingCalls
        }
        let total = try run(crashAfter: .max)
        XCTAssertGreaterThan(total, 5)
        for crashAfter in 0..<total { _ = try run(crashAfter: crashAfter) }
    }
}
