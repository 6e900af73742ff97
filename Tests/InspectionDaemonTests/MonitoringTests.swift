import DaemonSupport
import Foundation
import InspectionDaemon
import Logging
import SystemPackage
import TestSupport
import XCTest

/// The metrics of a real rstpmd, and the alert rules and dashboard in etc/ that read them.
final class MonitoringTests: XCTestCase {
    static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }

    func testEveryCounterStartsAtZeroAndTheScrapePassesPromtoolAndFeedsTheRulesAndDashboard() throws {
        let model = try BinaryHarness.tinyModel()
        guard let promtool = Self.promtool else { throw XCTSkip("promtool missing: apt-get install prometheus (scripts/install-deps.sh)") }
        let folders = try LineFolders()
        defer { folders.remove() }
        // With retention, so that its gauges are in the scrape too.
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, extra: """
                retention: {outbox: {max_age_days: 30}, archive: {max_age_days: 30}, quarantine: {max_bytes: 1G}}
            """)
        let daemon = try DaemonProcess(configuration: configuration, folders: folders)
        defer { daemon.stop() }
        let metricsPath = folders.path("metrics/rstpmd.prom").string
        func scrape() -> String { (try? String(contentsOfFile: metricsPath, encoding: .utf8)) ?? "" }
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { scrape().contains("rstpmd_model_info") }, daemon.output)

        // Before the first input: every counter of the line at 0, for every known label value.
        let before = scrape()
        for series in [#"rstpmd_inputs_total{line="line-1",verdict="ok"} 0.0"#, #"rstpmd_inputs_total{line="line-1",verdict="defect"} 0.0"#,
                       #"rstpmd_inputs_total{line="line-1",verdict="error"} 0.0"#, #"rstpmd_retries_total{line="line-1",stage="write"} 0.0"#,
                       #"rstpmd_claims_lost_total{line="line-1"} 0.0"#, #"rstpmd_recovered_total{line="line-1"} 0.0"#,
                       #"rstpmd_inbox_ignored_total{kind="symbolic_link",line="line-1"} 0.0"#, #"rstpmd_crash_restarts_total{line="line-1"} 0.0"#,
                       #"rstpmd_learning_failures_total{kind="training",line="line-1"} 0.0"#, #"rstpmd_intake_pauses_total{line="line-1"} 0.0"#,
                       #"rstpmd_retention_removed_total{folder="archive",line="line-1",reason="age"} 0.0"#,
                       #"rstpmd_stage_seconds_count{line="line-1",stage="heatmap"} 0"#, #"rstpmd_score_ratio_count{line="line-1"} 0"#,
                       #"rstpmd_intake_paused{line="line-1"} 0.0"#] {
            XCTAssertTrue(before.contains(series + "\n"), "\(series) missing before the first input:\n\(before)")
        }
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("manifest.json"))) as! [String: Any]
        let threshold = try XCTUnwrap((manifest["threshold"] as? [String: Any])?["value"] as? NSNumber).doubleValue
        XCTAssertTrue(before.contains(#"rstpmd_model_info{line="line-1",model_id=""#), before)
        XCTAssertTrue(before.contains("rstpmd_threshold{line=\"line-1\"} \(Double(Float(threshold)))\n"), before)
        XCTAssertNotNil(value(#"rstpmd_last_verdict_timestamp_seconds{line="line-1"}"#, in: before))

        try BinaryHarness.drop(try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/002.png")), as: "one.png", into: folders)
        XCTAssertTrue(BinaryHarness.wait(seconds: 30) { scrape().contains(#"rstpmd_score_ratio_count{line="line-1"} 1"#) }, daemon.output)
        let after = scrape()
        let verdict = try XCTUnwrap(BinaryHarness.verdict("one.png", in: folders))
        let score = try XCTUnwrap(verdict["score"] as? NSNumber).doubleValue
        XCTAssertEqual(try XCTUnwrap(value(#"rstpmd_score_ratio_sum{line="line-1"}"#, in: after)), score / Double(Float(threshold)), accuracy: 1e-4)
        XCTAssertGreaterThan(try XCTUnwrap(value(#"rstpmd_last_verdict_timestamp_seconds{line="line-1"}"#, in: after)),
                             try XCTUnwrap(value(#"rstpmd_last_verdict_timestamp_seconds{line="line-1"}"#, in: before)))

        // promtool reads the scrape without a complaint (lint included).
        let scraped = folders.root.appendingPathComponent("scrape.prom")
        try after.write(to: scraped, atomically: true, encoding: .utf8)
        let check = try Tools.run(URL(fileURLWithPath: "/bin/sh"), ["-c", "\"$0\" check metrics < \"$1\"", promtool, scraped.path])
        XCTAssertEqual(check.status, 0, check.output)
        XCTAssertEqual(check.output.trimmingCharacters(in: .whitespacesAndNewlines), "", check.output)

        // HELP names every value of each label that is known up front.
        for family in MetricsRegistry.catalogue where !family.labelValues.isEmpty {
            let help = try XCTUnwrap(after.split(separator: "\n").first { $0.hasPrefix("# HELP \(family.name) ") }, family.name)
            for (_, values) in family.labelValues {
                for value in values { XCTAssertTrue(help.contains(value), "\(family.name): HELP does not name \(value): \(help)") }
            }
        }

        // The rules load, and every metric they and the dashboard use is one the daemon exports.
        let rules = TestPaths.repositoryRoot.appendingPathComponent("etc/prometheus/rstpmd-alerts.yml")
        let rulesCheck = try Tools.run(URL(fileURLWithPath: promtool), ["check", "rules", rules.path])
        XCTAssertEqual(rulesCheck.status, 0, rulesCheck.output)
        // They fire when they should: in the shift window and not outside it, above the reject
        // rate and not below, after a crash restart (etc/prometheus/rstpmd-alerts.test.yml).
        let rulesTest = try Tools.run(URL(fileURLWithPath: promtool), ["test", "rules", rules.deletingPathExtension().path + ".test.yml"])
        XCTAssertEqual(rulesTest.status, 0, rulesTest.output)
        let exported = Set(after.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        let dashboard = TestPaths.repositoryRoot.appendingPathComponent("etc/grafana/rstpmd-dashboard.json")
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard)))
        for file in [rules, dashboard] {
            let used = Self.metricNames(in: try String(contentsOf: file, encoding: .utf8))
            XCTAssertFalse(used.isEmpty, file.path)
            XCTAssertEqual(used.subtracting(exported), [], "\(file.lastPathComponent) uses metrics the daemon does not export")
        }
    }

    func testLearningFailuresAreCountedAsLoggedAndStillLogged() {
        let (logger, store) = MemoryLogHandler.logger()
        let metrics = MetricsRegistry()
        let counting = logger.countingLearningFailures(of: "line-1", into: metrics)
        counting.event(.trainingFailed, .error, "trainer exited with status 1")
        counting.event(.trainingFailed, .notice, "trainer stopped with the daemon; the run resumes")  // no failure
        counting.event(.gateRejected, .warning, "v0002 rejected")
        counting.event(.learningFailed, .error, "cannot take accepted images")
        counting.event(.learningFailed, .error, "cannot load v0003")
        counting.event(.accepted, .notice, "accepted 3 image(s)")
        XCTAssertEqual(metrics.counter("rstpmd_learning_failures_total", labels: ["line": "line-1", "kind": "training"]), 1)
        XCTAssertEqual(metrics.counter("rstpmd_learning_failures_total", labels: ["line": "line-1", "kind": "gate_rejected"]), 1)
        XCTAssertEqual(metrics.counter("rstpmd_learning_failures_total", labels: ["line": "line-1", "kind": "other"]), 2)
        XCTAssertEqual(store.messages.count, 6, "every entry is passed on")
    }

    /// `rstpmd_*` names in a text, histogram series folded into their family.
    static func metricNames(in text: String) -> Set<String> {
        let pattern = try! NSRegularExpression(pattern: "rstpmd_[a-z_]+")
        return Set(pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { match -> String in
            var name = String(text[Range(match.range, in: text)!])
            for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) && !name.hasSuffix("_total") { name.removeLast(suffix.count) }
            return name
        })
    }

    func value(_ series: String, in text: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
    }
}
