import BuildInfo
import Checkpoints
import Foundation
import SystemPackage
import TestSupport
import XCTest

/// Issue #13.7: `rstpm infer` never writes over an input or an earlier output of the same run,
/// and names its outputs as rstpmd does (`<name>.heatmap.png`, `<name>.json`).
final class InferOutputNameTests: XCTestCase {
    func testInferNeverOverwritesAnInputOrAnEarlierOutput() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let model = try BinaryHarness.tinyModel()
        // Two inputs of one name from two folders, and --out the first input's folder.
        let source = BinaryHarness.bottle.appendingPathComponent("test")
        try FileManager.default.copyItem(at: source.appendingPathComponent("good/000.png"), to: folders.root.appendingPathComponent("inbox/a.png"))
        try FileManager.default.copyItem(at: source.appendingPathComponent("broken_large/000.png"), to: folders.root.appendingPathComponent("archive/a.png"))
        let input = Array(try Data(contentsOf: folders.root.appendingPathComponent("inbox/a.png")))
        let (status, output) = try Tools.run(BinaryHarness.cliBinary, [
            "infer", "--model", model.path, "--out", folders.path("inbox").string, "--weights-dir", TestPaths.weightsDirectory.path,
            folders.path("inbox/a.png").string, folders.path("archive/a.png").string,
        ], environment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(Array(try Data(contentsOf: folders.root.appendingPathComponent("inbox/a.png"))), input, "the input is intact")
        XCTAssertEqual(folders.list("inbox"), ["a-1.png.heatmap.png", "a-1.png.json", "a.png", "a.png.heatmap.png", "a.png.json"])
        XCTAssertEqual(folders.list("archive"), ["a.png"])
        let firstVerdict = try folders.json("inbox/a.png.json"), secondVerdict = try folders.json("inbox/a-1.png.json")
        XCTAssertNotEqual(firstVerdict["score"] as? Double, secondVerdict["score"] as? Double, "each input has its own verdict")
    }

    /// The verdict is rstpmd's (docs/verdict.md): the same keys, `ok`/`defect`, snake_case.
    func testInferWritesTheDaemonsVerdict() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let model = try BinaryHarness.tinyModel()
        let image = BinaryHarness.bottle.appendingPathComponent("test/broken_large/000.png")
        let (status, output) = try Tools.run(BinaryHarness.cliBinary, [
            "infer", "--model", model.path, "--out", folders.path("outbox").string, "--weights-dir", TestPaths.weightsDirectory.path, image.path,
        ], environment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(status, 0, output)
        let verdict = try folders.json("outbox/000.png.json")
        XCTAssertEqual(Set(verdict.keys), ["schema_version", "rstpm_version", "file", "sha256", "size", "received_at", "decided_at", "line", "instance", "model",
                                           "verdict", "score", "threshold", "regions", "regions_truncated", "heatmap", "timings_ms", "error"])
        XCTAssertEqual(verdict["schema_version"] as? Int, 1)
        XCTAssertEqual(verdict["rstpm_version"] as? String, RSTPMBuild.description)
        XCTAssertTrue(["ok", "defect"].contains(verdict["verdict"] as? String), "\(verdict)")
        XCTAssertEqual(verdict["heatmap"] as? String, "000.png.heatmap.png")
        XCTAssertEqual(verdict["sha256"] as? String, try sha256Hex(of: image))
        XCTAssertEqual((verdict["size"] as? [String: Any])?["width"] as? Int, 256)
        XCTAssertTrue(output.contains("\tok\t") || output.contains("\tdefect\t"), output)
    }
}
