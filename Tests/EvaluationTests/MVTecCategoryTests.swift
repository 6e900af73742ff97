import Evaluation
import Foundation
import OperatorErrors
import TestSupport
import XCTest

final class MVTecCategoryTests: XCTestCase {
    private func sharedCategory(_ path: String) throws -> URL {
        let url = TestPaths.sharedDatasets.appendingPathComponent(path)
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("\(url.path) is not on this machine") }
        return url
    }

    func testBottle() throws {
        let category = try MVTecCategory(root: try sharedCategory("mvtec_ad/bottle"))
        XCTAssertEqual(category.name, "bottle")
        XCTAssertEqual(category.trainImages.count, 209)
        XCTAssertEqual(category.goodTestCount, 20)
        XCTAssertEqual(category.defectiveTestCount, 63)
        XCTAssertEqual(category.defectTypes, ["broken_large", "broken_small", "contamination"])
        XCTAssertTrue(category.hasPixelGroundTruth)
        for sample in category.testSamples {
            XCTAssertEqual(sample.label == 0, sample.defectType == "good")
            XCTAssertEqual(sample.mask == nil, sample.label == 0, sample.image.path)
        }
        let first = try XCTUnwrap(category.testSamples(ofType: "broken_large").first)
        XCTAssertEqual(first.image.lastPathComponent, "000.png")
        XCTAssertEqual(first.mask?.path, category.root.path + "/ground_truth/broken_large/000_mask.png")
    }

    func testMagneticTile() throws {
        let category = try MVTecCategory(root: try sharedCategory("magnetic_tile/tile"))
        XCTAssertEqual(category.trainImages.count, 400)
        XCTAssertEqual(category.goodTestCount, 100)
        XCTAssertEqual(category.defectiveTestCount, 392)
        XCTAssertEqual(category.defectTypes, ["blowhole", "break", "crack", "fray", "uneven"])
        XCTAssertEqual(category.testSamples(ofType: "blowhole").count, 115)
    }

    private func makeTree(_ files: [String]) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-mvtec-\(UUID().uuidString)/widget")
        for file in files {
            let url = root.appendingPathComponent(file)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data([0]).write(to: url)
        }
        addTeardownBlock { try? FileManager.default.removeItem(at: root.deletingLastPathComponent()) }
        return root
    }

    func testMissingMaskIsATypedError() throws {
        let root = try makeTree(["train/good/000.png", "test/good/000.png", "test/scratch/000.png", "test/scratch/001.png",
                                 "ground_truth/scratch/000_mask.png"])
        XCTAssertThrowsError(try MVTecCategory(root: root)) { error in
            guard let error = error as? OperatorError, error.kind == .notFound else { return XCTFail("\(error)") }
            XCTAssertEqual(URL(fileURLWithPath: error.path).lastPathComponent, "001.png")
            XCTAssertTrue(error.problem.contains(root.path + "/ground_truth/scratch/001_mask.png"), error.problem)
        }
    }

    func testWithoutGroundTruthOnlyImageMetrics() throws {
        let root = try makeTree(["train/good/a.png", "train/good/.hidden.png", "train/good/notes.txt",
                                 "test/good/a.png", "test/dent/b.JPG"])
        let category = try MVTecCategory(root: root)
        XCTAssertFalse(category.hasPixelGroundTruth)
        XCTAssertEqual(category.trainImages.map(\.lastPathComponent), ["a.png"])
        XCTAssertEqual(category.testSamples.map(\.label), [0, 1])
        XCTAssertNil(category.testSamples[1].mask)
    }

    func testEmptyAndMissingFolders() throws {
        let noTest = try makeTree(["train/good/000.png"])
        XCTAssertThrowsError(try MVTecCategory(root: noTest)) { error in
            XCTAssertEqual(error as? OperatorError, OperatorError(.notFound, path: noTest.appendingPathComponent("test").path, problem: "folder not found",
                                                                  hint: "the test images of the MVTec AD layout live in test/<good|defect type>"))
        }
        let emptyTest = try makeTree(["train/good/000.png", "test/readme.txt"])
        XCTAssertThrowsError(try MVTecCategory(root: emptyTest)) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .empty)
            XCTAssertEqual((error as? OperatorError)?.path, emptyTest.path + "/test")
        }
        let emptyType = try makeTree(["train/good/000.png", "test/good/000.png", "test/dent/readme.txt"])
        XCTAssertThrowsError(try MVTecCategory(root: emptyType)) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .empty)
            XCTAssertEqual((error as? OperatorError)?.path, emptyType.path + "/test/dent")
        }
        XCTAssertThrowsError(try MVTecCategory(root: URL(fileURLWithPath: "/nonexistent/rstpm/category"))) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .notFound)
        }
    }

    /// Evaluation reads test/ only: no train/good, or an empty one, is fine.
    func testTrainGoodIsOptional() throws {
        for files in [["test/good/000.png", "test/dent/001.bmp"], ["train/good/readme.txt", "test/good/000.tif", "test/dent/001.png"]] {
            let category = try MVTecCategory(root: try makeTree(files))
            XCTAssertEqual(category.trainImages, [])
            XCTAssertEqual(category.testSamples.map(\.label), [0, 1], "\(files)")
        }
    }

    /// A category, a test/<type> folder and an image may each be symbolic links (data sets
    /// shared between users or machines are often linked in).
    func testFollowsSymbolicLinks() throws {
        let real = try makeTree(["test/good/000.png", "elsewhere/dent/001.png", "ground_truth/dent/001_mask.png", "elsewhere/good2.png"])
        let manager = FileManager.default
        try manager.createSymbolicLink(atPath: real.path + "/test/dent", withDestinationPath: real.path + "/elsewhere/dent")
        try manager.createSymbolicLink(atPath: real.path + "/test/good/002.png", withDestinationPath: real.path + "/elsewhere/good2.png")
        let linked = real.deletingLastPathComponent().appendingPathComponent("linked")
        try manager.createSymbolicLink(atPath: linked.path, withDestinationPath: real.path)
        let category = try MVTecCategory(root: linked)
        XCTAssertEqual(category.testSamples.map(\.image.lastPathComponent), ["000.png", "002.png", "001.png"])
        XCTAssertEqual(category.defectTypes, ["dent"])
        XCTAssertEqual(category.testSamples.last?.mask?.lastPathComponent, "001_mask.png")
    }
}
