import BuildInfo
import Checkpoints
import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

final class PipelineTests: XCTestCase {
    func makePipeline(_ folders: LineFolders, _ line: LineConfiguration, instance: String = "host-a",
                      inspector: PGMInspector = PGMInspector(), syscalls: any Syscalls = SystemCalls()) throws -> LinePipeline {
        let (logger, _) = MemoryLogHandler.logger()
        let pipeline = LinePipeline(configuration: line, instance: instance, inspector: inspector, syscalls: syscalls, logger: logger)
        try pipeline.prepare()
        return pipeline
    }

    func testHalfWrittenFileIsTakenOnlyOnceItSettles() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration(settleSeconds: 1))
        let image = PGMInspector.image()
        let half = image.count / 2
        try folders.write(Array(image[..<half]), to: "inbox/part.pgm")
        // Names uploaders use while writing, a link and a directory: never taken.
        for name in [".hidden.pgm", "upload.pgm.part", "upload.pgm.tmp", "upload.pgm~", "page.crdownload"] {
            try folders.write(image, to: "inbox/\(name)")
        }
        try FileManager.default.createSymbolicLink(atPath: folders.path("inbox/link.pgm").string, withDestinationPath: folders.path("inbox/.hidden.pgm").string)
        try FileManager.default.createDirectory(atPath: folders.path("inbox/folder.pgm").string, withIntermediateDirectories: false)

        XCTAssertEqual(pipeline.pass(now: 0).claimed, 0, "first sight: not settled yet")
        let handle = try FileHandle(forWritingTo: folders.root.appendingPathComponent("inbox/part.pgm"))
        handle.seekToEndOfFile()
        handle.write(Data(image[half...]))
        try handle.close()
        XCTAssertEqual(pipeline.pass(now: 1 * second + second / 2).claimed, 0, "grew since the last look")
        XCTAssertEqual(pipeline.pass(now: 2 * second).claimed, 0, "unchanged for only 0.5 s")
        let summary = pipeline.pass(now: 3 * second)
        XCTAssertEqual(summary.claimed, 1)
        XCTAssertEqual(summary.decided, 1)
        XCTAssertEqual(folders.list("archive"), ["part.pgm"])
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("archive/part.pgm"))), image, "the complete file was inspected")
        XCTAssertEqual(folders.list("inbox"), [".hidden.pgm", "folder.pgm", "link.pgm", "page.crdownload", "upload.pgm.part", "upload.pgm.tmp", "upload.pgm~"])
        XCTAssertEqual(folders.list("quarantine"), [])
    }

    func testRenamedInFileIsTakenWithoutWaiting() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration(settleSeconds: 60))
        try folders.write(PGMInspector.image(), to: "inbox/moved.pgm")
        pipeline.scanner.noteMovedIn("moved.pgm")
        XCTAssertEqual(pipeline.pass(now: 0).decided, 1)
    }

    /// The live watcher: the poll timer is set to an hour and the settle interval to a minute,
    /// so only inotify's IN_MOVED_TO can make the renamed-in file go through within seconds.
    func testInotifyPicksUpARenamedInFilePromptly() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        var line = folders.configuration(settleSeconds: 60)
        line.pollIntervalSeconds = 3600
        let pipeline = try makePipeline(folders, line)
        pipeline.start()
        defer { pipeline.requestStop(); _ = pipeline.waitUntilIdle(timeout: .now() + 10) }
        XCTAssertTrue(pipeline.waitUntilIdle(timeout: .now() + 10))
        try folders.write(PGMInspector.image(), to: "inbox/.upload.pgm.part")
        try FileManager.default.moveItem(atPath: folders.path("inbox/.upload.pgm.part").string, toPath: folders.path("inbox/final.pgm").string)
        let deadline = Date().addingTimeInterval(10)
        while !folders.exists("archive/final.pgm") && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(folders.exists("archive/final.pgm"))
        XCTAssertTrue(folders.exists("outbox/final.pgm.json"))
    }

    /// A pass starts with a one-image batch (the network starts after one decode), and files
    /// renamed in while it runs join it: inotify is read before each claim, not only between
    /// passes.
    func testABurstStillArrivingJoinsTheRunningPass() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        var line = folders.configuration(settleSeconds: 60, batchSize: 4)
        line.pollIntervalSeconds = 3600
        let inspector = PGMInspector()
        let later = (0..<5).map { "later-\($0).pgm" }
        let arrivals = DispatchGroup()
        arrivals.enter()
        var first = true
        inspector.beforeBatch = {
            guard first else { return }
            first = false
            for name in later {
                try? folders.write(PGMInspector.image(), to: "inbox/.\(name).part")
                try? FileManager.default.moveItem(atPath: folders.path("inbox/.\(name).part").string, toPath: folders.path("inbox/\(name)").string)
            }
            arrivals.leave()
        }
        let (logger, log) = MemoryLogHandler.logger()
        let pipeline = LinePipeline(configuration: line, instance: "host-a", inspector: inspector, syscalls: SystemCalls(), logger: logger)
        try pipeline.prepare()
        pipeline.start()
        defer { pipeline.requestStop(); _ = pipeline.waitUntilIdle(timeout: .now() + 10) }
        XCTAssertTrue(pipeline.waitUntilIdle(timeout: .now() + 10))
        try folders.write(PGMInspector.image(), to: "inbox/.first.pgm.part")
        try FileManager.default.moveItem(atPath: folders.path("inbox/.first.pgm.part").string, toPath: folders.path("inbox/first.pgm").string)
        XCTAssertEqual(arrivals.wait(timeout: .now() + 10), .success)
        let deadline = Date().addingTimeInterval(10)
        while folders.list("archive").count < 6 && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(pipeline.waitUntilIdle(timeout: .now() + 10))
        XCTAssertEqual(folders.list("archive"), (["first.pgm"] + later).sorted())
        XCTAssertEqual(inspector.batchSizes, [1, 1, 4], "a single first batch, then the burst: one again to restart, then full")
        log.lock.lock(); let passes = log.entries.filter { $0.1 == "pass" }.count; log.lock.unlock()
        XCTAssertEqual(passes, 1, "the burst joined the running pass")
    }

    func testTwoDaemonsRacingOnOneInboxProcessEachFileExactlyOnce() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let line = folders.configuration(batchSize: 3)
        let inspectors = [PGMInspector(), PGMInspector()]
        // A little inference time, as a real model has, so both daemons get to claim.
        for inspector in inspectors { inspector.beforeBatch = { usleep(2_000) } }
        let pipelines = try ["host-a", "host-b"].enumerated().map { index, instance in
            try makePipeline(folders, line, instance: instance, inspector: inspectors[index])
        }
        let names = (0..<60).map { String(format: "img-%03d.pgm", $0) }
        for name in names { try folders.write(PGMInspector.image(), to: "inbox/\(name)") }

        DispatchQueue.concurrentPerform(iterations: 2) { index in
            var now: Int64 = 0
            while !folders.list("inbox").isEmpty || pipelines[index].pass(now: now).queueDepth > 0 {
                pipelines[index].pass(now: now)
                now += second
            }
        }
        let inspected = inspectors[0].names + inspectors[1].names
        XCTAssertEqual(inspected.sorted(), names, "every file inspected exactly once over both daemons")
        XCTAssertFalse(inspectors[0].names.isEmpty || inspectors[1].names.isEmpty, "both daemons took part (\(inspectors[0].names.count)/\(inspectors[1].names.count))")
        XCTAssertEqual(folders.list("archive"), names, "archived once each, no -1 duplicates")
        XCTAssertEqual(folders.list("outbox").filter { $0.hasSuffix(".json") }.count, names.count)
        XCTAssertEqual(folders.list("work/host-a") + folders.list("work/host-b"), [])
    }

    func testCorruptInputIsQuarantinedAndTheBatchGoesOn() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration(batchSize: 8))
        try folders.write(PGMInspector.image(), to: "inbox/a-good.pgm")
        try folders.write(Array("not an image at all".utf8), to: "inbox/b-corrupt.pgm")
        try folders.write(PGMInspector.image(), to: "inbox/c-good.pgm")
        let summary = pipeline.pass(now: 0)
        XCTAssertEqual(summary.decided, 2)
        XCTAssertEqual(summary.quarantined, 1)
        XCTAssertEqual(folders.list("quarantine"), ["b-corrupt.pgm", "b-corrupt.pgm.error.json"])
        XCTAssertEqual(folders.list("archive"), ["a-good.pgm", "c-good.pgm"])
        let record = try folders.json("quarantine/b-corrupt.pgm.error.json")
        XCTAssertEqual(record["kind"] as? String, "decode_failure")
        XCTAssertEqual(record["file"] as? String, "b-corrupt.pgm")
        XCTAssertEqual(record["sha256"] as? String, sha256Hex(of: Array("not an image at all".utf8)))
        XCTAssertNotNil(record["hint"] as? String)
        let verdict = try folders.json("outbox/b-corrupt.pgm.json")
        XCTAssertEqual(verdict["verdict"] as? String, "error")
        XCTAssertEqual((verdict["error"] as? [String: Any])?["kind"] as? String, "decode_failure")

        // A second corrupt file of the same name does not overwrite the first in quarantine.
        try folders.write(Array("still not an image".utf8), to: "inbox/b-corrupt.pgm")
        XCTAssertEqual(pipeline.pass(now: second).quarantined, 1)
        XCTAssertEqual(folders.list("quarantine"), ["b-corrupt-1.pgm", "b-corrupt-1.pgm.error.json", "b-corrupt.pgm", "b-corrupt.pgm.error.json"])
    }

    func testOddFileNames() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration(batchSize: 8))
        let names = ["part 1 (copy).pgm", "ünïcødé 画像.pgm", "-rf.pgm", "--help.pgm", "a'b\"c.pgm", "semi;colon$x.pgm", "tab\there.pgm"]
        for name in names { try folders.write(PGMInspector.image(), to: "inbox/\(name)") }
        XCTAssertEqual(pipeline.pass(now: 0).decided, names.count)
        XCTAssertEqual(folders.list("archive"), names.sorted())
        for name in names {
            XCTAssertTrue(folders.exists("outbox/\(name).json"), name)
            XCTAssertTrue(folders.exists("outbox/\(name).heatmap.png"), name)
            XCTAssertEqual(try folders.json("outbox/\(name).json")["file"] as? String, name)
        }
    }

    func testWorkDirectoryIsRecoveredAfterACrash() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        // The state a SIGKILL can leave: two claimed inputs, one with a half-written temporary
        // heatmap in the outbox, one whose outputs were complete but not yet archived.
        try FileManager.default.createDirectory(atPath: folders.path("work/host-a").string, withIntermediateDirectories: true)
        try folders.write(PGMInspector.image(hot: [(2, 2, 4, 4)]), to: "work/host-a/claimed.pgm")
        try folders.write([1, 2, 3], to: "outbox/.claimed.pgm.heatmap.png.rstpmd.tmp")
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)],
                                              ofItemAtPath: folders.path("outbox/.claimed.pgm.heatmap.png.rstpmd.tmp").string)
        try folders.write([4, 5, 6], to: "outbox/.other.pgm.json.rstpmd.tmp")  // another daemon may be writing it
        try folders.write(PGMInspector.image(), to: "work/host-a/written.pgm")
        try folders.write(Array("{\"stale\": true}\n".utf8), to: "outbox/written.pgm.json")
        let pipeline = try makePipeline(folders, folders.configuration())
        let summary = pipeline.recover(now: 0)
        XCTAssertEqual(summary.decided, 2)
        XCTAssertEqual(folders.list("work/host-a"), [])
        XCTAssertEqual(folders.list("archive"), ["claimed.pgm", "written.pgm"])
        XCTAssertFalse(folders.exists("outbox/.claimed.pgm.heatmap.png.rstpmd.tmp"), "stale temporary removed")
        XCTAssertTrue(folders.exists("outbox/.other.pgm.json.rstpmd.tmp"), "a fresh one is left alone")
        XCTAssertEqual(try folders.json("outbox/claimed.pgm.json")["verdict"] as? String, "defect")
        XCTAssertEqual(try folders.json("outbox/written.pgm.json")["verdict"] as? String, "ok", "outputs are rewritten, not trusted")
    }

    /// A batch's outputs are written while the next batch is inspected; each input is still
    /// inspected once, and the pass returns only when every output is durable.
    func testOutputsAreWrittenWhileTheNextBatchIsInspected() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let syscalls = StallingSyscalls()
        let inspector = PGMInspector()
        var batches = 0
        inspector.beforeBatch = {
            batches += 1
            if batches == 2 { syscalls.release.signal() }
        }
        let pipeline = try makePipeline(folders, folders.configuration(batchSize: 2), inspector: inspector, syscalls: syscalls)
        let names = ["a.pgm", "b.pgm", "c.pgm", "d.pgm", "e.pgm"]
        for name in names { try folders.write(PGMInspector.image(), to: "inbox/\(name)") }
        let summary = pipeline.pass(now: 0)
        XCTAssertTrue(syscalls.releasedInTime, "the second batch was inspected only after the first one's outputs")
        XCTAssertEqual(summary.decided, 5)
        XCTAssertEqual(summary.queueDepth, 0)
        XCTAssertEqual(inspector.names.sorted(), names)
        XCTAssertEqual(folders.list("archive"), names)
        XCTAssertEqual(folders.list("outbox"), names.flatMap { [$0 + ".heatmap.png", $0 + ".json"] }.sorted())
        XCTAssertEqual(folders.list("work/host-a"), [])
    }

    /// A crash (SIGKILL) after every possible number of changing system calls, then a restart:
    /// each input ends up archived or quarantined exactly once, with its verdict, and none is
    /// lost. A deterministic sweep of every crash point of one pass over three inputs.
    func testCrashAtEveryPointThenRestartLosesNothing() throws {
        let inputs: [(String, [UInt8])] = [
            ("a.pgm", PGMInspector.image(hot: [(1, 1, 4, 4)])), ("b.pgm", Array("corrupt".utf8)), ("c.pgm", PGMInspector.image()),
        ]
        func run(crashAfter: Int) throws -> Int {
            let folders = try LineFolders("crash")
            defer { folders.remove() }
            let line = folders.configuration(batchSize: 2)
            for (name, bytes) in inputs { try folders.write(bytes, to: "inbox/\(name)") }
            let crashing = CrashingSyscalls(crashAfter: crashAfter)
            let doomed = try makePipeline(folders, line, syscalls: crashing)
            doomed.pass(now: 0)
            // The restarted daemon: a new pipeline over the same folders.
            let restarted = try makePipeline(folders, line)
            restarted.recover(now: 0)
            restarted.pass(now: 0)
            let context = "crash after \(crashAfter) calls"
            XCTAssertEqual(folders.list("inbox"), [], context)
            XCTAssertEqual(folders.list("work/host-a"), [], context)
            XCTAssertEqual(folders.list("archive"), ["a.pgm", "c.pgm"], context)
            XCTAssertEqual(folders.list("quarantine"), ["b.pgm", "b.pgm.error.json"], context)
            XCTAssertEqual(folders.list("outbox").filter { !$0.hasPrefix(".") },
                           ["a.pgm.heatmap.png", "a.pgm.json", "b.pgm.json", "c.pgm.heatmap.png", "c.pgm.json"], context)
            for (name, bytes) in inputs {
                let verdict = try folders.json("outbox/\(name).json")
                XCTAssertEqual(verdict["sha256"] as? String, sha256Hex(of: bytes), context)
            }
            XCTAssertEqual(try folders.json("outbox/a.pgm.json")["verdict"] as? String, "defect", context)
            return crashing.changingCalls
        }
        let total = try run(crashAfter: .max)
        XCTAssertGreaterThan(total, 20, "a pass makes many changing calls")
        for crashAfter in 0..<total { _ = try run(crashAfter: crashAfter) }
    }

    /// Every fault point of the write path, with ENOSPC and EIO: the input stays in work/ (or
    /// is archived), never vanishes, and goes through once the disk recovers.
    func testInjectedENOSPCAndEIOLoseNothing() throws {
        let points: [(FaultySyscalls.Operation, String)] = [
            (.open, "/outbox/"), (.write, "/outbox/"), (.fsync, "/outbox/"), (.rename, "/outbox/"),
            (.rename, "/archive/"), (.fsync, "/archive"), (.read, "/work/"), (.open, "/work/host-a/"),
        ]
        for errno in [Errno.noSpace, Errno.ioError] {
            for (operation, path) in points {
                let folders = try LineFolders("faults")
                defer { folders.remove() }
                let syscalls = FaultySyscalls()
                let pipeline = try makePipeline(folders, folders.configuration(), syscalls: syscalls)
                let image = PGMInspector.image(hot: [(0, 0, 3, 3)])
                try folders.write(image, to: "inbox/input.pgm")
                syscalls.inject(operation, pathContains: path, errno: errno)
                let failed = pipeline.pass(now: 0)
                let context = "\(errno) on \(operation) of \(path)"
                XCTAssertGreaterThan(syscalls.injected, 0, context)
                if operation == .fsync && path == "/archive" {
                    // After the rename the input is archived; the directory fsync is best effort.
                    XCTAssertEqual(failed.decided, 1, context)
                    XCTAssertEqual(folders.list("archive"), ["input.pgm"], context)
                    continue
                }
                XCTAssertEqual(failed.decided, 0, context)
                XCTAssertEqual(failed.retrying, 1, context)
                XCTAssertEqual(folders.list("quarantine"), [], context + ": a full disk is not the input's fault")
                let whereIsIt = folders.list("work/host-a") + folders.list("archive")
                XCTAssertEqual(whereIsIt, ["input.pgm"], context)
                XCTAssertFalse(folders.list("outbox").contains { $0.hasSuffix(".tmp") }, context + ": temporary files cleaned up")

                // Backoff: not retried at once, even after the disk recovered.
                syscalls.clearFaults()
                XCTAssertEqual(pipeline.pass(now: second / 2).decided, 0, context)
                let recovered = pipeline.pass(now: 2 * second)
                XCTAssertEqual(recovered.decided, 1, context)
                XCTAssertEqual(folders.list("work/host-a"), [], context)
                XCTAssertEqual(folders.list("archive"), ["input.pgm"], context)
                XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("archive/input.pgm"))), image, context)
                XCTAssertEqual(try folders.json("outbox/input.pgm.json")["verdict"] as? String, "defect", context)
            }
        }
    }

    func testQuarantineFailureKeepsTheInput() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let syscalls = FaultySyscalls()
        let pipeline = try makePipeline(folders, folders.configuration(), syscalls: syscalls)
        try folders.write(Array("garbage".utf8), to: "inbox/bad.pgm")
        syscalls.inject(.write, pathContains: "quarantine", errno: .noSpace)
        XCTAssertEqual(pipeline.pass(now: 0).retrying, 1)
        XCTAssertEqual(folders.list("work/host-a"), ["bad.pgm"])
        syscalls.clearFaults()
        XCTAssertEqual(pipeline.pass(now: 5 * second).quarantined, 1)
        XCTAssertEqual(folders.list("quarantine"), ["bad.pgm", "bad.pgm.error.json"])
    }

    func testDeleteAndLeavePolicies() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let deleting = try makePipeline(folders, folders.configuration(policy: .delete))
        try folders.write(PGMInspector.image(), to: "inbox/gone.pgm")
        XCTAssertEqual(deleting.pass(now: 0).decided, 1)
        XCTAssertEqual(folders.list("inbox") + folders.list("archive") + folders.list("work/host-a"), [])
        XCTAssertTrue(folders.exists("outbox/gone.pgm.json"))

        let inspector = PGMInspector()
        let leaving = try makePipeline(folders, folders.configuration(policy: .leave), instance: "host-b", inspector: inspector)
        try folders.write(PGMInspector.image(), to: "inbox/stays.pgm")
        XCTAssertEqual(leaving.pass(now: 0).decided, 1)
        XCTAssertEqual(leaving.pass(now: second).decided, 0, "its verdict is newer: not taken again")
        XCTAssertEqual(inspector.names, ["stays.pgm"])
        XCTAssertEqual(folders.list("inbox"), ["stays.pgm"])
    }

    func testVerdictCarriesEveryDocumentedField() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let pipeline = try makePipeline(folders, folders.configuration(threshold: 0.6))
        // Two hot blocks in a 16x12 image: the half-resolution map must be scaled back.
        let image = PGMInspector.image(hot: [(2, 2, 4, 4), (10, 6, 4, 4)])
        try folders.write(image, to: "inbox/part.pgm")
        XCTAssertEqual(pipeline.pass(now: 0).decided, 1)
        let verdict = try folders.json("outbox/part.pgm.json")
        let keys = ["schema_version", "rstpm_version", "file", "sha256", "size", "received_at", "decided_at", "line", "instance", "model",
                    "verdict", "score", "threshold", "regions", "regions_truncated", "heatmap", "timings_ms", "error"]
        XCTAssertEqual(Set(verdict.keys), Set(keys))
        XCTAssertEqual(verdict["schema_version"] as? Int, 1)
        XCTAssertEqual(verdict["rstpm_version"] as? String, RSTPMBuild.description)
        XCTAssertEqual(verdict["sha256"] as? String, sha256Hex(of: image))
        XCTAssertEqual(verdict["size"] as? [String: Int], ["bytes": image.count, "width": 16, "height": 12])
        XCTAssertEqual(verdict["line"] as? String, "line-1")
        let model = try XCTUnwrap(verdict["model"] as? [String: Any])
        XCTAssertEqual(Set(model.keys), ["id", "version", "precision"])
        XCTAssertEqual(model["id"] as? String, "pgm-test-double")
        XCTAssertEqual(model["version"] as? String, "1")
        XCTAssertTrue(model["precision"] is NSNull, "the double runs no network: \(model)")
        XCTAssertEqual(verdict["verdict"] as? String, "defect")
        let threshold = try XCTUnwrap(verdict["threshold"] as? [String: Any])
        XCTAssertEqual(threshold["value"] as? Double ?? 0, 0.6, accuracy: 1e-6)
        XCTAssertEqual(threshold["source"] as? String, "configuration")
        XCTAssertEqual(verdict["heatmap"] as? String, "part.pgm.heatmap.png")
        XCTAssertTrue(verdict["error"] is NSNull)
        let timings = try XCTUnwrap(verdict["timings_ms"] as? [String: Double])
        XCTAssertEqual(Set(timings.keys), ["decode", "infer", "heatmap", "write"])
        for key in ["received_at", "decided_at"] {
            let text = try XCTUnwrap(verdict[key] as? String)
            XCTAssertNotNil(text.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), text)
        }
        let regions = try XCTUnwrap(verdict["regions"] as? [[String: Any]])
        XCTAssertEqual(regions.count, 2)
        for region in regions {
            XCTAssertEqual(Set(region.keys), ["x", "y", "width", "height", "area", "peak_score"])
            XCTAssertEqual((region["peak_score"] as? Double).map { Float($0) } ?? 0, Float(230) / 255, accuracy: 1e-4)
        }
        let boxes = regions.map { [$0["x"] as! Int, $0["y"] as! Int, $0["width"] as! Int, $0["height"] as! Int] }.sorted { $0[0] < $1[0] }
        // Original-image coordinates, close to the hot blocks (bilinear edges blur by a pixel).
        XCTAssertEqual(boxes[0][0], 2, accuracy: 1); XCTAssertEqual(boxes[0][1], 2, accuracy: 1)
        XCTAssertEqual(boxes[1][0], 10, accuracy: 1); XCTAssertEqual(boxes[1][1], 6, accuracy: 1)
        XCTAssertTrue(folders.exists("outbox/part.pgm.heatmap.png"))
    }
}
