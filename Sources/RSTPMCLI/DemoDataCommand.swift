import ArgumentParser
import Foundation
import DemoProducts
import RSTPM

/// `rstpm demo-data`: the demo's woven fabric as an MVTec AD category with ground-truth masks,
/// for `rstpm train` / `rstpm eval` and the accuracy bench.
struct DemoDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-data",
        abstract: "Write the demo's procedurally drawn fabric as an MVTec AD category folder with ground-truth masks.",
        discussion: """
        Writes OUT/fabric/train/good, test/good, test/<scratch|hole|stain> and ground_truth/<defect>/<name>_mask.png \
        (0 good, 255 defect). Every image has its own seed, counted up from --seed: training images first, then the \
        test images, so training and test never share a roll. The same options give the same files on every machine.
        """)

    @Option(help: "Folder to write the category folder `fabric` into (it must not hold one yet).")
    var out: String

    @Option(help: "Normal training images (train/good).")
    var train = 200

    @Option(help: "Normal test images (test/good).")
    var testGood = 40

    @Option(help: "Defective test images per defect type (scratch, hole, stain).")
    var testDefectivePerType = 20

    @Option(help: "Image width and height in pixels.")
    var size = 256

    @Option(help: "Seed of the first training image.")
    var seed: UInt64 = 0

    func validate() throws {
        if train < 1 { throw ValidationError("--train must be at least 1") }
        if testGood < 0 || testDefectivePerType < 0 { throw ValidationError("--test-good and --test-defective-per-type cannot be negative") }
        if testGood + testDefectivePerType == 0 { throw ValidationError("give some test images (--test-good, --test-defective-per-type)") }
        if size < 16 { throw ValidationError("--size must be at least 16") }
    }

    func run() throws {
        let dataSet = DemoProducts.FabricDataSet(trainImages: train, testGoodImages: testGood, defectiveImagesPerType: testDefectivePerType,
                                                 size: size, firstSeed: seed)
        let category = try dataSet.write(into: URL(fileURLWithPath: out).standardizedFileURL)
        let defective = testDefectivePerType * DemoProducts.Defect.allCases.count
        print("\(category.path): \(train) training, \(testGood) good and \(defective) defective test images with masks, \(size)x\(size)")
    }
}
