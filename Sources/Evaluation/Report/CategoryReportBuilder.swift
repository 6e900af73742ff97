// Collects what a model says about each test image of a category and turns it into a
// `CategoryReport`: metrics and curves per map, the score histogram, timings and the
// worst-case heatmaps.
import Foundation
import Imaging

public struct CategoryReportBuilder {
    public let category: MVTecCategory
    /// Names of the maps given to `add`, in order; the last is the model's output (histogram
    /// and worst cases use it).
    public let mapNames: [String]
    public let width: Int
    public let height: Int
    public let modelPath: String
    public let modelID: String?
    public let threshold: Double?
    public let thresholdStatement: String?
    public let fprLimit: Double

    /// Per map, the samples added so far.
    private var samples: [[ScoredSample]]
    private var images: [MVTecSample] = []
    private var milliseconds: [Double] = []

    public init(category: MVTecCategory, mapNames: [String], width: Int, height: Int, modelPath: String, modelID: String?,
                threshold: Double?, thresholdStatement: String?, fprLimit: Double = 0.3) {
        precondition(!mapNames.isEmpty, "CategoryReportBuilder needs at least one map")
        self.category = category
        self.mapNames = mapNames
        self.width = width
        self.height = height
        self.modelPath = modelPath
        self.modelID = modelID
        self.threshold = threshold
        self.thresholdStatement = thresholdStatement
        self.fprLimit = fprLimit
        self.samples = mapNames.map { _ in [] }
    }

    /// One inspected test image: a (H, W) map and an image score per map name, and how long
    /// the inspection took. Its mask (if any) is read through Imaging at (H, W).
    public mutating func add(sample: MVTecSample, maps: [[Float]], scores: [Float], milliseconds: Double) throws {
        precondition(maps.count == mapNames.count && scores.count == mapNames.count,
                     "CategoryReportBuilder.add: \(maps.count) maps and \(scores.count) scores for \(mapNames.count) map names")
        precondition(maps.allSatisfy { $0.count == width * height }, "CategoryReportBuilder.add: maps must be \(width)x\(height)")
        let mask = try sample.mask.map { try GroundTruthMask.load(contentsOf: $0, width: width, height: height) }
        for index in mapNames.indices {
            samples[index].append(ScoredSample(defectType: sample.defectType, label: sample.label, imageScore: scores[index],
                                               anomalyMap: maps[index], mask: mask))
        }
        images.append(sample)
        self.milliseconds.append(milliseconds)
    }

    public var count: Int { images.count }

    /// The report: tables and curves of every map, the histogram of the output map's scores in
    /// `histogramBins` bins, every image's output score (the confusion matrix at the threshold
    /// follows from them), and image rows (`ImagePanels`, `panelSide` pixels on the longer side)
    /// of the `worstCount` highest-scored good and lowest-scored defective images. The category's
    /// colour scale is 0 to twice the threshold, or to the highest score without one.
    public func build(timingNote: String, histogramBins: Int = 30, worstCount: Int = 4, panelSide: Int = 320) throws -> CategoryReport {
        guard !images.isEmpty else { throw MetricError.empty(metric: "category report of \(category.root.path)") }
        let maps = try mapNames.indices.map { index in
            try MapEvaluation.evaluate(name: mapNames[index], title: "\(category.name): \(mapNames[index])",
                                       samples: samples[index], width: width, height: height, fprLimit: fprLimit)
        }
        let output = samples[samples.count - 1]
        let scores = output.map(\.imageScore), labels = output.map(\.label)
        let histograms = scoreHistograms(scores: scores, labels: labels, binCount: histogramBins)
        let worst = WorstCase.select(scores: scores, labels: labels, count: worstCount)
        let top = threshold.map { Float(2 * $0) } ?? (scores.filter(\.isFinite).max() ?? 1)
        let scale: ClosedRange<Float> = 0...max(top, .leastNormalMagnitude)
        func worstCase(_ index: Int) throws -> WorstCase {
            let sample = images[index]
            let panels = try ImagePanels.render(image: try ImageDecoder.decode(contentsOf: sample.image),
                                                mask: try sample.mask.map { try ImageDecoder.decodeMask(contentsOf: $0) },
                                                map: output[index].anomalyMap!, mapWidth: width, mapHeight: height,
                                                threshold: threshold.map(Float.init), scale: scale, side: panelSide)
            return WorstCase(image: sample.image.path, defectType: sample.defectType, label: sample.label,
                             score: ImageScore.decimal(scores[index]), panels: panels)
        }
        let imageScores = images.indices.map {
            ImageScore(image: images[$0].image.path, defectType: images[$0].defectType, label: images[$0].label,
                       score: ImageScore.decimal(scores[$0]))
        }
        return CategoryReport(category: category.name, dataPath: category.root.path, modelPath: modelPath, modelID: modelID,
                              evaluationWidth: width, evaluationHeight: height, fprLimit: fprLimit, maps: maps,
                              goodScores: histograms.good, defectiveScores: histograms.defective, threshold: threshold,
                              thresholdStatement: thresholdStatement, timing: InferenceTiming(milliseconds: milliseconds, note: timingNote),
                              worstGood: try worst.good.map(worstCase), worstDefective: try worst.defective.map(worstCase),
                              imageScores: imageScores)
    }
}
