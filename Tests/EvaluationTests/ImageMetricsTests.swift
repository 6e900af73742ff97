import Evaluation
import TestSupport
import XCTest

final class ImageMetricsTests: XCTestCase {
    private func load(_ name: String) throws -> (scores: [Float], labels: [Int], meta: [String: Any]) {
        let fixture = try TensorFixture(named: "metrics/\(name).tensors")
        XCTAssertEqual(fixture.version, 1)
        return (fixture["scores"].values, fixture["labels"].values.map { Int($0) }, fixture.meta)
    }

    func testAUROCAndF1MaxMatchScikitLearn() throws {
        for name in ["image_ties", "image_constant", "image_continuous"] {
            let (scores, labels, meta) = try load(name)
            let auroc = try imageAUROC(scores: scores, labels: labels)
            let expectedAUROC = try XCTUnwrap(meta["auroc"] as? Double)
            print("\(name): image AUROC \(auroc) sklearn \(expectedAUROC) diff \(abs(auroc - expectedAUROC))")
            XCTAssertEqual(auroc, expectedAUROC, accuracy: 1e-6, name)
            let f1 = try f1Max(scores: scores, labels: labels)
            XCTAssertEqual(f1.f1, try XCTUnwrap(meta["f1_max"] as? Double), accuracy: 1e-6, name)
            XCTAssertEqual(f1.threshold, try XCTUnwrap(meta["f1_threshold"] as? Double), accuracy: 1e-6, name)
        }
    }

    func testHandComputedAUROCWithTies() throws {
        // Positives 0.4 and 0.8 against negatives 0.1 and 0.4: wins 1 + 0.5 (tie) + 2 = 3.5 of 4.
        XCTAssertEqual(try imageAUROC(scores: [0.1, 0.4, 0.4, 0.8], labels: [0, 0, 1, 1]), 0.875, accuracy: 1e-12)
        XCTAssertEqual(try imageAUROC(scores: [0.9, 0.8, 0.1], labels: [0, 0, 1]), 0.0, accuracy: 1e-12)
        XCTAssertEqual(try imageAUROC(scores: [Double](repeating: 3, count: 5), labels: [0, 1, 0, 1, 1]), 0.5)
    }

    func testSingleClassAndNaNThrow() {
        XCTAssertThrowsError(try imageAUROC(scores: [0.1, 0.2] as [Float], labels: [0, 0])) { error in
            XCTAssertEqual(error as? MetricError, .singleClass(metric: "image AUROC", positives: 0, negatives: 2))
        }
        XCTAssertThrowsError(try f1Max(scores: [0.1, 0.2] as [Float], labels: [0, 0]))
        XCTAssertThrowsError(try imageAUROC(scores: [0.1, .nan] as [Float], labels: [0, 1])) { error in
            XCTAssertEqual(error as? MetricError, .notANumber(metric: "image AUROC", index: 1))
        }
        XCTAssertThrowsError(try imageAUROC(scores: [] as [Float], labels: []))
    }

    func testROCCurveAreaEqualsAUROC() throws {
        let (scores, labels, _) = try load("image_ties")
        let curve = try imageROCCurve(scores: scores, labels: labels)
        XCTAssertEqual(curve.first?.falsePositiveRate, 0)
        XCTAssertEqual(curve.last?.truePositiveRate, 1)
        XCTAssertEqual(curve.last?.falsePositiveRate, 1)
        var area = 0.0
        for (a, b) in zip(curve, curve.dropFirst()) {
            XCTAssertGreaterThan(a.threshold, b.threshold)
            area += 0.5 * (a.truePositiveRate + b.truePositiveRate) * (b.falsePositiveRate - a.falsePositiveRate)
        }
        XCTAssertEqual(area, try imageAUROC(scores: scores, labels: labels), accuracy: 1e-12)
    }
}
