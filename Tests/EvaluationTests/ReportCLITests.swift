import Foundation
import TestSupport
import XCTest

/// `rstpm eval` through the binary, for what needs no trained model: argument checks and
/// the error for a model folder that is not there.
final class ReportCLITests: XCTestCase {
    private func runRSTPM(_ arguments: [String]) throws -> (status: Int32, text: String) {
        guard let binary = Tools.builtExecutable("rstpm") else {
            XCTFail("rstpm is not built: run `swift build -c release` first")
            throw XCTSkip("no rstpm binary")
        }
        let result = try Tools.run(binary, arguments)
        return (result.status, result.output)
    }

    func testModelsAndCategoriesMustPair() throws {
        let result = try runRSTPM(["eval", "--model", "a", "--model", "b", "--data", "x", "--data", "y", "--data", "z"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.text.contains("2 --model for 3 --data"), result.text)
    }

    func testMissingCategoryIsReportedBeforeTheModelLoads() throws {
        let result = try runRSTPM(["eval", "--model", "/nonexistent/model", "--data", "/nonexistent/category"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.text.contains("/nonexistent/category: folder not found"), result.text)
    }

    func testMissingModelNamesThePath() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-cli-\(UUID().uuidString)/widget")
        addTeardownBlock { try? FileManager.default.removeItem(at: root.deletingLastPathComponent()) }
        for file in ["train/good/000.png", "test/good/000.png"] {
            let url = root.appendingPathComponent(file)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data([0]).write(to: url)
        }
        let missing = "/nonexistent/rstpm-model-\(UUID().uuidString)"
        let result = try runRSTPM(["eval", "--model", missing, "--data", root.path])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.text.contains(missing), result.text)
    }
}
