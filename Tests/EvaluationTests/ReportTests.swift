import Evaluation
import Foundation
import Imaging
import TestSupport
import XCTest

private func pixel(_ image: RGBImage, _ x: Int, _ y: Int) -> (Float, Float, Float) {
    let i = 3 * (y * image.width + x)
    return (image.pixels[i], image.pixels[i + 1], image.pixels[i + 2])
}

/// Whether some pixel within `radius` of (x, y) is close to `color` (each channel within 0.15).
private func hasColor(_ image: RGBImage, near x: Double, _ y: Double, radius: Int, color: ChartColor) -> Bool {
    let target = (Float(color.red) / 255, Float(color.green) / 255, Float(color.blue) / 255)
    for dy in -radius...radius {
        for dx in -radius...radius {
            let px = Int(x) + dx, py = Int(y) + dy
            guard px >= 0, py >= 0, px < image.width, py < image.height else { continue }
            let (r, g, b) = pixel(image, px, py)
            if abs(r - target.0) < 0.15 && abs(g - target.1) < 0.15 && abs(b - target.2) < 0.15 { return true }
        }
    }
    return false
}

final class ReportChartTests: XCTestCase {
    func testRandomClassifierROCFollowsTheDiagonal() throws {
        var generator = SplitMix64(state: 7)
        let scores = (0..<4000).map { _ in Float.random(in: 0..<1, using: &generator) }
        let labels = (0..<4000).map { _ in Int.random(in: 0...1, using: &generator) }
        let curve = rocPolyline(curve: try imageROCCurve(scores: scores, labels: labels))
        let image = ChartRenderer.rocChart(series: [ChartSeries(label: "random", color: .blue, points: curve)], width: 400, height: 360)
        let png = try PNGEncoder.encode(image)
        let decoded = try ImageDecoder.decode(data: png, name: "roc.png")
        XCTAssertEqual(decoded.width, 400)
        XCTAssertEqual(decoded.height, 360)

        let area = ChartRenderer.plotArea(width: 400, height: 360)
        for t in stride(from: 0.1, through: 0.9, by: 0.1) {
            let x = area.left + t * (area.right - area.left), y = area.bottom - t * (area.bottom - area.top)
            XCTAssertTrue(hasColor(decoded, near: x, y, radius: 10, color: .blue), "no curve pixel near the diagonal at \(t)")
        }
        // Far from the diagonal (FPR 0.15, TPR 0.7) the plot is background.
        let x = area.left + 0.15 * (area.right - area.left), y = area.bottom - 0.7 * (area.bottom - area.top)
        XCTAssertFalse(hasColor(decoded, near: x, y, radius: 4, color: .blue))
        let (r, g, b) = pixel(decoded, Int(x) + 3, Int(y) + 3)
        XCTAssertGreaterThan(min(r, g, b), 0.85, "expected background or grid away from the curve")
    }

    func testLinesAreAntiAliased() {
        // A shallow slope crosses pixel rows, so partly covered pixels must have in-between shades.
        let curve = [ChartPoint(x: 0, y: 0), ChartPoint(x: 1, y: 0.3)]
        let image = ChartRenderer.lineChart(series: [ChartSeries(label: "", color: .black, points: curve)],
                                            x: ChartAxis(title: "", range: 0...1, ticks: []), y: ChartAxis(title: "", range: 0...1, ticks: []),
                                            chanceDiagonal: false, width: 300, height: 300)
        let area = ChartRenderer.plotArea(width: 300, height: 300)
        let column = Int(area.left + 0.5 * (area.right - area.left))
        let shades = (Int(area.top)..<Int(area.bottom) - 2).map { pixel(image, column, $0).0 }
        XCTAssertTrue(shades.contains { $0 < 0.2 }, "the line's core should be dark")
        XCTAssertTrue(shades.contains { $0 > 0.25 && $0 < 0.9 }, "the line's edge should be partly covered")
    }

    func testHistogramMarksTheThreshold() {
        let good = Histogram(values: [0.1, 0.2, 0.2, 0.3] as [Double], binCount: 10, range: 0...1)
        let defective = Histogram(values: [0.7, 0.8, 0.9, 0.9] as [Double], binCount: 10, range: 0...1)
        let image = ChartRenderer.histogramChart(good: good, defective: defective, threshold: 0.5, width: 400, height: 300)
        XCTAssertEqual(image.width, 400)
        let area = ChartRenderer.plotArea(width: 400, height: 300)
        // The x range is padded by 3% on each side of 0...1.
        let span = 1.06, px = { (v: Double) in area.left + (v + 0.03) / span * (area.right - area.left) }
        let lineColumn = (Int(area.top)..<Int(area.bottom)).filter { y in
            let (r, g, b) = pixel(image, Int(px(0.5)), y)
            return max(r, g, b) < 0.3
        }
        XCTAssertGreaterThan(lineColumn.count, 40, "dashed threshold line at 0.5")
        let y = Int(area.bottom) - 5
        let (gr, gg, gb) = pixel(image, Int(px(0.25)), y)
        XCTAssertTrue(gg > gr && gg > gb, "good bar near 0.2 should be green, got \(gr) \(gg) \(gb)")
        let (dr, dg, db) = pixel(image, Int(px(0.95)), y)
        XCTAssertTrue(dr > dg && dr > db, "defective bar near 0.9 should be red, got \(dr) \(dg) \(db)")
        let (er, eg, eb) = pixel(image, Int(px(0.55)), y)
        XCTAssertGreaterThan(min(er, eg, eb), 0.85, "no bar at 0.55")
    }

    func testNiceTicks() {
        func check(_ axis: ChartAxis, _ expected: [Double], line: UInt = #line) {
            XCTAssertEqual(axis.ticks.count, expected.count, "\(axis.ticks)", line: line)
            for (tick, value) in zip(axis.ticks, expected) { XCTAssertEqual(tick, value, accuracy: 1e-12, line: line) }
        }
        check(ChartAxis(title: "", range: 0...1), [0, 0.2, 0.4, 0.6, 0.8, 1])
        check(ChartAxis(title: "", range: 0...0.3, tickCount: 3), [0, 0.1, 0.2, 0.3])
        check(ChartAxis(title: "", range: 3...47, tickCount: 4), [10, 20, 30, 40])
    }
}
