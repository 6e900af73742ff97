import Evaluation
import Foundation
import Imaging
import OperatorErrors
import XCTest

/// A small category: 8x8 maps, two defect types, good images with low maps.
private func syntheticSamples() -> [ScoredSample] {
    let side = 8
    var samples: [ScoredSample] = []
    for i in 0..<4 {
        let map = (0..<side * side).map { Float(($0 * 7 + i * 3) % 11) / 100 }
        samples.append(ScoredSample(defectType: "good", label: 0, imageScore: map.max()!, anomalyMap: map))
    }
    for (i, type) in ["crack", "crack", "hole"].enumerated() {
        var mask = [UInt8](repeating: 0, count: side * side)
        for y in 2..<5 { for x in (1 + i)..<(4 + i) { mask[y * side + x] = 255 } }
        let map = (0..<side * side).map { mask[$0] > 0 ? Float(0.5 + Double(i) * 0.1) : Float(($0 * 5 + i) % 13) / 100 }
        samples.append(ScoredSample(defectType: type, label: 1, imageScore: map.max()!, anomalyMap: map, mask: mask))
    }
    return samples
}

private func sampleReport(categories: [String], panels: ImagePanels? = nil) throws -> EvaluationReport {
    let samples = syntheticSamples()
    let reports = try categories.map { name -> CategoryReport in
        let maps = try ["S-T", "D", "full"].enumerated().map { index, mapName -> MapEvaluation in
            // Weaker maps for S-T and D: blend in a constant so ranking degrades.
            let blended = samples.map { sample -> ScoredSample in
                var copy = sample
                copy.anomalyMap = sample.anomalyMap!.enumerated().map { $1 + (index == 2 ? 0 : Float(($0 * 13) % 7) / 20) }
                copy.imageScore = copy.anomalyMap!.max()!
                return copy
            }
            return try MapEvaluation.evaluate(name: mapName, title: "\(name) \(mapName)", samples: blended, width: 8, height: 8)
        }
        let scores = samples.map(\.imageScore), labels = samples.map(\.label)
        let histograms = scoreHistograms(scores: scores, labels: labels, binCount: 10)
        let worst = WorstCase.select(scores: scores, labels: labels, count: 2)
        func worstCase(_ index: Int) -> WorstCase {
            WorstCase(image: "/data/\(name)/test/\(samples[index].defectType)/00\(index).png", defectType: samples[index].defectType,
                      label: samples[index].label, score: Double(samples[index].imageScore), panels: panels)
        }
        return CategoryReport(category: name, dataPath: "/data/\(name)", modelPath: "/models/\(name)", modelID: "m-\(name)",
                              evaluationWidth: 8, evaluationHeight: 8, fprLimit: 0.3, maps: maps,
                              goodScores: histograms.good, defectiveScores: histograms.defective, threshold: 0.2,
                              thresholdStatement: "max of validation-normal scores x 1.1",
                              timing: InferenceTiming(milliseconds: [10, 12, 11, 30], note: "decode + networks"),
                              worstGood: worst.good.map(worstCase), worstDefective: worst.defective.map(worstCase),
                              imageScores: samples.indices.map {
                                  ImageScore(image: "/data/\(name)/test/\(samples[$0].defectType)/00\($0).png", defectType: samples[$0].defectType,
                                             label: samples[$0].label, score: Double(samples[$0].imageScore))
                              })
    }
    return EvaluationReport(title: "rstpm eval", createdAt: Date(timeIntervalSince1970: 1_800_000_000), categories: reports)
}

final class ReportModelTests: XCTestCase {
    func testMapEvaluationCurvesAgreeWithTheTable() throws {
        let map = try MapEvaluation.evaluate(name: "full", title: "t", samples: syntheticSamples(), width: 8, height: 8)
        XCTAssertEqual(map.table.rows.map(\.name), ["crack", "hole"])
        XCTAssertEqual(map.table.summary.scores.imageAUROC, 1)
        XCTAssertEqual(map.table.summary.scores.pixelAUROC, 1)
        // Trapezoids under the stored curves give back the tabled AUROC and AUPRO.
        func area(_ points: [ChartPoint]) -> Double {
            zip(points, points.dropFirst()).reduce(0) { $0 + 0.5 * ($1.0.y + $1.1.y) * ($1.1.x - $1.0.x) }
        }
        XCTAssertEqual(area(map.imageROC), 1, accuracy: 1e-12)
        XCTAssertEqual(area(map.pixelROC), 1, accuracy: 1e-12)
        XCTAssertEqual(area(map.pro) / 0.3, try XCTUnwrap(map.table.summary.scores.aupro), accuracy: 1e-9)
        XCTAssertEqual(map.pro.last?.x ?? 0, 0.3, accuracy: 1e-12)
    }

    func testImageMetricsOnlyWithoutMasks() throws {
        let samples = syntheticSamples().map { ScoredSample(defectType: $0.defectType, label: $0.label, imageScore: $0.imageScore) }
        let map = try MapEvaluation.evaluate(name: "full", title: "t", samples: samples, width: 8, height: 8)
        XCTAssertNil(map.table.summary.scores.pixelAUROC)
        XCTAssertTrue(map.pixelROC.isEmpty && map.pro.isEmpty)
        XCTAssertFalse(map.imageROC.isEmpty)
    }

    func testWorstCasesAreFalseAlarmsAndMissesFirst() {
        let scores: [Float] = [0.1, 0.9, 0.5, 0.3, 0.2, 0.8]
        let labels = [0, 0, 0, 1, 1, 1]
        let worst = WorstCase.select(scores: scores, labels: labels, count: 2)
        XCTAssertEqual(worst.good, [1, 2])
        XCTAssertEqual(worst.defective, [4, 3])
    }

    func testTimingQuantiles() {
        let timing = InferenceTiming(milliseconds: (1...100).map(Double.init), note: "")
        XCTAssertEqual(timing.meanMilliseconds, 50.5)
        XCTAssertEqual(timing.medianMilliseconds, 51)
        XCTAssertEqual(timing.p95Milliseconds, 95)
    }

    func testSeveralCategoriesGetAMeanRowPerMap() throws {
        let report = try sampleReport(categories: ["bottle", "cable"])
        XCTAssertEqual(report.summaries.map { $0.rows.map(\.name) }, Array(repeating: ["bottle", "cable"], count: 3))
        XCTAssertEqual(report.summaries[2].summary.name, "mean")
        XCTAssertEqual(report.summaries[2].summary.scores.imageAUROC, report.categories[0].maps[2].table.summary.scores.imageAUROC)
        XCTAssertTrue(try sampleReport(categories: ["bottle"]).summaries.isEmpty)
    }

    func testJSONRoundTripsWithoutTheImages() throws {
        let panels = ImagePanels(original: Data([1]), heatmap: Data([2]), ownScaleHeatmap: Data([3]), ownScaleMaximum: 1,
                                 groundTruth: Data([4]), predictedMask: nil)
        let report = try sampleReport(categories: ["bottle", "cable"], panels: panels)
        let data = try report.jsonData()
        XCTAssertFalse(String(decoding: data, as: UTF8.self).contains("panels"))
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("\"imageScores\""))
        XCTAssertNotNil(report.categories[0].operatingPoint)
        let decoded = try JSONDecoder().decode(EvaluationReport.self, from: data)
        var expected = report
        for c in expected.categories.indices {
            for w in expected.categories[c].worstGood.indices { expected.categories[c].worstGood[w].panels = nil }
            for w in expected.categories[c].worstDefective.indices { expected.categories[c].worstDefective[w].panels = nil }
        }
        XCTAssertEqual(decoded, expected)
        XCTAssertNotEqual(decoded, report, "the heatmap bytes must not survive the JSON")
    }

    func testHTMLIsSelfContained() throws {
        let jpeg = try JPEGEncoder.encode(RGBImage(width: 4, height: 4, pixels: [Float](repeating: 0.5, count: 48)))
        let png = try PNGEncoder.encode(gray: [0, 255, 0, 255], width: 2, height: 2)
        let panels = ImagePanels(original: jpeg, heatmap: jpeg, ownScaleHeatmap: jpeg, ownScaleMaximum: 0.7, groundTruth: png, predictedMask: png)
        var report = try sampleReport(categories: ["bottle", "<cable>"], panels: panels)
        report.title = "Q&A report"
        let html = try HTMLReport.html(for: report)
        XCTAssertFalse(html.contains("http://") || html.contains("https://") || html.contains("<link") || html.contains("<script src"))
        XCTAssertFalse(html.contains("fetch(") || html.contains("XMLHttpRequest") || html.contains("import("), "the script loads nothing")
        XCTAssertEqual(html.components(separatedBy: "<script").count - 1, 3, "the tuners' two JSON blocks and the one script")
        let sources = html.components(separatedBy: "<img src=\"").dropFirst()
        // Per category: 3 charts + histogram + (2 + 2 worst cases) x 4 panels.
        XCTAssertEqual(sources.count, 2 * (4 + 4 * 4))
        XCTAssertEqual(html.components(separatedBy: "data-other=\"data:image/jpeg;base64,").count - 1, 8, "the own-scale heatmaps")
        for source in sources {
            XCTAssertTrue(source.hasPrefix("data:image/png;base64,") || source.hasPrefix("data:image/jpeg;base64,"), String(source.prefix(40)))
        }
        XCTAssertFalse(html.contains("url("), "no CSS resources either")
        XCTAssertTrue(html.contains("Q&amp;A report") && html.contains("&lt;cable&gt;") && !html.contains("<cable>"))
        // The table values, in percent.
        let aupro = try XCTUnwrap(report.categories[0].maps[2].table.summary.scores.aupro)
        XCTAssertTrue(html.contains("<td>\(String(format: "%.1f", 100 * aupro))</td>"))
        XCTAssertTrue(html.contains("<td>100.0</td>"))
        XCTAssertTrue(html.contains("Mean over categories"))
        // The embedded chart decodes as a PNG.
        let chart = try XCTUnwrap(sources.first?.components(separatedBy: "\"").first)
        let base64 = String(chart.dropFirst("data:image/png;base64,".count))
        let decoded = try ImageDecoder.decode(data: try XCTUnwrap(Data(base64Encoded: base64)), name: "chart")
        XCTAssertEqual(decoded.width, ChartRenderer.defaultWidth)
    }

    func testWriteLeavesExactlyTheTwoFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-report-\(UUID().uuidString)/nested")
        addTeardownBlock { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent()) }
        let report = try sampleReport(categories: ["bottle"])
        try HTMLReport.write(report, to: directory)
        try HTMLReport.write(report, to: directory)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["index.html", "report.json", "scores.csv"])
        let csv = try String(contentsOf: directory.appendingPathComponent("scores.csv"), encoding: .utf8)
        XCTAssertEqual(csv, ScoresCSV.csv(for: report))
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + 7)
        let json = try Data(contentsOf: directory.appendingPathComponent("report.json"))
        XCTAssertEqual(try JSONDecoder().decode(EvaluationReport.self, from: json).categories.map(\.category), ["bottle"])
    }

    func testUnwritableFolderIsATypedError() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-report-file-\(UUID().uuidString)")
        try Data([0]).write(to: file)
        addTeardownBlock { try? FileManager.default.removeItem(at: file) }
        XCTAssertThrowsError(try HTMLReport.write(try sampleReport(categories: ["bottle"]), to: file.appendingPathComponent("report"))) { error in
            guard let error = error as? OperatorError, error.kind == .writeFailed else { return XCTFail("\(error)") }
            XCTAssertTrue(error.path.hasPrefix(file.path), error.path)
            XCTAssertFalse(error.hint.isEmpty)
        }
    }
}

final class ReportMaskTests: XCTestCase {
    func testMaskIsResizedNearestAndBinarised() throws {
        // 4x4 mask: left half 200 (defect), right half 100 (below the > 127 cut), one 255 corner.
        var pixels = [UInt8](repeating: 0, count: 16)
        for y in 0..<4 { for x in 0..<4 { pixels[y * 4 + x] = x < 2 ? 200 : 100 } }
        pixels[15] = 255
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-mask-\(UUID().uuidString).png")
        try PNGEncoder.encode(gray: pixels, width: 4, height: 4).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        XCTAssertEqual(try GroundTruthMask.load(contentsOf: url, width: 2, height: 2), [255, 0, 255, 255])
        XCTAssertEqual(try GroundTruthMask.load(contentsOf: url, width: 8, height: 1), [255, 255, 255, 255, 0, 0, 0, 0])
    }

    func testMissingMaskThrowsWithItsPath() {
        let url = URL(fileURLWithPath: "/nonexistent/ground_truth/crack/000_mask.png")
        XCTAssertThrowsError(try GroundTruthMask.load(contentsOf: url, width: 8, height: 8)) { error in
            XCTAssertEqual((error as? OperatorError)?.path, url.path)
        }
    }

    func testPanelsScaleOwnHeatmapToTheMapMaximum() throws {
        let image = RGBImage(width: 64, height: 32, pixels: [Float](repeating: 0.5, count: 64 * 32 * 3))
        var mask = [UInt8](repeating: 0, count: 64 * 32)
        for y in 8..<24 { for x in 16..<48 { mask[y * 64 + x] = 255 } }
        // A weak map: 0.1 at most, far below the category scale's top (1).
        let map = (0..<16).map { Float($0 % 4) / 30 }
        let panels = try ImagePanels.render(image: image, mask: GrayImage(width: 64, height: 32, pixels: mask), map: map,
                                            mapWidth: 4, mapHeight: 4, threshold: 0.05, scale: 0...1, side: 128)
        XCTAssertEqual(panels.ownScaleMaximum, 0.1, accuracy: 1e-6)
        let category = try ImageDecoder.decode(data: panels.heatmap, name: "category")
        let own = try ImageDecoder.decode(data: panels.ownScaleHeatmap, name: "own")
        XCTAssertEqual(category.width, 128)
        XCTAssertEqual(category.height, 64)
        // Near the right edge (map 0.1, inside the outline): on its own scale the top of turbo (red), on the category's near its bottom (blue-ish).
        func pixel(_ picture: RGBImage, _ x: Int, _ y: Int) -> (Float, Float, Float) {
            let i = 3 * (y * picture.width + x)
            return (picture.pixels[i], picture.pixels[i + 1], picture.pixels[i + 2])
        }
        XCTAssertGreaterThan(pixel(own, 118, 32).0, pixel(own, 118, 32).2 + 0.1)
        XCTAssertLessThan(pixel(category, 118, 32).0, pixel(category, 118, 32).2 + 0.05)
        let truth = try ImageDecoder.decodeMask(data: panels.groundTruth, name: "truth")
        XCTAssertEqual(truth.pixels[32 * 128 + 64], 255, "inside the mask region")
        XCTAssertEqual(truth.pixels[2 * 128 + 2], 0)
        let predicted = try ImageDecoder.decodeMask(data: try XCTUnwrap(panels.predictedMask), name: "predicted")
        XCTAssertEqual(predicted.pixels[32 * 128 + 127], 255, "map 0.1 >= 0.05")
        XCTAssertEqual(predicted.pixels[32 * 128 + 0], 0, "map 0 < 0.05")
    }
}
