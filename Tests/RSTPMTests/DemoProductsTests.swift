import Imaging
import DemoProducts
import RSTPM
import XCTest

/// The demo's defect masks: the ground truth of the fabric data set.
final class DemoProductsTests: XCTestCase {
    /// A pixel is in the mask exactly when the defect changed it: the mask is neither larger (good
    /// pixels counted as defect) nor smaller (painted pixels the metrics would call good).
    func testMaskIsExactlyWhereTheDefectiveImageDiffersFromTheNormalFabric() {
        let size = 96
        for seed: UInt64 in [5, 1002, 40_000] {
            let normal = DemoProducts.fabric(seed: seed, size: size)
            for defect in DemoProducts.Defect.allCases {
                let (image, mask) = DemoProducts.defectiveWithMask(seed: seed, defect: defect, size: size)
                XCTAssertEqual(image, DemoProducts.defective(seed: seed, defect: defect, size: size), "\(defect) seed \(seed)")
                XCTAssertEqual([mask.width, mask.height], [size, size])
                XCTAssertTrue(mask.pixels.allSatisfy { $0 == 0 || $0 == 255 }, "\(defect) seed \(seed): mask values other than 0 and 255")
                var masked = 0
                for pixel in 0..<size * size {
                    let differs = (0..<3).contains { image.pixels[3 * pixel + $0] != normal.pixels[3 * pixel + $0] }
                    XCTAssertEqual(mask.pixels[pixel] == 255, differs, "\(defect) seed \(seed) pixel (\(pixel % size), \(pixel / size))")
                    if mask.pixels[pixel] == 255 { masked += 1 }
                }
                // A visible defect, not the whole image.
                XCTAssertTrue((size * size / 500...size * size / 3).contains(masked), "\(defect) seed \(seed): \(masked) mask pixels")
            }
        }
    }

    func testMaskIsDeterministicAndFollowsTheSeed() {
        for defect in DemoProducts.Defect.allCases {
            let first = DemoProducts.defectiveWithMask(seed: 9, defect: defect, size: 64)
            let again = DemoProducts.defectiveWithMask(seed: 9, defect: defect, size: 64)
            XCTAssertEqual(first.image, again.image, "\(defect)")
            XCTAssertEqual(first.mask, again.mask, "\(defect)")
            XCTAssertNotEqual(first.mask, DemoProducts.defectiveWithMask(seed: 10, defect: defect, size: 64).mask, "\(defect)")
        }
    }

    func testFabricDataSetGivesEveryImageItsOwnSeed() {
        let dataSet = DemoProducts.FabricDataSet(trainImages: 5, testGoodImages: 3, defectiveImagesPerType: 2, size: 32, firstSeed: 100)
        let samples = dataSet.samples
        XCTAssertEqual(samples.count, 5 + 3 + 2 * DemoProducts.Defect.allCases.count)
        // Unique seeds: no test image is a training image, and no two test images are one roll.
        XCTAssertEqual(Set(samples.map(\.seed)).count, samples.count)
        XCTAssertEqual(samples.filter { $0.folder == "train/good" }.map(\.seed), Array(100..<105))
        XCTAssertEqual(samples.filter { $0.defect == nil }.map(\.folder), Array(repeating: "train/good", count: 5) + Array(repeating: "test/good", count: 3))
        for sample in samples {
            if let defect = sample.defect { XCTAssertEqual(sample.folder, "test/\(defect.rawValue)") }
        }
        XCTAssertEqual(samples.filter { $0.folder == "test/good" }.map(\.name), ["000", "001", "002"])
        XCTAssertEqual(samples.filter { $0.defect == .hole }.map(\.name), ["000", "001"])
    }
}
