// Results tables as the papers print them: one row per defect type (or per category) and a
// summary row, columns image AUROC, pixel AUROC, AUPRO, F1-max.
import Foundation

/// The four metrics of one row; nil where a metric does not apply (no masks, a single class).
public struct MetricScores: Codable, Equatable {
    public var imageAUROC: Double?
    public var pixelAUROC: Double?
    public var aupro: Double?
    public var f1Max: Double?

    public init(imageAUROC: Double? = nil, pixelAUROC: Double? = nil, aupro: Double? = nil, f1Max: Double? = nil) {
        self.imageAUROC = imageAUROC
        self.pixelAUROC = pixelAUROC
        self.aupro = aupro
        self.f1Max = f1Max
    }
}

public struct ResultsRow: Codable, Equatable {
    public var name: String
    public var goodImages: Int
    public var defectiveImages: Int
    public var scores: MetricScores

    public init(name: String, goodImages: Int, defectiveImages: Int, scores: MetricScores) {
        self.name = name
        self.goodImages = goodImages
        self.defectiveImages = defectiveImages
        self.scores = scores
    }
}

/// Rows plus a summary row; prints as a text table (values in percent) and encodes to JSON
/// (values as fractions in 0...1, missing metrics omitted).
public struct ResultsTable: Codable, Equatable, CustomStringConvertible {
    public var title: String
    public var rows: [ResultsRow]
    public var summary: ResultsRow

    public init(title: String, rows: [ResultsRow], summary: ResultsRow) {
        self.title = title
        self.rows = rows
        self.summary = summary
    }

    /// A table whose summary row ("mean") averages each column over the rows that have it,
    /// as papers average categories.
    public static func averaging(title: String, rows: [ResultsRow]) -> ResultsTable {
        func mean(_ metric: (MetricScores) -> Double?) -> Double? {
            let values = rows.compactMap { metric($0.scores) }
            return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
        }
        let scores = MetricScores(imageAUROC: mean(\.imageAUROC), pixelAUROC: mean(\.pixelAUROC),
                                  aupro: mean(\.aupro), f1Max: mean(\.f1Max))
        let summary = ResultsRow(name: "mean", goodImages: rows.reduce(0) { $0 + $1.goodImages },
                                 defectiveImages: rows.reduce(0) { $0 + $1.defectiveImages }, scores: scores)
        return ResultsTable(title: title, rows: rows, summary: summary)
    }

    public var description: String { rendered() }

    /// The table as monospaced text, metrics in percent with `decimals` digits, "-" where absent.
    public func rendered(decimals: Int = 1) -> String {
        let header = ["", "good", "defective", "image AUROC", "pixel AUROC", "AUPRO", "F1-max"]
        func cells(_ row: ResultsRow) -> [String] {
            let values = [row.scores.imageAUROC, row.scores.pixelAUROC, row.scores.aupro, row.scores.f1Max]
            return [row.name, String(row.goodImages), String(row.defectiveImages)]
                + values.map { $0.map { String(format: "%.\(decimals)f", 100 * $0) } ?? "-" }
        }
        let body = rows.map(cells)
        let last = cells(summary)
        let widths = header.indices.map { column in ([header] + body + [last]).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? cell + padding : padding + cell
            }.joined(separator: "  ")
        }
        let rule = String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))
        return ([title, line(header), rule] + body.map(line) + [rule, line(last)]).joined(separator: "\n")
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

/// One scored test image for `evaluateCategory`.
public struct ScoredSample {
    /// "good" or the defect type.
    public var defectType: String
    /// 0 for good, 1 for defective.
    public var label: Int
    public var imageScore: Float
    /// (H, W) row-major at the evaluation resolution; nil when only image metrics are wanted.
    public var anomalyMap: [Float]?
    /// (H, W) row-major, 0/255 (binarised at > 127); nil for good images.
    public var mask: [UInt8]?

    public init(defectType: String, label: Int, imageScore: Float, anomalyMap: [Float]? = nil, mask: [UInt8]? = nil) {
        self.defectType = defectType
        self.label = label
        self.imageScore = imageScore
        self.anomalyMap = anomalyMap
        self.mask = mask
    }
}

/// The table of one category: a row per defect type (its defective images against all good
/// images) and the "overall" row over every test image. Pixel metrics are filled only when
/// every sample has a map and every defective sample a mask; F1-max and AUROC need good and
/// defective images, else those cells stay empty.
public func evaluateCategory(title: String, samples: [ScoredSample], width: Int, height: Int, fprLimit: Double = 0.3) throws -> ResultsTable {
    guard !samples.isEmpty else { throw MetricError.empty(metric: "evaluateCategory") }
    let good = samples.filter { $0.label == 0 }
    let types = Array(Set(samples.filter { $0.label == 1 }.map(\.defectType))).sorted()
    let hasPixels = samples.allSatisfy { $0.anomalyMap != nil && ($0.label == 0 || $0.mask != nil) }

    func row(name: String, subset: [ScoredSample]) throws -> ResultsRow {
        let scores = subset.map(\.imageScore), labels = subset.map(\.label)
        let defective = labels.reduce(0, +)
        var metrics = MetricScores()
        if defective > 0 && defective < subset.count {
            metrics.imageAUROC = try imageAUROC(scores: scores, labels: labels)
            metrics.f1Max = try f1Max(scores: scores, labels: labels).f1
        }
        if hasPixels {
            var accumulator = PixelMetricsAccumulator(width: width, height: height)
            for sample in subset { try accumulator.add(map: sample.anomalyMap!, mask: sample.mask) }
            if accumulator.regionCount > 0 {
                metrics.pixelAUROC = try accumulator.pixelAUROC()
                metrics.aupro = try accumulator.aupro(fprLimit: fprLimit).value
            }
        }
        return ResultsRow(name: name, goodImages: subset.count - defective, defectiveImages: defective, scores: metrics)
    }

    let rows = try types.map { type in try row(name: type, subset: good + samples.filter { $0.label == 1 && $0.defectType == type }) }
    return ResultsTable(title: title, rows: rows, summary: try row(name: "overall", subset: samples))
}
