// Charts of the evaluation report as images: ROC and PRO curves, score histograms. Axis
// titles, tick labels and legends are drawn with the canvas' bitmap font, so a PNG reads on
// its own outside the HTML page.
import Foundation
import Imaging

/// One curve of a line chart.
public struct ChartSeries: Equatable {
    public var label: String
    public var color: ChartColor
    public var points: [ChartPoint]

    public init(label: String, color: ChartColor, points: [ChartPoint]) {
        self.label = label
        self.color = color
        self.points = points
    }
}

/// An axis: its title, the data range it spans and where the ticks go.
public struct ChartAxis: Equatable {
    public var title: String
    public var range: ClosedRange<Double>
    public var ticks: [Double]

    /// Ticks at "nice" values (1, 2 or 5 times a power of ten) over `range`.
    public init(title: String, range: ClosedRange<Double>, tickCount: Int = 5) {
        self.title = title
        self.range = range
        self.ticks = Self.niceTicks(range: range, count: tickCount)
    }

    public init(title: String, range: ClosedRange<Double>, ticks: [Double]) {
        self.title = title
        self.range = range
        self.ticks = ticks
    }

    static func niceStep(span: Double, count: Int) -> Double {
        guard span > 0, span.isFinite else { return 1 }
        let raw = span / Double(max(count, 1))
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let fraction = raw / magnitude
        let nice: Double = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        return nice * magnitude
    }

    static func niceTicks(range: ClosedRange<Double>, count: Int) -> [Double] {
        let step = niceStep(span: range.upperBound - range.lowerBound, count: count)
        var ticks: [Double] = []
        var k = (range.lowerBound / step).rounded(.up)
        while k * step <= range.upperBound + step * 1e-9, ticks.count < 100 {
            ticks.append(k * step)
            k += 1
        }
        return ticks
    }

    /// The tick label: as many decimals as the tick spacing needs, or scientific notation
    /// for very small or large values.
    func label(_ value: Double) -> String {
        let step = ticks.count > 1 ? ticks[1] - ticks[0] : max(abs(value), 1)
        let magnitude = max(abs(range.lowerBound), abs(range.upperBound))
        if magnitude >= 1e5 || (step < 1e-3 && magnitude < 1e-2) {
            return value == 0 ? "0" : String(format: "%.1e", value)
        }
        let decimals = max(0, Int(-log10(step).rounded(.down)))
        return String(format: "%.\(decimals)f", abs(value) < step * 1e-9 ? 0 : value)
    }
}

public enum ChartRenderer {
    public static let defaultWidth = 560
    public static let defaultHeight = 440

    /// Pixel layout shared by all charts: the plot area inside the margins.
    struct Frame {
        let left: Double, top: Double, right: Double, bottom: Double
        let x: ChartAxis, y: ChartAxis

        func px(_ value: Double) -> Double {
            let span = x.range.upperBound - x.range.lowerBound
            return left + (span > 0 ? (value - x.range.lowerBound) / span : 0.5) * (right - left)
        }

        func py(_ value: Double) -> Double {
            let span = y.range.upperBound - y.range.lowerBound
            return bottom - (span > 0 ? (value - y.range.lowerBound) / span : 0.5) * (bottom - top)
        }
    }

    /// Where the axes' ranges land in a chart of this size, in pixels (x right, y down): the
    /// lower bound of x at `left`, of y at `bottom`.
    public static func plotArea(width: Int, height: Int) -> (left: Double, top: Double, right: Double, bottom: Double) {
        (78, 16, Double(width) - 32, Double(height) - 58)
    }

    static func frame(width: Int, height: Int, x: ChartAxis, y: ChartAxis) -> Frame {
        let area = plotArea(width: width, height: height)
        return Frame(left: area.left, top: area.top, right: area.right, bottom: area.bottom, x: x, y: y)
    }

    /// Grid, axes, tick labels and axis titles.
    static func drawAxes(_ canvas: inout Canvas, _ frame: Frame) {
        for tick in frame.x.ticks {
            let x = frame.px(tick).rounded(.down)
            canvas.fillRect(x0: x, y0: frame.top, x1: x + 1, y1: frame.bottom, color: .grid)
        }
        for tick in frame.y.ticks {
            let y = frame.py(tick).rounded(.down)
            canvas.fillRect(x0: frame.left, y0: y, x1: frame.right, y1: y + 1, color: .grid)
        }
        canvas.fillRect(x0: frame.left - 1, y0: frame.top, x1: frame.left + 1, y1: frame.bottom + 1, color: .axis)
        canvas.fillRect(x0: frame.left - 1, y0: frame.bottom - 1, x1: frame.right, y1: frame.bottom + 1, color: .axis)
        for tick in frame.x.ticks {
            let x = frame.px(tick).rounded(.down)
            canvas.fillRect(x0: x, y0: frame.bottom + 1, x1: x + 1, y1: frame.bottom + 6, color: .axis)
            let label = frame.x.label(tick)
            canvas.text(label, x: Int(x) - Canvas.textWidth(label, scale: 2) / 2, y: Int(frame.bottom) + 10, scale: 2)
        }
        for tick in frame.y.ticks {
            let y = frame.py(tick).rounded(.down)
            canvas.fillRect(x0: frame.left - 6, y0: y, x1: frame.left - 1, y1: y + 1, color: .axis)
            let label = frame.y.label(tick)
            canvas.text(label, x: Int(frame.left) - 10 - Canvas.textWidth(label, scale: 2), y: Int(y) - 7, scale: 2)
        }
        let titleWidth = Canvas.textWidth(frame.x.title, scale: 2)
        canvas.text(frame.x.title, x: Int((frame.left + frame.right) / 2) - titleWidth / 2, y: canvas.height - 22, scale: 2)
        let yTitleWidth = Canvas.textWidth(frame.y.title, scale: 2)
        canvas.verticalText(frame.y.title, x: 6, y: Int((frame.top + frame.bottom) / 2) + yTitleWidth / 2, scale: 2)
    }

    enum Corner { case topLeft, topRight, bottomRight }

    /// A legend box in a corner of the plot: a short line in each series' colour and its label.
    static func drawLegend(_ canvas: inout Canvas, _ frame: Frame, entries: [(String, ChartColor)], corner: Corner) {
        guard !entries.isEmpty else { return }
        let rowHeight = 20.0, swatch = 24.0
        let textWidth = Double(entries.map { Canvas.textWidth($0.0, scale: 2) }.max() ?? 0)
        let boxWidth = swatch + 18 + textWidth, boxHeight = rowHeight * Double(entries.count) + 8
        let x0 = corner == .topLeft ? frame.left + 8 : frame.right - boxWidth - 8
        let y0 = corner == .bottomRight ? frame.bottom - boxHeight - 8 : frame.top + 8
        canvas.fillRect(x0: x0, y0: y0, x1: x0 + boxWidth, y1: y0 + boxHeight, color: .white, alpha: 0.9)
        for (index, (label, color)) in entries.enumerated() {
            let y = y0 + 4 + rowHeight * Double(index) + rowHeight / 2
            canvas.strokePolyline([(x0 + 6, y), (x0 + 6 + swatch, y)], color: color, lineWidth: 3)
            canvas.text(label, x: Int(x0 + swatch + 12), y: Int(y) - 7, scale: 2)
        }
    }

    /// Curves over the given axes, with an optional dashed chance diagonal from the lower-left
    /// to the upper-right corner of the axes' ranges.
    public static func lineChart(series: [ChartSeries], x: ChartAxis, y: ChartAxis, chanceDiagonal: Bool,
                                 width: Int = defaultWidth, height: Int = defaultHeight) -> RGBImage {
        var canvas = Canvas(width: width, height: height)
        let frame = frame(width: width, height: height, x: x, y: y)
        drawAxes(&canvas, frame)
        if chanceDiagonal {
            canvas.strokePolyline([(frame.px(x.range.lowerBound), frame.py(y.range.lowerBound)),
                                   (frame.px(x.range.upperBound), frame.py(y.range.upperBound))],
                                  color: .chance, lineWidth: 1.5, dash: (6, 5))
        }
        for curve in series {
            let points = curve.points.map { (x: frame.px($0.x), y: frame.py($0.y)) }
            canvas.strokePolyline(points, color: curve.color, lineWidth: 2.5, alpha: 0.95)
        }
        drawLegend(&canvas, frame, entries: series.map { ($0.label, $0.color) }, corner: .bottomRight)
        return canvas.image
    }

    /// ROC curves: false positive rate against true positive rate, both 0...1, with chance.
    public static func rocChart(series: [ChartSeries], width: Int = defaultWidth, height: Int = defaultHeight) -> RGBImage {
        lineChart(series: series, x: ChartAxis(title: "false positive rate", range: 0...1),
                  y: ChartAxis(title: "true positive rate", range: 0...1), chanceDiagonal: true, width: width, height: height)
    }

    /// PRO curves: points with x = false positive rate (0...`fprLimit`, as `PROPoint` holds it)
    /// and y = per-region overlap; the chance line is PRO = FPR.
    public static func proChart(series: [ChartSeries], fprLimit: Double, width: Int = defaultWidth, height: Int = defaultHeight) -> RGBImage {
        var canvas = Canvas(width: width, height: height)
        let x = ChartAxis(title: "false positive rate", range: 0...fprLimit)
        let frame = frame(width: width, height: height, x: x, y: ChartAxis(title: "per-region overlap", range: 0...1))
        drawAxes(&canvas, frame)
        canvas.strokePolyline([(frame.px(0), frame.py(0)), (frame.px(fprLimit), frame.py(fprLimit))],
                              color: .chance, lineWidth: 1.5, dash: (6, 5))
        for curve in series {
            canvas.strokePolyline(curve.points.map { (x: frame.px($0.x), y: frame.py($0.y)) }, color: curve.color, lineWidth: 2.5, alpha: 0.95)
        }
        drawLegend(&canvas, frame, entries: series.map { ($0.label, $0.color) }, corner: .bottomRight)
        return canvas.image
    }

    /// Good and defective score histograms over their shared bins, drawn as overlapping
    /// translucent bars, with the production threshold as a dashed vertical line (the x range
    /// widens to include it).
    public static func histogramChart(good: Histogram, defective: Histogram, threshold: Double?,
                                      width: Int = defaultWidth, height: Int = defaultHeight) -> RGBImage {
        precondition(good.counts.count == defective.counts.count && good.lowerBound == defective.lowerBound
                     && good.upperBound == defective.upperBound, "histogramChart: the two histograms need the same bins")
        var low = good.lowerBound, high = good.upperBound
        if let threshold, threshold.isFinite { low = min(low, threshold); high = max(high, threshold) }
        let pad = high > low ? (high - low) * 0.03 : max(abs(high) * 0.1, 1e-6)
        let x = ChartAxis(title: "image score", range: (low - pad)...(high + pad))
        let peak = Double(max(good.counts.max() ?? 0, defective.counts.max() ?? 0, 1))
        // Headroom above the tallest bar keeps the legend clear of the bars.
        let yTop = peak * 1.3
        let y = ChartAxis(title: "images", range: 0...yTop, ticks: ChartAxis.niceTicks(range: 0...yTop, count: 5).filter { $0 == $0.rounded() })
        var canvas = Canvas(width: width, height: height)
        let frame = frame(width: width, height: height, x: x, y: y)
        drawAxes(&canvas, frame)
        let edges = good.edges
        for (histogram, color) in [(good, ChartColor.green), (defective, ChartColor.vermillion)] {
            for (bin, count) in histogram.counts.enumerated() where count > 0 {
                var x0 = frame.px(edges[bin]), x1 = frame.px(edges[bin + 1])
                if x1 - x0 < 2 { let middle = (x0 + x1) / 2; x0 = middle - 1; x1 = middle + 1 }
                canvas.fillRect(x0: x0, y0: frame.py(Double(count)), x1: x1, y1: frame.bottom - 1, color: color, alpha: 0.55)
            }
        }
        var entries = [("good", ChartColor.green), ("defective", ChartColor.vermillion)]
        var corner = Corner.topRight
        if let threshold, threshold.isFinite {
            let tx = frame.px(threshold)
            canvas.strokePolyline([(tx, frame.bottom), (tx, frame.top)], color: .black, lineWidth: 2, dash: (8, 5))
            entries.append(("threshold", .black))
            // Keep the legend on the other side of the threshold line.
            if tx > (frame.left + frame.right) / 2 { corner = .topLeft }
        }
        drawLegend(&canvas, frame, entries: entries, corner: corner)
        return canvas.image
    }
}
