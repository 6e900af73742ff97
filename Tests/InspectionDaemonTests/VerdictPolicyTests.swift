import InspectionDaemon
import XCTest

/// `VerdictPolicy`: the one place a line's threshold is decided.
final class VerdictPolicyTests: XCTestCase {
    func testTheModelsThresholdDecidesWithoutAnOverride() {
        XCTAssertEqual(VerdictPolicy.decide(score: 0.49, modelThreshold: 0.5, thresholdOverride: nil),
                       VerdictDecision(threshold: .init(value: 0.5, source: .model), verdict: .ok))
        XCTAssertEqual(VerdictPolicy.decide(score: 0.5, modelThreshold: 0.5, thresholdOverride: nil).verdict, .defect, "defect at score >= threshold")
    }

    func testALinesOverrideReplacesTheModelsThreshold() {
        XCTAssertEqual(VerdictPolicy.decide(score: 0.3, modelThreshold: 0.5, thresholdOverride: 0.25),
                       VerdictDecision(threshold: .init(value: 0.25, source: .configuration), verdict: .defect))
        XCTAssertEqual(VerdictPolicy.decide(score: 0.7, modelThreshold: 0.5, thresholdOverride: 0.9).verdict, .ok)
    }

    func testTheOutcomeAndTheLineConfigurationGoIn() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let outcome = InspectionOutcome(score: 0.4, threshold: 0.5, anomalyMap: [0.4], mapWidth: 1, mapHeight: 1, imageWidth: 1, imageHeight: 1,
                                        heatmapPNG: [], timings: InspectionTimings(decodeMilliseconds: 0, inferMilliseconds: 0))
        XCTAssertEqual(VerdictPolicy.decide(outcome, on: folders.configuration()).verdict, .ok)
        XCTAssertEqual(VerdictPolicy.decide(outcome, on: folders.configuration(threshold: 0.4)),
                       VerdictDecision(threshold: .init(value: 0.4, source: .configuration), verdict: .defect))
    }
}
