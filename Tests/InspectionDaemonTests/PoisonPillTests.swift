import Foundation
import SystemPackage
import TestSupport
import XCTest

/// An input that crashes the daemon must not crash it forever: `rstpmd` restarted by systemd
/// after each crash would otherwise pick it up from work/ and die again, a crash loop.
final class PoisonPillTests: XCTestCase {
    func runOnce(_ configuration: FilePath, crashingOn name: String) throws -> (reason: Process.TerminationReason, status: Int32, output: String) {
        try Tools.runReportingReason(BinaryHarness.daemonBinary, ["--config", configuration.string, "--once", "--weights-dir", TestPaths.weightsDirectory.path],
                                     environment: ["PATH": "/usr/bin:/bin", "RSTPMD_TEST_CRASH_ON": name, "SWIFT_BACKTRACE": "enable=no"])
    }

    func testInputInFlightAtTwoCrashesIsQuarantinedInsteadOfAThird() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, settleSeconds: 0, batchSize: 4)
        let image = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/000.png"))
        try BinaryHarness.drop(image, as: "good.png", into: folders)
        try BinaryHarness.drop(image, as: "poison.png", into: folders)

        // Two crashes with poison.png in flight (the second with it inspected alone) ...
        for attempt in 1...2 {
            let run = try runOnce(configuration, crashingOn: "poison.png")
            XCTAssertEqual(run.reason, .uncaughtSignal, "run \(attempt) should crash: \(run.output)")
            XCTAssertEqual(run.status, SIGABRT, run.output)
            XCTAssertTrue(folders.list("work/test-host").contains("poison.png"), "run \(attempt): \(folders.list("work/test-host"))")
        }
        // ... and the third start quarantines it instead of crashing again.
        let third = try runOnce(configuration, crashingOn: "poison.png")
        XCTAssertEqual(third.reason, .exit, third.output)
        XCTAssertEqual(third.status, 0, third.output)
        XCTAssertEqual(folders.list("work/test-host"), [])
        XCTAssertEqual(folders.list("quarantine"), ["poison.png", "poison.png.error.json"])
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: folders.root.appendingPathComponent("quarantine/poison.png.error.json"))) as? [String: Any])
        XCTAssertEqual(record["kind"] as? String, "crashed_inspection", "\(record)")
        let verdict = try XCTUnwrap(BinaryHarness.verdict("poison.png", in: folders))
        XCTAssertEqual((verdict["error"] as? [String: Any])?["kind"] as? String, "crashed_inspection", "\(verdict)")
        XCTAssertEqual(third.output.components(separatedBy: "poison.png: quarantined").count - 1, 1, "logged once: \(third.output)")
        // The innocent input beside it got its verdict.
        XCTAssertEqual(folders.list("archive"), ["good.png"])
        XCTAssertTrue(["ok", "defect"].contains(BinaryHarness.verdict("good.png", in: folders)?["verdict"] as? String))
    }

    func testInputInFlightAtOneCrashIsRetried() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, settleSeconds: 0, batchSize: 4)
        let image = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/000.png"))
        try BinaryHarness.drop(image, as: "flaky.png", into: folders)
        let crash = try runOnce(configuration, crashingOn: "flaky.png")
        XCTAssertEqual(crash.reason, .uncaughtSignal, crash.output)
        // Whatever crashed once (a bug since fixed, memory pressure) gets its verdict next time.
        let next = try runOnce(configuration, crashingOn: "none")
        XCTAssertEqual(next.status, 0, next.output)
        XCTAssertEqual(folders.list("archive"), ["flaky.png"])
        XCTAssertEqual(folders.list("quarantine"), [])
        // The start after the crash counts it, for the restart alert.
        let metrics = try String(contentsOfFile: folders.path("metrics/rstpmd.prom").string, encoding: .utf8)
        XCTAssertTrue(metrics.contains(#"rstpmd_crash_restarts_total{line="line-1"} 1.0"#), metrics)
    }
}
