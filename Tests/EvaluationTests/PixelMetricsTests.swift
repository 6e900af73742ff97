import Evaluation
import TestSupport
import XCTest

final class PixelMetricsTests: XCTestCase {
    private struct PixelCase {
        let maps: [[Float]]
        let masks: [[UInt8]?]
        let width: Int, height: Int
        let meta: [String: Any]
    }

    private func load(_ name: String) throws -> PixelCase {
        let fixture = try TensorFixture(named: "metrics/\(name).tensors")
        XCTAssertEqual(fixture.version, 1)
        let shape = fixture["maps"].shape
        let (count, height, width) = (shape[0], shape[1], shape[2])
        let pixels = width * height
        let maps = (0..<count).map { Array(fixture["maps"].values[($0 * pixels)..<(($0 + 1) * pixels)]) }
        let masks: [[UInt8]?] = (0..<count).map { i in fixture["masks"].values[(i * pixels)..<((i + 1) * pixels)].map { $0 > 0.5 ? 255 : 0 } }
        return PixelCase(maps: maps, masks: masks, width: width, height: height, meta: fixture.meta)
    }

    func testPixelAUROCAndAUPROMatchReferences() throws {
        for name in ["pixel_blobs", "pixel_small_regions", "pixel_ties"] {
            let data = try load(name)
            let pixel = try pixelAUROC(maps: data.maps, masks: data.masks)
            let expectedPixel = try XCTUnwrap(data.meta["pixel_auroc"] as? Double)
            XCTAssertEqual(pixel, expectedPixel, accuracy: 1e-6, name)

            let result = try aupro(maps: data.maps, masks: data.masks, width: data.width, height: data.height, fprLimit: 0.3)
            let exact = try XCTUnwrap(data.meta["aupro_exact"] as? Double)
            let reference = try XCTUnwrap(data.meta["aupro_anomalib_reference"] as? Double)
            print("\(name): pixel AUROC \(pixel) (sklearn \(expectedPixel)); AUPRO \(result.value) exact-python \(exact) diff \(abs(result.value - exact)), anomalib-reference \(reference) diff \(abs(result.value - reference))")
            XCTAssertEqual(result.value, exact, accuracy: 1e-9, name)
            if try XCTUnwrap(data.meta["tie_free"] as? Bool) {
                XCTAssertEqual(result.value, reference, accuracy: 1e-4, name)
            }
            XCTAssertEqual(result.regionCount, try XCTUnwrap(data.meta["regions"] as? Int), name)
            XCTAssertEqual(result.curve.first?.falsePositiveRate, 0)
            XCTAssertEqual(try XCTUnwrap(result.curve.last?.falsePositiveRate), 0.3, accuracy: 1e-15)
        }
    }

    func testConnectedRegionsMatchScipyEightConnectivity() throws {
        for name in ["pixel_blobs", "pixel_small_regions", "pixel_ties"] {
            let data = try load(name)
            let expected = try XCTUnwrap(data.meta["region_counts"] as? [Int])
            let counts = data.masks.map { ConnectedRegions(mask: $0!.map { $0 > 127 }, width: data.width, height: data.height).count }
            XCTAssertEqual(counts, expected, name)
        }
        // Diagonal neighbours join; a gap of one pixel separates.
        let mask: [Bool] = [true, false, false, true,
                            false, true, false, false,
                            false, false, false, true]
        let regions = ConnectedRegions(mask: mask, width: 4, height: 3)
        XCTAssertEqual(regions.count, 3)
        XCTAssertEqual(regions.sizes, [2, 1, 1])
        XCTAssertEqual(regions.labels, [1, 0, 0, 2, 0, 1, 0, 0, 0, 0, 0, 3])
    }

    func testDegenerateMaps() throws {
        let mask: [UInt8] = [0, 255, 255, 0, 0, 0, 0, 0, 255]
        // Constant maps: the PRO curve is the diagonal, so its normalised area is 0.3 / 2.
        let constant = [Float](repeating: 0.5, count: 9)
        XCTAssertEqual(try aupro(maps: [constant, constant], masks: [mask, nil], width: 3, height: 3).value, 0.15, accuracy: 1e-12)
        XCTAssertEqual(try pixelAUROC(maps: [constant, constant], masks: [mask, nil]), 0.5, accuracy: 1e-12)
        // A map equal to the mask separates perfectly.
        let perfect = mask.map { Float($0) / 255 }
        XCTAssertEqual(try aupro(maps: [perfect], masks: [mask], width: 3, height: 3).value, 1, accuracy: 1e-12)
        XCTAssertEqual(try pixelAUROC(maps: [perfect], masks: [mask]), 1, accuracy: 1e-12)
        // Negative and signed-zero scores order as numbers.
        let signed: [Float] = [-3, 2, 1.5, -0.0, 0.0, -1, -2, -2.5, 0.5]
        XCTAssertEqual(try pixelAUROC(maps: [signed], masks: [mask]), 1, accuracy: 1e-12)
    }

    func testDegenerateCasesThrow() {
        let map = [Float](repeating: 0.2, count: 4)
        XCTAssertThrowsError(try pixelAUROC(maps: [map, map], masks: [nil, [0, 0, 0, 0]])) { error in
            XCTAssertEqual(error as? MetricError, .singleClass(metric: "pixel AUROC", positives: 0, negatives: 8))
        }
        XCTAssertThrowsError(try aupro(maps: [map], masks: [nil], width: 2, height: 2)) { error in
            XCTAssertEqual(error as? MetricError, .noDefectRegions(metric: "AUPRO"))
        }
        XCTAssertThrowsError(try aupro(maps: [map], masks: [[255, 255, 255, 255]], width: 2, height: 2)) { error in
            XCTAssertEqual(error as? MetricError, .noNormalPixels(metric: "AUPRO"))
        }
        XCTAssertThrowsError(try pixelAUROC(maps: [[0, .nan, 0, 0]], masks: [[0, 255, 0, 0]])) { error in
            XCTAssertEqual(error as? MetricError, .notANumber(metric: "pixel metrics", index: 1))
        }
    }

    func testPixelROCCurveIsThinnedAndConsistent() throws {
        let data = try load("pixel_blobs")
        var accumulator = PixelMetricsAccumulator(width: data.width, height: data.height)
        for (map, mask) in zip(data.maps, data.masks) { try accumulator.add(map: map, mask: mask) }
        let curve = try accumulator.pixelROCCurve(maximumPoints: 100)
        XCTAssertLessThanOrEqual(curve.count, 202)
        XCTAssertEqual(curve.last?.falsePositiveRate, 1)
        XCTAssertEqual(curve.last?.truePositiveRate, 1)
        var area = 0.0
        for (a, b) in zip(curve, curve.dropFirst()) {
            area += 0.5 * (a.truePositiveRate + b.truePositiveRate) * (b.falsePositiveRate - a.falsePositiveRate)
        }
        // Thinning drops points; the area of the thinned polyline stays close to the AUROC.
        XCTAssertEqual(area, try accumulator.pixelAUROC(), accuracy: 5e-3)
        let pro = try accumulator.aupro(fprLimit: 0.3, maximumCurvePoints: 50)
        XCTAssertLessThanOrEqual(pro.curve.count, 103)
        XCTAssertEqual(pro.value, try XCTUnwrap(data.meta["aupro_exact"] as? Double), accuracy: 1e-9)
    }
}

/// Brute-force references (O(thresholds x pixels)) on random small data with many ties.
final class PixelMetricsNaiveReferenceTests: XCTestCase {
    private func naiveAUPRO(maps: [[Float]], masks: [[UInt8]?], width: Int, height: Int, limit: Double) -> Double {
        var regions: [[Float]] = [], normal: [Float] = []
        for (map, mask) in zip(maps, masks) {
            let labelled = ConnectedRegions(mask: (mask ?? [UInt8](repeating: 0, count: map.count)).map { $0 > 127 }, width: width, height: height)
            for r in 0..<labelled.count { regions.append(map.indices.filter { labelled.labels[$0] == Int32(r + 1) }.map { map[$0] }) }
            normal += map.indices.filter { labelled.labels[$0] == 0 }.map { map[$0] }
        }
        let thresholds = Set(maps.joined()).sorted(by: >)
        var points = [(0.0, 0.0)]
        for t in thresholds {
            let fpr = Double(normal.count { $0 >= t }) / Double(normal.count)
            let pro = regions.map { region in Double(region.count { $0 >= t }) / Double(region.count) }.reduce(0, +) / Double(regions.count)
            points.append((fpr, pro))
        }
        var area = 0.0
        for (a, b) in zip(points, points.dropFirst()) {
            if b.0 > limit {
                let y = a.1 + (b.1 - a.1) * (limit - a.0) / (b.0 - a.0)
                return (area + 0.5 * (a.1 + y) * (limit - a.0)) / limit
            }
            area += 0.5 * (a.1 + b.1) * (b.0 - a.0)
        }
        return area / limit
    }

    private func naiveAUROC(maps: [[Float]], masks: [[UInt8]?]) -> Double {
        var positives: [Float] = [], negatives: [Float] = []
        for (map, mask) in zip(maps, masks) {
            for i in map.indices { if let mask, mask[i] > 127 { positives.append(map[i]) } else { negatives.append(map[i]) } }
        }
        var wins = 0.0
        for p in positives { for n in negatives { wins += p > n ? 1 : (p == n ? 0.5 : 0) } }
        return wins / Double(positives.count * negatives.count)
    }

    func testRandomTiedMapsAgreeWithBruteForce() throws {
        var random = SplitMix64(state: 7)
        let (width, height) = (12, 9)
        for trial in 0..<20 {
            let levels = [3, 8, 50, 100_000][trial % 4]
            var maps: [[Float]] = [], masks: [[UInt8]?] = []
            for image in 0..<3 {
                let mask: [UInt8]? = image == 0 ? nil : (0..<(width * height)).map { _ in Double.random(in: 0..<1, using: &random) < 0.15 ? 255 : 0 }
                masks.append(mask)
                maps.append((0..<(width * height)).map { i in
                    // Signed, tied values; defect pixels shifted up a little.
                    Float(Int.random(in: 0..<levels, using: &random)) / Float(levels) - 0.5 + (mask?[i] == 255 ? 0.2 : 0)
                })
            }
            let expectedPRO = naiveAUPRO(maps: maps, masks: masks, width: width, height: height, limit: 0.3)
            let result = try aupro(maps: maps, masks: masks, width: width, height: height, fprLimit: 0.3)
            XCTAssertEqual(result.value, expectedPRO, accuracy: 1e-12, "trial \(trial)")
            XCTAssertEqual(try pixelAUROC(maps: maps, masks: masks), naiveAUROC(maps: maps, masks: masks), accuracy: 1e-12, "trial \(trial)")
        }
    }

    func testAddingAfterComputingResorts() throws {
        var random = SplitMix64(state: 11)
        let maps = (0..<4).map { _ in (0..<64).map { _ in Float.random(in: -1..<1, using: &random) } }
        let masks: [[UInt8]?] = (0..<4).map { _ in (0..<64).map { _ in UInt8.random(in: 0...255, using: &random) } }
        var accumulator = PixelMetricsAccumulator(width: 8, height: 8)
        try accumulator.add(map: maps[0], mask: masks[0])
        try accumulator.add(map: maps[1], mask: masks[1])
        XCTAssertEqual(try accumulator.pixelAUROC(), naiveAUROC(maps: Array(maps[0..<2]), masks: Array(masks[0..<2])), accuracy: 1e-12)
        try accumulator.add(map: maps[2], mask: masks[2])
        try accumulator.add(map: maps[3], mask: masks[3])
        XCTAssertEqual(accumulator.imageCount, 4)
        XCTAssertEqual(try accumulator.pixelAUROC(), naiveAUROC(maps: maps, masks: masks), accuracy: 1e-12)
        XCTAssertEqual(try accumulator.aupro().value, naiveAUPRO(maps: maps, masks: masks, width: 8, height: 8, limit: 0.3), accuracy: 1e-12)
    }
}
