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
}
