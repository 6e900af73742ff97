import ContinuousLearning
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// The gate's scores from a real bundle: a tiny model (64x64, one epoch per phase on eight
/// bottle images) trained with the built `rstpm`, then scored through `RSTPMCandidateEvaluator`.
final class EvaluatorTests: XCTestCase {
    func testRealBundleScoresImagesAtItsOwnThreshold() throws {
        let rstpm = TestPaths.repositoryRoot.appendingPathComponent(".build/release/rstpm")
        let bottle = TestPaths.sharedDatasets.appendingPathComponent("mvtec_ad/bottle")
        guard FileManager.default.isExecutableFile(atPath: rstpm.path) else { throw XCTSkip("rstpm is not built") }
        guard FileManager.default.fileExists(atPath: bottle.path) else { throw XCTSkip("\(bottle.path) missing") }
        for file in ["efficientnet-lite0-57934424.pth", "efficientnet-lite2-9656183e.pth"]
        where !FileManager.default.fileExists(atPath: TestPaths.weightsDirectory.appendingPathComponent(file).path) {
            throw XCTSkip("teacher weights missing in \(TestPaths.weightsDirectory.path)")
        }
        let scratch = try Scratch()
        defer { scratch.remove() }
        for index in 0..<8 {
            let name = String(format: "%03d.png", index)
            try FileManager.default.copyItem(at: bottle.appendingPathComponent("train/good/\(name)"), to: scratch.root.appendingPathComponent("good-\(name)"))
        }
        try scratch.makeDirectory("data")
        for index in 0..<8 {
            try FileManager.default.moveItem(atPath: scratch.path(String(format: "good-%03d.png", index)).string,
                                             toPath: scratch.path(String(format: "data/%03d.png", index)).string)
        }
        try scratch.write(#"{"inputWidth": 64, "inputHeight": 64, "batchSize": 4, "validationFraction": 0.25}"#, to: "config.json")
        let process = Process()
        process.executableURL = rstpm
        process.arguments = ["train", "--data", scratch.path("data").string, "--out", scratch.path("model").string, "--config", scratch.path("config.json").string,
                             "--epochs", "1,1", "--weights-dir", TestPaths.weightsDirectory.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)

        try scratch.write("not an image", to: "broken.png")
        let images = [
            FilePath(bottle.appendingPathComponent("test/good/000.png").path),
            FilePath(bottle.appendingPathComponent("test/broken_large/000.png").path),
            scratch.path("broken.png"),
            scratch.path("missing.png"),
        ]
        let evaluator = RSTPMCandidateEvaluator(weightsDirectory: TestPaths.weightsDirectory, batchSize: 3)
        let result = try evaluator.scores(bundle: scratch.path("model"), images: images)
        XCTAssertEqual(result.scores.count, 4)
        XCTAssertTrue(result.scores[0].isFinite && result.scores[1].isFinite, "\(result.scores)")
        XCTAssertTrue(result.scores[2].isNaN && result.scores[3].isNaN, "unreadable images score NaN: \(result.scores)")
        let manifest = try scratch.json("model/manifest.json")
        let threshold = try XCTUnwrap((manifest["threshold"] as? [String: Any])?["value"] as? Double)
        XCTAssertEqual(Double(result.threshold), threshold, accuracy: 1e-6)
        XCTAssertThrowsError(try evaluator.scores(bundle: scratch.path("data"), images: images), "a folder without a bundle")
    }
}
