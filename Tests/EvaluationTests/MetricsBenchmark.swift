import Evaluation
import Foundation
import XCTest

/// Not part of the suite: runs only through bench/metrics_bench.sh, which supplies 100 real
/// 256x256 mask shapes in RSTPM_BENCH_MASKS.
final class MetricsBenchmark: XCTestCase {
    func testCategoryOf100ImagesAt256() throws {
        guard let path = ProcessInfo.processInfo.environment["RSTPM_BENCH_MASKS"] else {
            throw XCTSkip("benchmark: run bench/metrics_bench.sh")
        }
        let side = 256, pixels = side * side
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        precondition(raw.count == 100 * pixels, "benchmark: \(path) holds \(raw.count) bytes, expected 100 x 256 x 256")
        var generator = SystemRandomNumberGenerator()
        var samples: [ScoredSample] = []
        for i in 0..<100 {
            let mask = Array(raw[(i * pixels)..<((i + 1) * pixels)])
            let defective = mask.contains { $0 > 127 }
            let map = mask.map { Float.random(in: 0..<1, using: &generator) + ($0 > 127 ? 0.4 : 0) }
            samples.append(ScoredSample(defectType: defective ? "defect" : "good", label: defective ? 1 : 0,
                                        imageScore: map.max()!, anomalyMap: map, mask: defective ? mask : nil))
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
        print(String(format: "bench metrics 100x256x256: total %.3f s (collect %.3f, sort + pixel AUROC %.3f, AUPRO + image metrics %.3f); regions %d, pixel AUROC %.4f, AUPRO %.4f, image AUROC %.4f, F1-max %.4f",
                     end.timeIntervalSince(start), collected.timeIntervalSince(start), sorted.timeIntervalSince(collected),
                     end.timeIntervalSince(sorted), pro.regionCount, pixelAUROC, pro.value, image, f1.f1))
        XCTAssertLessThan(end.timeIntervalSince(start), 1.0)

        let tableStart = Date()
        let table = try evaluateCategory(title: "bench", samples: samples, width: side, height: side)
        print(String(format: "bench evaluateCategory (per-type rows + overall): %.3f s", Date().timeIntervalSince(tableStart)))
        print(table.rendered().split(separator: "\n").map { "bench | " + $0 }.joined(separator: "\n"))
    }
}
