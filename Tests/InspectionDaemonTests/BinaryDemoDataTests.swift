import Evaluation
import Foundation
import Imaging
import TestSupport
import XCTest

/// `rstpm demo-data` writes a fabric category that the evaluation's MVTec AD reader takes as is.
final class BinaryDemoDataTests: XCTestCase {
    func testDemoDataWritesAnMVTecCategoryWithAMaskForEveryDefectiveImage() throws {
        guard let rstpm = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm not built: run swift build -c release first") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-demo-data-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let arguments = ["demo-data", "--out", directory.path, "--train", "3", "--test-good", "2", "--test-defective-per-type", "2",
                         "--size", "48", "--seed", "7"]
        let (status, output) = try Tools.run(rstpm, arguments)
        XCTAssertEqual(status, 0, output)

        let category = try MVTecCategory(root: directory.appendingPathComponent("fabric"))
        XCTAssertEqual(category.trainImages.count, 3)
        XCTAssertEqual(category.goodTestCount, 2)
        XCTAssertEqual(category.defectTypes, ["hole", "scratch", "stain"])
        XCTAssertEqual(category.defectiveTestCount, 6)
        XCTAssertTrue(category.hasPixelGroundTruth)
        for sample in category.testSamples where sample.label == 1 {
            let mask = try XCTUnwrap(sample.mask, "\(sample.image.path) has no mask")
            let pixels = try ImageDecoder.decodeMask(contentsOf: mask)
            XCTAssertEqual([pixels.width, pixels.height], [48, 48])
            XCTAssertTrue(pixels.pixels.allSatisfy { $0 == 0 || $0 == 255 }, mask.path)
            XCTAssertTrue(pixels.pixels.contains(255), "\(mask.path) marks no defect")
        }
        let image = try ImageDecoder.decode(contentsOf: category.testSamples[0].image)
        XCTAssertEqual([image.width, image.height], [48, 48])

        // A second run leaves the existing category alone.
        let (again, message) = try Tools.run(rstpm, arguments)
        XCTAssertNotEqual(again, 0, message)
        XCTAssertTrue(message.contains("already exists"), message)
        XCTAssertEqual(try MVTecCategory(root: directory.appendingPathComponent("fabric")).testSamples.count, 8)
    }
}
