// The evaluation report as plain data: what `rstpm eval` measured, per category and per
// anomaly map. `HTMLReport` renders it; report.json is its JSON encoding (without the
// embedded images).
import Foundation

/// The metrics and curves of one anomaly map (S-T only, discriminator only, or the full Eq. 1)
/// over one category.
public struct MapEvaluation: Codable, Equatable {
    /// Short name shown in tables and legends, e.g. "S-T", "D", "full".
    public var name: String
    /// A row per defect type and the "overall" row (see `evaluateCategory`).
    public var table: ResultsTable
    /// Image ROC over all test images; empty when there are not both good and defective images.
    public var imageROC: [ChartPoint]
    /// Pixel ROC pooled over all test images; empty without masks.
    public var pixelROC: [ChartPoint]
    /// PRO curve: x = false positive rate in 0...`fprLimit`, y = mean per-region overlap.
    public var pro: [ChartPoint]

    public init(name: String, table: ResultsTable, imageROC: [ChartPoint], pixelROC: [ChartPoint], pro: [ChartPoint]) {
        self.name = name
        self.table = table
        self.imageROC = imageROC
        self.pixelROC = pixelROC
        self.pro = pro
    }

    /// Computes the table and the three curves from scored samples. Curves are thinned to about
    /// 2 x `maximumCurvePoints` points; the metrics themselves are exact.
    public static func evaluate(name: String, title: String, samples: [ScoredSample], width: Int, height: Int,
                                fprLimit: Double = 0.3, maximumCurvePoints: Int = 256) throws -> MapEvaluation {
        let table = try evaluateCategory(title: title, samples: samples, width: width, height: height, fprLimit: fprLimit)
        let labels = samples.map(\.label)
        let defective = labels.reduce(0, +)
        var imageROC: [ChartPoint] = []
        if defective > 0 && defective < samples.count {
            imageROC = rocPolyline(curve: try imageROCCurve(scores: samples.map(\.imageScore), labels: labels))
        }
        var pixelROC: [ChartPoint] = [], pro: [ChartPoint] = []
        if table.summary.scores.pixelAUROC != nil {
            var accumulator = PixelMetricsAccumulator(width: width, height: height)
            for sample in samples { try accumulator.add(map: sample.anomalyMap!, mask: sample.mask) }
            pixelROC = rocPolyline(curve: try accumulator.pixelROCCurve(maximumPoints: maximumCurvePoints))
            pro = try accumulator.aupro(fprLimit: fprLimit, maximumCurvePoints: maximumCurvePoints).curve
                .map { ChartPoint(x: $0.falsePositiveRate, y: $0.perRegionOverlap) }
        }
        return MapEvaluation(name: name, table: table, imageROC: imageROC, pixelROC: pixelROC, pro: pro)
    }
}

/// Wall-clock inference time per image, milliseconds.
public struct InferenceTiming: Codable, Equatable {
    public var imageCount: Int
    public var meanMilliseconds: Double
    public var medianMilliseconds: Double
    public var p95Milliseconds: Double
    /// What the figure includes, e.g. "decode + resize + networks, batch 1, 2 threads".
    public var note: String

    public init(milliseconds: [Double], note: String) {
        let sorted = milliseconds.sorted()
        imageCount = sorted.count
        meanMilliseconds = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
        func quantile(_ q: Double) -> Double {
            sorted.isEmpty ? 0 : sorted[min(Int((q * Double(sorted.count - 1)).rounded()), sorted.count - 1)]
        }
        medianMilliseconds = quantile(0.5)
        p95Milliseconds = quantile(0.95)
        self.note = note
    }
}

/// The pictures of one image row, as anomalib's visualiser shows them: the image, the
/// heatmap over it, the ground truth and the mask predicted at the threshold, all of one size.
public struct ImagePanels: Equatable {
    /// JPEG.
    public var original: Data
    /// JPEG: the output map over the image, turbo colours on the category's scale.
    public var heatmap: Data
    /// JPEG: the same on this image's own scale, 0 to `ownScaleMaximum`.
    public var ownScaleHeatmap: Data
    public var ownScaleMaximum: Double
    /// PNG, white = defect (all black for a good image).
    public var groundTruth: Data
    /// PNG, white = map >= threshold; nil without a threshold.
    public var predictedMask: Data?

    public init(original: Data, heatmap: Data, ownScaleHeatmap: Data, ownScaleMaximum: Double, groundTruth: Data, predictedMask: Data?) {
        self.original = original
        self.heatmap = heatmap
        self.ownScaleHeatmap = ownScaleHeatmap
        self.ownScaleMaximum = ownScaleMaximum
        self.groundTruth = groundTruth
        self.predictedMask = predictedMask
    }
}

/// One image row of the report (a worst case).
public struct WorstCase: Codable, Equatable {
    /// The image path, as given on the command line or found in the data set.
    public var image: String
    public var defectType: String
    /// 0 for good, 1 for defective.
    public var label: Int
    public var score: Double
    /// Embedded in the HTML, left out of report.json.
    public var panels: ImagePanels? = nil

    enum CodingKeys: String, CodingKey { case image, defectType, label, score }

    public init(image: String, defectType: String, label: Int, score: Double, panels: ImagePanels? = nil) {
        self.image = image
        self.defectType = defectType
        self.label = label
        self.score = score
        self.panels = panels
    }

    /// Indices of the worst cases: the `count` highest-scored good images (false alarms first)
    /// and the `count` lowest-scored defective images (misses first).
    public static func select<Score: BinaryFloatingPoint>(scores: [Score], labels: [Int], count: Int) -> (good: [Int], defective: [Int]) {
        precondition(scores.count == labels.count, "WorstCase.select: \(scores.count) scores but \(labels.count) labels")
        let good = scores.indices.filter { labels[$0] == 0 }.sorted { (scores[$0], $1) > (scores[$1], $0) }
        let defective = scores.indices.filter { labels[$0] != 0 }.sorted { (scores[$0], $0) < (scores[$1], $1) }
        return (Array(good.prefix(count)), Array(defective.prefix(count)))
    }
}

/// Everything measured on one category.
public struct CategoryReport: Codable, Equatable {
    public var category: String
    public var dataPath: String
    public var modelPath: String
    public var modelID: String?
    /// Resolution of maps and masks for the pixel metrics.
    public var evaluationWidth: Int
    public var evaluationHeight: Int
    public var fprLimit: Double
    /// In the order S-T, D, full when all three exist; the last one is the model's output.
    public var maps: [MapEvaluation]
    /// Image scores of the model's output map, good versus defective.
    public var goodScores: Histogram
    public var defectiveScores: Histogram
    /// The production threshold stored in the model (calibrated on normal images only).
    public var threshold: Double?
    /// How the threshold was chosen, as the model states it.
    public var thresholdStatement: String?
    public var timing: InferenceTiming
    public var worstGood: [WorstCase]
    public var worstDefective: [WorstCase]
    /// Every test image's score under the output map, in data-set order.
    public var imageScores: [ImageScore]
    /// The confusion matrix at `threshold`; nil without a threshold or scores.
    public var operatingPoint: OperatingPoint?

    public init(category: String, dataPath: String, modelPath: String, modelID: String?, evaluationWidth: Int, evaluationHeight: Int,
                fprLimit: Double, maps: [MapEvaluation], goodScores: Histogram, defectiveScores: Histogram, threshold: Double?,
                thresholdStatement: String?, timing: InferenceTiming, worstGood: [WorstCase], worstDefective: [WorstCase],
                imageScores: [ImageScore]) {
        self.category = category
        self.dataPath = dataPath
        self.modelPath = modelPath
        self.modelID = modelID
        self.evaluationWidth = evaluationWidth
        self.evaluationHeight = evaluationHeight
        self.fprLimit = fprLimit
        self.maps = maps
        self.goodScores = goodScores
        self.defectiveScores = defectiveScores
        self.threshold = threshold
        self.thresholdStatement = thresholdStatement
        self.timing = timing
        self.worstGood = worstGood
        self.worstDefective = worstDefective
        self.imageScores = imageScores
        self.operatingPoint = threshold.flatMap { imageScores.isEmpty ? nil : OperatingPoint(threshold: $0, images: imageScores) }
    }
}

/// A whole `rstpm eval` run: one or more categories, and with several, a table per map of the
/// categories' overall rows with their mean, as the paper's tables.
public struct EvaluationReport: Codable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var title: String
    /// ISO 8601.
    public var createdAt: String
    public var categories: [CategoryReport]
    /// The engine precision of the inference convolutions (`f32`, `bf16`); nil in reports
    /// written before it was recorded.
    public var precision: String?
    /// One table per map name (in the order of the first category's maps), a row per category
    /// and a "mean" summary; empty for a single category.
    public var summaries: [ResultsTable]

    public init(title: String, createdAt: Date = Date(), categories: [CategoryReport], precision: String? = nil) {
        self.formatVersion = Self.currentFormatVersion
        self.title = title
        self.createdAt = ISO8601DateFormatter().string(from: createdAt)
        self.categories = categories
        self.precision = precision
        self.summaries = Self.summaries(of: categories)
    }

    static func summaries(of categories: [CategoryReport]) -> [ResultsTable] {
        guard categories.count > 1, let first = categories.first else { return [] }
        return first.maps.map(\.name).map { name in
            let rows = categories.compactMap { category -> ResultsRow? in
                guard let map = category.maps.first(where: { $0.name == name }) else { return nil }
                var row = map.table.summary
                row.name = category.category
                return row
            }
            return ResultsTable.averaging(title: "\(name): mean over \(rows.count) categories", rows: rows)
        }
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
