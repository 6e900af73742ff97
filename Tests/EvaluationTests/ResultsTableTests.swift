import Evaluation
import Foundation
import XCTest

final class ResultsTableTests: XCTestCase {
    /// Two defect types on 2x2 images: "dent" is found perfectly, "scratch" not at all.
    private func samples() -> [ScoredSample] {
        let mask: [UInt8] = [255, 0, 0, 0]
        return [
            ScoredSample(defectType: "good", label: 0, imageScore: 0.2, anomalyMap: [0.1, 0.2, 0.1, 0.2]),
            ScoredSample(defectType: "good", label: 0, imageScore: 0.3, anomalyMap: [0.2, 0.1, 0.3, 0.1]),
            ScoredSample(defectType: "dent", label: 1, imageScore: 0.9, anomalyMap: [0.9, 0.1, 0.1, 0.1], mask: mask),
            ScoredSample(defectType: "scratch", label: 1, imageScore: 0.1, anomalyMap: [0.0, 0.3, 0.3, 0.3], mask: mask),
        ]
    }

    func testPerTypeRowsAndOverall() throws {
        let table = try evaluateCategory(title: "widget", samples: samples(), width: 2, height: 2)
        XCTAssertEqual(table.rows.map(\.name), ["dent", "scratch"])
        XCTAssertEqual(table.rows[0].scores.imageAUROC, 1)
        XCTAssertEqual(table.rows[0].scores.f1Max, 1)
        XCTAssertEqual(try XCTUnwrap(table.rows[0].scores.aupro), 1, accuracy: 1e-12)
        XCTAssertEqual(table.rows[1].scores.imageAUROC, 0)
        XCTAssertEqual(try XCTUnwrap(table.rows[1].scores.pixelAUROC), 0, accuracy: 1e-12)
        XCTAssertEqual(table.summary.name, "overall")
        XCTAssertEqual(table.summary.goodImages, 2)
        XCTAssertEqual(table.summary.defectiveImages, 2)
        XCTAssertEqual(try XCTUnwrap(table.summary.scores.imageAUROC), 0.5, accuracy: 1e-12)
    }

    func testImageMetricsOnlyWithoutMasks() throws {
        let plain = samples().map { ScoredSample(defectType: $0.defectType, label: $0.label, imageScore: $0.imageScore) }
        let table = try evaluateCategory(title: "widget", samples: plain, width: 2, height: 2)
        XCTAssertNil(table.summary.scores.pixelAUROC)
        XCTAssertNil(table.summary.scores.aupro)
        XCTAssertNotNil(table.summary.scores.imageAUROC)
    }

    func testRenderingAndJSON() throws {
        let rows = [ResultsRow(name: "bottle", goodImages: 20, defectiveImages: 63,
                               scores: MetricScores(imageAUROC: 1, pixelAUROC: 0.9876, aupro: 0.95, f1Max: 0.99)),
                    ResultsRow(name: "tile", goodImages: 100, defectiveImages: 392,
                               scores: MetricScores(imageAUROC: 0.9, pixelAUROC: nil, aupro: nil, f1Max: 0.8))]
        let table = ResultsTable.averaging(title: "RSTPM", rows: rows)
        XCTAssertEqual(try XCTUnwrap(table.summary.scores.imageAUROC), 0.95, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(table.summary.scores.pixelAUROC), 0.9876, accuracy: 1e-12)
        let text = table.rendered()
        print(text)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 7)
        XCTAssertEqual(lines[0], "RSTPM")
        XCTAssertTrue(lines[3].hasPrefix("bottle"))
        XCTAssertTrue(lines[3].contains("100.0") && lines[3].contains("98.8") && lines[3].contains("95.0"))
        XCTAssertTrue(lines[4].contains("-"))
        XCTAssertTrue(lines[6].hasPrefix("mean"))
        XCTAssertEqual(Set(lines[2...].filter { !$0.hasPrefix("-") }.map(\.count)).count, 1, "columns align")

        let decoded = try JSONDecoder().decode(ResultsTable.self, from: try table.jsonData())
        XCTAssertEqual(decoded, table)
        let json = String(decoding: try table.jsonData(), as: UTF8.self)
        XCTAssertTrue(json.contains("\"imageAUROC\" : 0.9"))
    }
}
