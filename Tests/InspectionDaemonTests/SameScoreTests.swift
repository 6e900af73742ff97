import Foundation
import Imaging
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// `rstpm infer`, `rstpm eval` and rstpmd's inspector go into the model through the same
/// `prepare`: one file gets one score. A large JPEG is where they could part, since its model
/// input comes from libjpeg's scaled IDCT (the bottle photo at a quarter of its size for the
/// tiny model's 64x64).
final class SameScoreTests: XCTestCase {
    func testInferEvalAndTheDaemonScoreALargeJPEGAlike() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let category = folders.root.appendingPathComponent("category")
        let good = category.appendingPathComponent("test/good"), broken = category.appendingPathComponent("test/broken")
        for folder in [good, broken] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        let photo = try ImageDecoder.decode(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/000.png"))
        XCTAssertGreaterThanOrEqual(min(photo.width, photo.height), 2 * 64, "at least twice the tiny model's input: decoded scaled")
        let jpeg = good.appendingPathComponent("large.jpg")
        try JPEGEncoder.encode(photo, quality: 92).write(to: jpeg)
        // The same pixels as a PNG: decoded at full size, no scaled IDCT.
        let fullSizePNG = folders.root.appendingPathComponent("large-full-size.png")
        try PNGEncoder.encode(ImageDecoder.decode(contentsOf: jpeg)).write(to: fullSizePNG)
        try FileManager.default.copyItem(at: BinaryHarness.bottle.appendingPathComponent("test/broken_large/000.png"),
                                         to: broken.appendingPathComponent("000.png"))
        let weights = ["--weights-dir", TestPaths.weightsDirectory.path]

        let infer = try Tools.run(BinaryHarness.cliBinary, ["infer", "--model", model.path, "--out", folders.path("out").string, jpeg.path] + weights)
        XCTAssertEqual(infer.status, 0, infer.output)
        let inferScore = try XCTUnwrap(infer.output.split(separator: "\n").first { $0.hasPrefix(jpeg.path + "\t") }
            .flatMap { line in line.split(separator: "\t").first { $0.hasPrefix("score ") } }.flatMap { Float($0.dropFirst(6)) }, infer.output)

        let report = folders.root.appendingPathComponent("report")
        let eval = try Tools.run(BinaryHarness.cliBinary, ["eval", "--model", model.path, "--data", category.path, "--report", report.path] + weights)
        XCTAssertEqual(eval.status, 0, eval.output)
        let csv = try String(contentsOf: report.appendingPathComponent("scores.csv"), encoding: .utf8)
        let header = csv.split(separator: "\n")[0].split(separator: ",")
        let scoreColumn = try XCTUnwrap(header.firstIndex(of: "score"))
        let row = try XCTUnwrap(csv.split(separator: "\n").first { $0.contains("large.jpg") }, csv)
        let evalScore = try XCTUnwrap(Float(row.split(separator: ",", omittingEmptySubsequences: false)[scoreColumn]), csv)

        let inspector = try RSTPMInspector(bundle: FilePath(model.path), weightsDirectory: TestPaths.weightsDirectory)
        func daemonScore(_ url: URL) throws -> Float {
            let input = InspectionInput(fileName: url.lastPathComponent, path: FilePath(url.path), bytes: [UInt8](try Data(contentsOf: url)))
            return try XCTUnwrap(inspector.inspect([input]).first).get().score
        }
        let daemon = try daemonScore(jpeg)

        // Thread counts may differ between the processes; the decode may not.
        let tolerance = 1e-5 * max(abs(daemon), 1e-6)
        XCTAssertEqual(inferScore, daemon, accuracy: tolerance, "infer and rstpmd")
        XCTAssertEqual(evalScore, daemon, accuracy: tolerance, "eval and rstpmd")
        // A caller that decoded the JPEG at full size would be told apart.
        let fullSize = try daemonScore(fullSizePNG)
        XCTAssertGreaterThan(abs(fullSize - daemon), 100 * tolerance, "full-size decode \(fullSize), scaled \(daemon)")
    }
}
