import Evaluation
import Foundation
import XCTest

/// Not part of the suite: runs only through bench/metrics_bench.sh, which names a category of
/// the MVTec AD layout in RSTPM_BENCH_CATEGORY. Its defective masks (read through Imaging,
/// nearest-resized to 256x256) padded with good images to 100 get random maps; the figures are
/// printed, not asserted (timings depend on the machine and its load).
final class MetricsBenchmark: XCTestCase {
    func testCategoryOf100ImagesAt256() throws {
        guard let path = ProcessInfo.processInfo.environment["RSTPM_BENCH_CATEGORY"] else {
            throw XCTSkip("benchmark: run bench/metrics_bench.sh")
        }
        let side = 256, count = 100
        let loadStart = Date()
        let category = try MVTecCategory(root: URL(fileURLWithPath: path))
        var masks = try category.testSamples.compactMap(\.mask).prefix(count).map {
            try GroundTruthMask.load(contentsOf: $0, width: side, height: side)
        } as [[UInt8]?]
        masks += [[UInt8]?](repeating: nil, count: count - masks.count)
        let loaded = Date().timeIntervalSince(loadStart)
        var generator = SystemRandomNumberGenerator()
        let samples = masks.map { mask -> ScoredSample in
            let map = (0..<side * side).map { Float.random(in: 0..<1, using: &generator) + ((mask?[$0] ?? 0) > 127 ? 0.4 : 0) }
            return ScoredSample(defectType: mask == nil ? "good" : "defect", label: mask == nil ? 0 : 1,
                                imageScore: map.max()!, anomalyMap: map, mask: mask)
        }

        let start = Date()
        var accumulator = PixelMetricsAccumulator(width: side, height: side)
        for sample in samples { try accumulator.add(map: sample.anomalyMap!, mask: sample.mask) }
        let collected = Date()
        let pixelAUROC = try accumulator.pixelAUROC()
        let sorted = Date()
        let pro = try accumulator.aupro(fprLimit: 0.3)
        let image = try imageAUROC(scores: samples.map(\.imageScore), labels: samples.map(\.label))
        let f1 = try f1Max(scores: samples.map(\.imageScore), labels: samples.map(\.label))
        let end = Date()
        print(String(format: "bench masks: %d read and resized through Imaging in %.3f s", masks.count { $0 != nil }, loaded))
        print(String(format: "bench metrics 100x256x256: total %.3f s (collect %.3f, sort + pixel AUROC %.3f, AUPRO + image metrics %.3f); regions %d, pixel AUROC %.4f, AUPRO %.4f, image AUROC %.4f, F1-max %.4f",
                     end.timeIntervalSince(start), collected.timeIntervalSince(start), sorted.timeIntervalSince(collected),
                     end.timeIntervalSince(sorted), pro.regionCount, pixelAUROC, pro.value, image, f1.f1))

        let tableStart = Date()
        let table = try evaluateCategory(title: "bench", samples: samples, width: side, height: side)
        print(String(format: "bench evaluateCategory (per-type rows + overall): %.3f s", Date().timeIntervalSince(tableStart)))
        print(table.rendered().split(separator: "\n").map { "bench | " + $0 }.joined(separator: "\n"))

        let reportStart = Date()
        let map = try MapEvaluation.evaluate(name: "random", title: "bench", samples: samples, width: side, height: side)
        let html = try HTMLReport.html(for: EvaluationReport(title: "bench", categories: [CategoryReport(
            category: category.name, dataPath: path, modelPath: "-", modelID: nil, evaluationWidth: side, evaluationHeight: side,
            fprLimit: 0.3, maps: [map], goodScores: Histogram(values: [0.5], binCount: 1, range: 0...1),
            defectiveScores: Histogram(values: [0.5], binCount: 1, range: 0...1), threshold: nil, thresholdStatement: nil,
            timing: InferenceTiming(milliseconds: [], note: "-"), worstGood: [], worstDefective: [], imageScores: [])]))
        print(String(format: "bench MapEvaluation (table + curves) and HTML with 4 charts: %.3f s, %d bytes of HTML",
                     Date().timeIntervalSince(reportStart), html.utf8.count))
    }
}
