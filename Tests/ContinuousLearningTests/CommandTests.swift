import ContinuousLearning
import Foundation
import SystemPackage
import TestSupport
import XCTest

/// `rstpm model list`, `rstpm model rollback` and `rstpm retrain` through the built binary.
final class CommandTests: XCTestCase {
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard let binary = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm is not built: run `swift build -c release` first") }
        return try Tools.run(binary, arguments)
    }

    /// rstpmd's configuration of one line, `line-1`, with `model` and an optional learning block.
    static func lineYAML(model: FilePath, learning: String = "") -> String {
        """
        lines:
          - name: line-1
            inbox: /nonexistent/inbox
            work: /nonexistent/work
            outbox: /nonexistent/outbox
            quarantine: /nonexistent/quarantine
            processed_inputs: delete
            model: \(model)
        """ + learning
    }

    func testListRollbackAndRetrainRequest() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let models = try scratch.makeModelStore()
        // v0002 accepted by a gate and serving, v0003 rejected.
        for decision in [GateRecord.Decision.accepted, .rejected] {
            let record = GateRecord(
                decision: decision, reason: "test \(decision.rawValue)", line: "line-1",
                candidate: GateFigures(falseRejectRate: decision == .accepted ? 0.01 : 0.5, auroc: 0.97, threshold: 0.5),
                current: nil, currentVersion: "v0001", heldOutImages: 10, defectImages: 3, trainingImages: 90,
                policy: GatePolicy(), decidedAt: "2026-11-29T02:00:00Z")
            try scratch.write(record.encoded(), to: "models/line-1/.candidate/gate.json")
            let version = try models.commitCandidate()
            if decision == .accepted { try models.activate(version.name) }
        }
        try scratch.write(Self.lineYAML(model: scratch.path("models/line-1"), learning: """

            learning:
              accepted: /nonexistent/accepted
              store: \(scratch.path("training"))
              trainer: [/usr/bin/rstpm, train, --data, "{data}", --out, "{out}"]
        """), to: "rstpmd.yaml")
        let config = ["--config", scratch.path("rstpmd.yaml").string]

        let list = try run(["model", "list", "line-1"] + config)
        XCTAssertEqual(list.status, 0, list.output)
        let rows = list.output.split(separator: "\n").map(String.init)
        XCTAssertEqual(rows.count, 4, list.output)
        XCTAssertTrue(rows[1].hasPrefix("   v0001    -"), list.output)
        XCTAssertTrue(rows[2].hasPrefix("*  v0002    accepted  0.0100        0.9700"), list.output)
        XCTAssertTrue(rows[3].hasPrefix("   v0003    rejected  0.5000"), list.output)

        let rollback = try run(["model", "rollback", "line-1"] + config)
        XCTAssertEqual(rollback.status, 0, rollback.output)
        XCTAssertTrue(rollback.output.contains("line-1: v0002 -> v0001"), rollback.output)
        XCTAssertEqual(try models.current()?.name, "v0001")
        XCTAssertEqual(try run(["model", "rollback", "line-1", "v0003"] + config).status, 0)
        XCTAssertEqual(try models.current()?.name, "v0003", "an explicit version may be any")
        let missing = try run(["model", "rollback", "line-1", "v0042"] + config)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.output.contains("no version v0042"), missing.output)
        let unknown = try run(["model", "list", "line-9"] + config)
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.output.contains("no line \"line-9\""), unknown.output)

        try scratch.makeDirectory("training")
        let retrain = try run(["retrain", "line-1"] + config)
        XCTAssertEqual(retrain.status, 0, retrain.output)
        XCTAssertTrue(scratch.exists("training/\(LearningLine.requestFileName)"))
    }

    /// What is wrong with the files (not with the command line) is one line naming the file,
    /// exit status 1, without the usage text that a usage error (exit 64) prints.
    func testRuntimeErrorsAreOneLineWithoutUsage() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        try scratch.makeDirectory("bundle")
        try scratch.write(Self.lineYAML(model: scratch.path("bundle")), to: "rstpmd.yaml")
        let config = scratch.path("rstpmd.yaml").string
        let cases: [([String], String)] = [
            (["model", "list", "line-1", "--config", scratch.path("missing.yaml").string], "cannot read the configuration"),
            (["model", "list", "line-9", "--config", config], "no line \"line-9\""),
            (["model", "rollback", "line-1", "--config", config], "a single bundle, not a model store"),
            (["retrain", "line-1", "--config", config], "has no `learning:` block"),
            (["train", "--data", scratch.path("data").string, "--out", scratch.path("out").string, "--config", scratch.path("missing.json").string], "missing.json"),
            (["train", "--data", scratch.path("data").string, "--out", scratch.path("out").string, "--config", config], "not a valid configuration"),
        ]
        for (arguments, expected) in cases {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments): \(result.output)")
            XCTAssertTrue(result.output.contains(expected), "\(arguments): \(result.output)")
            XCTAssertFalse(result.output.lowercased().contains("usage:"), "\(arguments): \(result.output)")
            XCTAssertEqual(result.output.split(separator: "\n").count, 1, "\(arguments): \(result.output)")
        }
        // A usage error still prints the usage and exits 64.
        let usage = try run(["model", "list"])
        XCTAssertEqual(usage.status, 64, usage.output)
        XCTAssertTrue(usage.output.lowercased().contains("usage:"), usage.output)
    }
}
