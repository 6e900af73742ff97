import Evaluation
import Foundation
import Imaging
import OperatorErrors
import XCTest

final class ReportBuilderTests: XCTestCase {
    /// A category on disk: 32x32 images, masks at 32x32 (evaluated at 16x16), 2 good + 2 defective.
    private func makeCategory() throws -> MVTecCategory {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-builder-\(UUID().uuidString)/widget")
        addTeardownBlock { try? FileManager.default.removeItem(at: root.deletingLastPathComponent()) }
        let image = try PNGEncoder.encode(RGBImage(width: 32, height: 32, pixels: [Float](repeating: 0.4, count: 32 * 32 * 3)))
        var mask = [UInt8](repeating: 0, count: 32 * 32)
        for y in 8..<16 { for x in 8..<16 { mask[y * 32 + x] = 255 } }
        let files: [(String, Data)] = [
            ("train/good/000.png", image), ("test/good/000.png", image), ("test/good/001.png", image),
            ("test/dent/000.png", image), ("test/dent/001.png", image),
            ("ground_truth/dent/000_mask.png", try PNGEncoder.encode(gray: mask, width: 32, height: 32)),
            ("ground_truth/dent/001_mask.png", try PNGEncoder.encode(gray: mask, width: 32, height: 32)),
        ]
        for (path, data) in files {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
        }
        return try MVTecCategory(root: root)
    }

    func testBuilderReadsMasksAndRendersWorstCases() throws {
        let category = try makeCategory()
        var builder = CategoryReportBuilder(category: category, mapNames: ["weak", "full"], width: 16, height: 16, modelPath: "/m",
                                            modelID: "id", threshold: 0.5, thresholdStatement: "fixed")
        for (index, sample) in category.testSamples.enumerated() {
            // The full map lights up exactly the mask's 4x4 block at 16x16 (rows and columns 4..<8).
            let full = (0..<256).map { i -> Float in sample.label == 1 && (4..<8).contains(i / 16) && (4..<8).contains(i % 16) ? 0.9 : 0.1 }
            let weak = (0..<256).map { Float(($0 + index) % 5) / 10 }
            try builder.add(sample: sample, maps: [weak, full], scores: [weak.max()!, full.max()!], milliseconds: Double(10 + index))
        }
        let report = try builder.build(timingNote: "test", histogramBins: 4, worstCount: 1)
        XCTAssertEqual(report.maps.map(\.name), ["weak", "full"])
        // Pixel AUROC 1 is only possible if the masks were read, resized nearest and binarised.
        XCTAssertEqual(report.maps[1].table.summary.scores.pixelAUROC, 1)
        XCTAssertEqual(report.maps[1].table.summary.scores.aupro, 1)
        XCTAssertEqual(report.goodScores.counts.reduce(0, +), 2)
        XCTAssertEqual(report.defectiveScores.counts.reduce(0, +), 2)
        XCTAssertEqual(report.timing.imageCount, 4)
        XCTAssertEqual(report.timing.meanMilliseconds, 11.5)
        XCTAssertEqual(report.worstGood.count, 1)
        XCTAssertEqual(report.worstDefective.map(\.defectType), ["dent"])
        let panels = try XCTUnwrap(report.worstDefective[0].panels)
        for data in [panels.original, panels.heatmap, panels.ownScaleHeatmap, panels.groundTruth, try XCTUnwrap(panels.predictedMask)] {
            let panel = try ImageDecoder.decode(data: data, name: "panel")
            XCTAssertEqual(panel.width, 320)
            XCTAssertEqual(panel.height, 320)
        }
        XCTAssertEqual(panels.ownScaleMaximum, 0.9, accuracy: 1e-6)
        // The predicted mask (map >= 0.5) and the ground truth both cover the mask's block, the
        // image's rows and columns 8..<16 of 32, i.e. 80..<160 of 320.
        let truth = try ImageDecoder.decodeMask(data: panels.groundTruth, name: "truth")
        let predicted = try ImageDecoder.decodeMask(data: try XCTUnwrap(panels.predictedMask), name: "predicted")
        XCTAssertEqual(truth.pixels[120 * 320 + 120], 255)
        XCTAssertEqual(truth.pixels[20 * 320 + 20], 0)
        XCTAssertEqual(predicted.pixels[120 * 320 + 120], 255)
        XCTAssertEqual(predicted.pixels[20 * 320 + 20], 0)
        let good = try ImageDecoder.decodeMask(data: try XCTUnwrap(report.worstGood[0].panels).groundTruth, name: "good truth")
        XCTAssertTrue(good.pixels.allSatisfy { $0 == 0 }, "a good image's ground truth is black")
        // Every image's output score, and the matrix at 0.5: nothing wrong.
        XCTAssertEqual(report.imageScores.map(\.score).sorted(), [0.1, 0.1, 0.9, 0.9], "the Floats' shortest decimals")
        XCTAssertEqual(report.operatingPoint?.good, OperatingPoint.Row(name: "good", images: 2, rejected: 0))
        XCTAssertEqual(report.operatingPoint?.defects, OperatingPoint.Row(name: "all defects", images: 2, rejected: 2))
    }

    func testMissingMaskFileIsReportedWithItsPath() throws {
        let category = try makeCategory()
        let defective = try XCTUnwrap(category.testSamples.first { $0.label == 1 })
        try FileManager.default.removeItem(at: try XCTUnwrap(defective.mask))
        var builder = CategoryReportBuilder(category: category, mapNames: ["full"], width: 16, height: 16, modelPath: "/m",
                                            modelID: nil, threshold: nil, thresholdStatement: nil)
        XCTAssertThrowsError(try builder.add(sample: defective, maps: [[Float](repeating: 0, count: 256)], scores: [0], milliseconds: 1)) { error in
            XCTAssertEqual((error as? OperatorError)?.path, defective.mask?.path)
        }
    }
}
