import DaemonSupport
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// Issue #13.9: an inbox name that is not UTF-8 (Latin-1 `caf\xe9.pgm`) stayed in the inbox for
/// ever, only logged and counted, and `--once` exited 1. Such an input is now claimed and
/// quarantined under an escaped name (`caf%E9.pgm`), its original bytes in the record.
final class NonUTF8NameTests: XCTestCase {
    /// "café.pgm" in Latin-1: the byte 0xE9 alone is not UTF-8.
    let latin1Name: [UInt8] = Array("caf".utf8) + [0xe9] + Array(".pgm".utf8)

    func makePipeline(_ folders: LineFolders, settleSeconds: Double = 0, syscalls: any Syscalls = SystemCalls()) throws -> (LinePipeline, MemoryLogHandler.Store) {
        let (logger, log) = MemoryLogHandler.logger()
        let pipeline = LinePipeline(configuration: folders.configuration(settleSeconds: settleSeconds), instance: "host-a", inspector: PGMInspector(),
                                    syscalls: syscalls, logger: logger)
        try pipeline.prepare()
        return (pipeline, log)
    }

    /// Creates `directory/<nameBytes>` holding `bytes`, by the name's bytes.
    func writeFile(_ bytes: [UInt8], in folders: LineFolders, _ directory: String, named nameBytes: [UInt8]) throws {
        let path = Array(folders.path(directory).string.utf8) + [UInt8(ascii: "/")] + nameBytes + [0]
        let descriptor = path.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_CREAT | O_WRONLY | O_TRUNC, 0o644) }
        guard descriptor >= 0 else { throw Errno(rawValue: errno) }
        defer { close(descriptor) }
        XCTAssertEqual(bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }, bytes.count)
    }

    func testANameThatIsNotUTF8IsQuarantinedOnceSettledWithItsBytesInTheRecord() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let (pipeline, log) = try makePipeline(folders, settleSeconds: 1)
        let image = PGMInspector.image()
        try writeFile(image, in: folders, "inbox", named: latin1Name)
        // A literal % is escaped too, so the escaped name always gives the bytes back.
        try writeFile(image, in: folders, "inbox", named: Array("100%".utf8) + [0xff, 0xfe] + Array(" größe.pgm".utf8))
        XCTAssertEqual(pipeline.pass(now: 0).quarantined, 0, "not settled yet")
        XCTAssertEqual(pipeline.pass(now: second).quarantined, 2)

        XCTAssertEqual(folders.list("inbox") + folders.list("work/host-a") + folders.list("archive"), [])
        XCTAssertEqual(folders.list("quarantine"), ["100%25%FF%FE größe.pgm", "100%25%FF%FE größe.pgm.error.json", "caf%E9.pgm", "caf%E9.pgm.error.json"])
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("quarantine/caf%E9.pgm"))), image, "the input is kept byte for byte")
        let record = try folders.json("quarantine/caf%E9.pgm.error.json")
        XCTAssertEqual(record["kind"] as? String, "non_utf8_name")
        XCTAssertEqual(record["file"] as? String, "caf%E9.pgm")
        XCTAssertEqual(record["original_name_hex"] as? String, "636166e92e70676d")
        XCTAssertEqual(try folders.json("quarantine/100%25%FF%FE größe.pgm.error.json")["original_name_hex"] as? String,
                       (Array("100%".utf8) + [0xff, 0xfe] + Array(" größe.pgm".utf8)).map { String(format: "%02x", $0) }.joined())
        let verdict = try folders.json("outbox/caf%E9.pgm.json")
        XCTAssertEqual(verdict["verdict"] as? String, "error")
        XCTAssertEqual(verdict["file"] as? String, "caf%E9.pgm")
        XCTAssertEqual((verdict["error"] as? [String: Any])?["kind"] as? String, "non_utf8_name")
        XCTAssertEqual((verdict["size"] as? [String: Any])?["bytes"] as? Int, image.count)
        XCTAssertEqual(Set(folders.list("outbox")), ["caf%E9.pgm.json", "100%25%FF%FE größe.pgm.json"])
        log.lock.lock(); let quarantined = log.entries.filter { $0.2["error.kind"] == "non_utf8_name" }.count; log.lock.unlock()
        XCTAssertEqual(quarantined, 2, "each logged")
    }

    /// The escaped name is de-duplicated like any other: here against an input literally called
    /// so. A directory with such a name is never taken, as any directory.
    func testTheEscapedNameIsDeduplicatedAndADirectoryStays() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let (pipeline, log) = try makePipeline(folders)
        try writeFile(Array("bytes of the Latin-1 one".utf8), in: folders, "inbox", named: latin1Name)
        try folders.write(Array("bytes of the UTF-8 one".utf8), to: "inbox/caf%E9.pgm")
        let directory = Array(folders.path("inbox").string.utf8) + Array("/dir".utf8) + [0xe9, 0]
        XCTAssertEqual(directory.withUnsafeBufferPointer { mkdir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 0o755) }, 0)
        XCTAssertEqual(pipeline.pass(now: 0).quarantined, 2)
        pipeline.pass(now: second)

        XCTAssertEqual(folders.list("quarantine"), ["caf%E9-1.pgm", "caf%E9-1.pgm.error.json", "caf%E9.pgm", "caf%E9.pgm.error.json"])
        let records = try ["caf%E9.pgm", "caf%E9-1.pgm"].map { try folders.json("quarantine/\($0).error.json") }
        let latin1 = try XCTUnwrap(records.first { $0["kind"] as? String == "non_utf8_name" })
        let utf8 = try XCTUnwrap(records.first { $0["kind"] as? String == "decode_failure" })
        XCTAssertEqual(latin1["file"] as? String, "caf%E9.pgm")
        XCTAssertEqual(utf8["file"] as? String, "caf%E9.pgm")
        XCTAssertNil(utf8["original_name_hex"])
        XCTAssertEqual(folders.list("inbox").count, 1, "the directory stays")
        log.lock.lock(); let ignored = log.entries.filter { $0.2["MESSAGE_ID"] == JournalEvent.ignoredEntry.messageID }; log.lock.unlock()
        XCTAssertEqual(ignored.map { $0.2["entry.kind"].map { "\($0)" } }, ["directory"], "once over two passes")
        XCTAssertTrue(ignored.first?.1.contains("dir%E9") ?? false, "\(ignored)")
    }

    /// `--once` exits as for any quarantined input (it exited 1: the name was left behind).
    func testOnceQuarantinesItAndSucceeds() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let yaml = bareLineYAML(folders, settings: ["settle_interval_seconds: 0.1"])
        try folders.write(Array(yaml.utf8), to: "rstpmd.yaml")
        try writeFile(PGMInspector.image(), in: folders, "inbox", named: latin1Name)
        let (logger, _) = MemoryLogHandler.logger()
        let service = DaemonService(configurationPath: folders.path("rstpmd.yaml"), modelLoader: { _ in PGMInspector() }, logger: logger)
        try service.load()
        XCTAssertEqual(service.runOnce(), 0)
        XCTAssertEqual(folders.list("quarantine"), ["caf%E9.pgm", "caf%E9.pgm.error.json"])
        XCTAssertEqual(folders.list("inbox"), [])
    }

    /// A full disk keeps it in work/ (counted in the queue) and it is retried with backoff.
    func testATransientErrorKeepsItInWorkUntilTheRetry() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let faulty = FaultySyscalls()
        faulty.inject(.open, pathContains: "/quarantine/", errno: .noSpace, times: 1)
        let (pipeline, _) = try makePipeline(folders, syscalls: faulty)
        try writeFile(PGMInspector.image(), in: folders, "inbox", named: latin1Name)
        let failed = pipeline.pass(now: 0)
        XCTAssertEqual([failed.claimed, failed.quarantined, failed.retrying, failed.queueDepth], [1, 0, 1, 1])
        XCTAssertEqual(folders.list("work/host-a").count, 1)
        XCTAssertEqual(pipeline.pass(now: second / 2).quarantined, 0, "backoff: 1 s")
        let retried = pipeline.pass(now: second)
        XCTAssertEqual([retried.quarantined, retried.queueDepth], [1, 0])
        XCTAssertEqual(folders.list("quarantine"), ["caf%E9.pgm", "caf%E9.pgm.error.json"])
    }

    /// A crash at every changing system call from the claim to the quarantine, then a restart:
    /// the input is never lost and ends in quarantine once, with one record and one verdict.
    func testQuarantineSurvivesACrashAtEveryPoint() throws {
        let bytes = PGMInspector.image()
        func run(crashAfter: Int) throws -> Int {
            let folders = try LineFolders("nonutf8crash")
            defer { folders.remove() }
            try writeFile(bytes, in: folders, "inbox", named: latin1Name)
            let crashing = CrashingSyscalls(crashAfter: crashAfter)
            try makePipeline(folders, syscalls: crashing).0.pass(now: 0)
            let (restarted, _) = try makePipeline(folders)
            restarted.recover(now: 0)
            restarted.pass(now: 0)
            let context = "crash after \(crashAfter) calls"
            XCTAssertEqual(folders.list("inbox") + folders.list("work/host-a") + folders.list("archive"), [], context)
            XCTAssertEqual(folders.list("quarantine").filter { !$0.hasPrefix(".") }, ["caf%E9.pgm", "caf%E9.pgm.error.json"], context)
            XCTAssertEqual(folders.list("outbox").filter { !$0.hasPrefix(".") }, ["caf%E9.pgm.json"], context)
            XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("quarantine/caf%E9.pgm"))), bytes, context)
            return crashing.changingCalls
        }
        let total = try run(crashAfter: .max)
        XCTAssertGreaterThan(total, 5)
        for crashAfter in 0..<total { _ = try run(crashAfter: crashAfter) }
    }

    func testEscapedNames() {
        XCTAssertEqual(escapedFileName(Array("plain.png".utf8)), "plain.png")
        XCTAssertEqual(escapedFileName(Array("größe 瓶.png".utf8)), "größe 瓶.png", "valid UTF-8 stays")
        XCTAssertEqual(escapedFileName(Array("caf".utf8) + [0xe9] + Array(".png".utf8)), "caf%E9.png")
        XCTAssertEqual(escapedFileName(Array("50%".utf8) + [0xc3]), "50%25%C3", "a lone lead byte, and % itself")
        XCTAssertEqual(escapedFileName([0xe2, 0x82] + Array("x".utf8)), "%E2%82x", "a truncated sequence, byte by byte")
    }
}
