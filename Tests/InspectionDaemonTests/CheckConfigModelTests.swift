import Foundation
import SystemPackage
import TestSupport
import XCTest

/// `rstpmd --check-config` is the unit's ExecStartPre= gate: it must refuse every model the
/// daemon would refuse at start, and say which YAML key to fix.
final class CheckConfigModelTests: XCTestCase {
    func check(_ configuration: FilePath, weights: URL = TestPaths.weightsDirectory) throws -> (status: Int32, output: String) {
        try Tools.run(BinaryHarness.daemonBinary, ["--check-config", configuration.string, "--weights-dir", weights.path], environment: ["PATH": "/usr/bin:/bin"])
    }

    /// A copy of the tiny model bundle that `damage` may change.
    func bundleCopy(in folders: LineFolders, _ damage: (URL) throws -> Void = { _ in }) throws -> URL {
        let copy = folders.root.appendingPathComponent("bundle-\(UUID().uuidString.prefix(6))")
        try FileManager.default.copyItem(at: try BinaryHarness.tinyModel(), to: copy)
        try damage(copy)
        return copy
    }

    func assertRefused(_ model: URL, _ folders: LineFolders, weights: URL = TestPaths.weightsDirectory, saying expected: String, line: UInt = #line) throws {
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model)
        let result = try check(configuration, weights: weights)
        XCTAssertEqual(result.status, 1, result.output, line: line)
        XCTAssertTrue(result.output.contains("lines[0].model:") && result.output.contains(expected), "expected \(expected): \(result.output)", line: line)
        XCTAssertFalse(result.output.contains("--model"), "hints name YAML keys: \(result.output)", line: line)
    }

    func testTheGateRefusesWhatTheDaemonRefuses() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        // A good bundle passes, models and teachers loaded.
        let good = try BinaryHarness.writeConfiguration(folders, model: try bundleCopy(in: folders))
        let passed = try check(good)
        XCTAssertEqual(passed.status, 0, passed.output)
        XCTAssertTrue(passed.output.contains("OK, 1 line(s): line-1; models and teachers load"), passed.output)

        // Each of these printed OK before.
        let empty = folders.root.appendingPathComponent("empty-bundle")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try assertRefused(empty, folders, saying: "missing or unreadable manifest")

        let manifestFile = try bundleCopy(in: folders).appendingPathComponent("manifest.json")
        let pointedAtFile = try BinaryHarness.writeConfiguration(folders, model: manifestFile)
        let fileResult = try check(pointedAtFile)
        XCTAssertEqual(fileResult.status, 1, fileResult.output)
        XCTAssertTrue(fileResult.output.contains("lines[0].model") && fileResult.output.contains("is a file"), fileResult.output)

        let otherWeights = try bundleCopy(in: folders) { bundle in
            let weights = bundle.appendingPathComponent("weights.safetensors")
            var bytes = try Data(contentsOf: weights)
            bytes[bytes.count - 3] ^= 0x10
            try bytes.write(to: weights)
        }
        try assertRefused(otherWeights, folders, saying: "SHA-256")

        let noTeachers = folders.root.appendingPathComponent("no-teachers")
        try FileManager.default.createDirectory(at: noTeachers, withIntermediateDirectories: true)
        try assertRefused(try bundleCopy(in: folders), folders, weights: noTeachers, saying: "T1 checkpoint missing")

        let crashing = try bundleCopy(in: folders) { bundle in
            let url = bundle.appendingPathComponent("manifest.json")
            let text = try String(contentsOf: url, encoding: .utf8)
            try text.replacingOccurrences(of: "\"discriminatorDownscale\" : 4", with: "\"discriminatorDownscale\" : 0").write(to: url, atomically: true, encoding: .utf8)
        }
        try assertRefused(crashing, folders, saying: "discriminatorDownscale 0")
    }
}
