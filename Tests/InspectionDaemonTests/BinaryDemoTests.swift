import Foundation
import TestSupport
import XCTest

/// `rstpm demo --exit-after-verdicts` end to end: images, a (smaller) demo model, rstpmd, drops,
/// one verdict line per dropped image, most of them right.
final class BinaryDemoTests: XCTestCase {
    func testDemoPrintsAVerdictForEveryDroppedImage() throws {
        _ = try BinaryHarness.tinyModel()  // skips without binaries, weights or data
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-demo-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (status, output) = try Tools.run(BinaryHarness.cliBinary, [
            "demo", "--dir", directory.path, "--exit-after-verdicts", "--train-images", "16", "--epochs", "3,2",
            "--weights-dir", TestPaths.weightsDirectory.path,
        ])
        XCTAssertEqual(status, 0, output)
        // Rows: file, verdict, score, threshold, expected.
        let rows = output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            .filter { $0.count == 5 && $0[0].hasSuffix(".png") }
        XCTAssertEqual(Set(rows.map { $0[0] }).count, 8, output)
        let right = rows.filter { $0[1] == $0[4] }.count
        XCTAssertGreaterThanOrEqual(right, 6, output)
        XCTAssertTrue(output.contains("\(right)/8 demo verdicts as expected"), output)
        // The demo left the line's folders consistent: everything archived, nothing quarantined.
        let line = directory.appendingPathComponent("line")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: line.appendingPathComponent("archive").path).count, 8)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: line.appendingPathComponent("quarantine").path), [])
    }
}
