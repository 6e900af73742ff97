import Evaluation
import Foundation
import XCTest

/// Hand-checkable scores: 4 good, 2 crack, 3 hole.
///
/// At 0.5 (rejected at score >= 0.5): good 0.6 is rejected (1 of 4); crack 0.4 and hole 0.45
/// pass (2 of 5 defects escape); hole 0.5 sits on the threshold and is rejected.
func handCheckedScores() -> [ImageScore] {
    [("good", 0.1), ("good", 0.2), ("good", 0.3), ("good", 0.6),
     ("crack", 0.7), ("crack", 0.4), ("hole", 0.5), ("hole", 0.8), ("hole", 0.45)].enumerated().map { index, item in
        ImageScore(image: "/data/bottle/test/\(item.0)/00\(index).png", defectType: item.0, label: item.0 == "good" ? 0 : 1, score: item.1)
    }
}

/// A one-category report around `handCheckedScores` at threshold 0.5 (no maps: the operating
/// point needs only scores).
func handCheckedReport() -> EvaluationReport {
    let images = handCheckedScores()
    let category = CategoryReport(
        category: "bottle", dataPath: "/data/bottle", modelPath: "/models/bottle", modelID: "m", evaluationWidth: 8,
        evaluationHeight: 8, fprLimit: 0.3, maps: [],
        goodScores: Histogram(values: images.filter { $0.label == 0 }.map(\.score), binCount: 4, range: 0...1),
        defectiveScores: Histogram(values: images.filter { $0.label == 1 }.map(\.score), binCount: 4, range: 0...1),
        threshold: 0.5, thresholdStatement: "fixed", timing: InferenceTiming(milliseconds: [1], note: "-"),
        worstGood: [], worstDefective: [], imageScores: images)
    return EvaluationReport(title: "rstpm eval: bottle", createdAt: Date(timeIntervalSince1970: 1_800_000_000), categories: [category])
}

final class OperatingPointTests: XCTestCase {
    func testConfusionMatrixPerDefectType() {
        let point = OperatingPoint(threshold: 0.5, images: handCheckedScores())
        XCTAssertEqual(point.good, OperatingPoint.Row(name: "good", images: 4, rejected: 1))
        XCTAssertEqual(point.defectTypes, [OperatingPoint.Row(name: "crack", images: 2, rejected: 1),
                                           OperatingPoint.Row(name: "hole", images: 3, rejected: 2)])
        XCTAssertEqual(point.defects, OperatingPoint.Row(name: "all defects", images: 5, rejected: 3))
        XCTAssertEqual(point.defects.passed, 2)
        XCTAssertEqual(point.goodRejectedRate, 0.25)
        XCTAssertEqual(point.defectEscapeRate, 0.4)
    }

    func testTheThresholdItselfIsRejectedAsRstpmdDecides() {
        // Just above 0.5 the hole at 0.5 escapes too.
        let point = OperatingPoint(threshold: 0.5000001, images: handCheckedScores())
        XCTAssertEqual(point.defects.passed, 3)
        XCTAssertEqual(point.good.rejected, 1)
    }

    func testHeadline() {
        XCTAssertEqual(OperatingPoint(threshold: 0.5, images: handCheckedScores()).headline,
                       "At threshold 0.5, 25% of good parts are rejected (1 of 4) and 40% of defects escape (2 of 5).")
        XCTAssertEqual(OperatingPoint(threshold: 0.65, images: handCheckedScores()).headline,
                       "At threshold 0.65, 0% of good parts are rejected (0 of 4) and 60% of defects escape (3 of 5).")
        let goodOnly = handCheckedScores().filter { $0.label == 0 }
        XCTAssertEqual(OperatingPoint(threshold: 0.25, images: goodOnly).headline,
                       "At threshold 0.25, 50% of good parts are rejected (2 of 4) and no defective test images to count escapes on.")
        let thirds = [0.1, 0.2, 0.9].map { ImageScore(image: "x", defectType: "good", label: 0, score: $0) }
        XCTAssertTrue(OperatingPoint(threshold: 0.5, images: thirds).headline.contains("33.3% of good parts"))
    }

    func testReportCarriesThePointAndLeadsWithTheHeadline() throws {
        let report = handCheckedReport()
        XCTAssertEqual(report.categories[0].operatingPoint, OperatingPoint(threshold: 0.5, images: handCheckedScores()))
        let html = try HTMLReport.html(for: report)
        let headline = "At threshold 0.5, 25% of good parts are rejected (1 of 4) and 40% of defects escape (2 of 5)."
        let first = try XCTUnwrap(html.range(of: headline))
        XCTAssertLessThan(first.lowerBound, try XCTUnwrap(html.range(of: "<section")).lowerBound, "the headline comes first")
        // The matrix: good row, then crack (1 escape of 2), hole (1 of 3).
        XCTAssertTrue(html.contains("<tr><td>good</td><td>4</td><td>3</td><td>1</td><td>1 (25%)</td></tr>"), html)
        XCTAssertTrue(html.contains("<tr><td>crack</td><td>2</td><td>1</td><td>1</td><td>1 (50%)</td></tr>"))
        XCTAssertTrue(html.contains("<tr><td>hole</td><td>3</td><td>1</td><td>2</td><td>1 (33.3%)</td></tr>"))
        XCTAssertTrue(html.contains("<tr class=\"summary\"><td>all defects</td><td>5</td><td>2</td><td>3</td><td>2 (40%)</td></tr>"))
        let json = try JSONDecoder().decode(EvaluationReport.self, from: try report.jsonData())
        XCTAssertEqual(json.categories[0].imageScores, handCheckedScores())
        XCTAssertEqual(json.categories[0].operatingPoint?.defects.passed, 2)
    }

    func testCSV() {
        var report = handCheckedReport()
        report.categories[0].imageScores[0].image = "/data/a,b/\"q\".png"
        let lines = ScoresCSV.csv(for: report).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 1 + 9 + 1, "header, 9 rows, a final newline")
        XCTAssertEqual(lines[0], "category,image,defect_type,label,score,decision")
        XCTAssertEqual(lines[1], "bottle,\"/data/a,b/\"\"q\"\".png\",good,0,0.1,ok")
        XCTAssertEqual(lines[4], "bottle,/data/bottle/test/good/003.png,good,0,0.6,defect")
        XCTAssertEqual(lines[6], "bottle,/data/bottle/test/crack/005.png,crack,1,0.4,ok")
        XCTAssertEqual(lines[7], "bottle,/data/bottle/test/hole/006.png,hole,1,0.5,defect")
        XCTAssertEqual(lines.last, "")
        report.categories[0].threshold = nil
        XCTAssertTrue(ScoresCSV.csv(for: report).contains("good,0,0.6,\n"), "no decision without a threshold")
    }

    func testFloatScoresKeepTheirShortDecimal() {
        XCTAssertEqual(ImageScore.decimal(Float(0.3)), 0.3)
        XCTAssertNotEqual(Double(Float(0.3)), 0.3)
        // Order is kept: the daemon's Float comparison and the report's Double one agree.
        let a = Float(0.1).nextUp, b = Float(0.1)
        XCTAssertGreaterThan(ImageScore.decimal(a), ImageScore.decimal(b))
    }
}
