// Chart data without pixels: polylines and histogram bins that a renderer draws later.

public struct ChartPoint: Codable, Equatable {
    public let x: Double
    public let y: Double

    public init(x: Double, y: Double) {
        self.x = x
        self.y = y
    }
}

/// A ROC curve as a polyline: x = false positive rate, y = true positive rate.
public func rocPolyline(curve: [ROCPoint]) -> [ChartPoint] {
    curve.map { ChartPoint(x: $0.falsePositiveRate, y: $0.truePositiveRate) }
}

/// A PRO curve as a polyline: x = false positive rate divided by `fprLimit` (so the plotted
/// area is the AUPRO), y = per-region overlap.
public func proPolyline(curve: [PROPoint], fprLimit: Double) -> [ChartPoint] {
    precondition(fprLimit > 0, "proPolyline: fprLimit must be positive")
    return curve.map { ChartPoint(x: $0.falsePositiveRate / fprLimit, y: $0.perRegionOverlap) }
}

/// Equal-width bins over [lowerBound, upperBound]; the last bin includes the upper bound.
public struct Histogram: Codable, Equatable {
    public let lowerBound: Double
    public let upperBound: Double
    public let counts: [Int]

    /// Bin edges: `counts.count + 1` values from lowerBound to upperBound.
    public var edges: [Double] {
        let width = (upperBound - lowerBound) / Double(counts.count)
        return (0...counts.count).map { lowerBound + Double($0) * width }
    }

    /// Counts `values` in `binCount` bins over `range`; values outside the range (and NaN) are
    /// not counted. A degenerate range (lower == upper) puts every value equal to it in bin 0.
    public init<Value: BinaryFloatingPoint>(values: [Value], binCount: Int, range: ClosedRange<Double>) {
        precondition(binCount > 0, "Histogram: binCount must be positive")
        var counts = [Int](repeating: 0, count: binCount)
        let width = (range.upperBound - range.lowerBound) / Double(binCount)
        for value in values {
            let x = Double(value)
            guard range.contains(x) else { continue }
            let bin = width > 0 ? min(Int((x - range.lowerBound) / width), binCount - 1) : 0
            counts[bin] += 1
        }
        self.lowerBound = range.lowerBound
        self.upperBound = range.upperBound
        self.counts = counts
    }
}

/// Histograms of the good and the defective image scores over shared bins spanning all scores
/// (the usual "score distribution" plot next to a threshold).
public func scoreHistograms<Score: BinaryFloatingPoint>(scores: [Score], labels: [Int], binCount: Int) -> (good: Histogram, defective: Histogram) {
    precondition(scores.count == labels.count, "scoreHistograms: \(scores.count) scores but \(labels.count) labels")
    let finite = scores.map(Double.init).filter(\.isFinite)
    let range = (finite.min() ?? 0)...(finite.max() ?? 0)
    let good = zip(scores, labels).filter { $0.1 == 0 }.map(\.0)
    let defective = zip(scores, labels).filter { $0.1 != 0 }.map(\.0)
    return (Histogram(values: good, binCount: binCount, range: range),
            Histogram(values: defective, binCount: binCount, range: range))
}
