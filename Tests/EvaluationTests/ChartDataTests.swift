import Evaluation
import XCTest

final class ChartDataTests: XCTestCase {
    func testHistogramBins() {
        let histogram = Histogram(values: [0, 0.1, 0.5, 0.99, 1, 2, Double.nan], binCount: 4, range: 0...1)
        XCTAssertEqual(histogram.counts, [2, 0, 1, 2])
        XCTAssertEqual(histogram.edges, [0, 0.25, 0.5, 0.75, 1])
    }

    func testScoreHistogramsShareBins() {
        let (good, defective) = scoreHistograms(scores: [1, 2, 3, 4] as [Float], labels: [0, 0, 1, 1], binCount: 3)
        XCTAssertEqual(good.lowerBound, 1)
        XCTAssertEqual(defective.upperBound, 4)
        XCTAssertEqual(good.counts, [1, 1, 0])
        XCTAssertEqual(defective.counts, [0, 0, 2])
    }

    func testPolylines() throws {
        let roc = try imageROCCurve(scores: [0.1, 0.9] as [Float], labels: [0, 1])
        XCTAssertEqual(rocPolyline(curve: roc), [ChartPoint(x: 0, y: 0), ChartPoint(x: 0, y: 1), ChartPoint(x: 1, y: 1)])
        let pro = try aupro(maps: [[0.9, 0.1, 0.2, 0.3]], masks: [[255, 0, 0, 0]], width: 2, height: 2)
        let line = proPolyline(curve: pro.curve, fprLimit: pro.fprLimit)
        XCTAssertEqual(line.first, ChartPoint(x: 0, y: 0))
        XCTAssertEqual(try XCTUnwrap(line.last?.x), 1, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(line.last?.y), 1, accuracy: 1e-12)
    }
}
