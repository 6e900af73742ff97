// The report at the production threshold: what a plant sees when the line runs with it.
// An image is rejected when its score is >= the threshold, as rstpmd decides (docs/verdict.md).
import Foundation

/// One test image's score under the model's output map.
public struct ImageScore: Codable, Equatable {
    /// The image path, as found in the data set.
    public var image: String
    /// "good" or the defect type (the test folder's name).
    public var defectType: String
    /// 0 for good, 1 for defective.
    public var label: Int
    public var score: Double

    public init(image: String, defectType: String, label: Int, score: Double) {
        self.image = image
        self.defectType = defectType
        self.label = label
        self.score = score
    }

    /// A Float score (or threshold) as the Double of its shortest decimal, so that report.json
    /// and the CSV print 0.3, not 0.30000001192092896, as the verdicts do. Order is kept: the
    /// shortest decimals of two Floats compare as the Floats do.
    public static func decimal(_ value: Float) -> Double { Double("\(value)") ?? Double(value) }

    /// rstpmd's decision: `defect` at score >= threshold.
    public func isRejected(at threshold: Double) -> Bool { score >= threshold }
}

/// The confusion matrix at one threshold, a row per defect type.
public struct OperatingPoint: Codable, Equatable {
    /// One row of the matrix: `images` of one kind, `rejected` of them scored >= the threshold.
    public struct Row: Codable, Equatable {
        /// "good", a defect type, or "all defects".
        public var name: String
        public var images: Int
        public var rejected: Int
        public var passed: Int { images - rejected }

        public init(name: String, images: Int, rejected: Int) {
            self.name = name
            self.images = images
            self.rejected = rejected
        }
    }

    public var threshold: Double
    /// Good images: `rejected` are false rejects.
    public var good: Row
    /// A row per defect type, in name order: `passed` are escapes.
    public var defectTypes: [Row]
    /// All defective images together.
    public var defects: Row

    /// Fraction of good images rejected; nil without good images.
    public var goodRejectedRate: Double? { good.images > 0 ? Double(good.rejected) / Double(good.images) : nil }
    /// Fraction of defective images passed as ok; nil without defective images.
    public var defectEscapeRate: Double? { defects.images > 0 ? Double(defects.passed) / Double(defects.images) : nil }

    public init(threshold: Double, images: [ImageScore]) {
        self.threshold = threshold
        func row(_ name: String, _ members: [ImageScore]) -> Row {
            Row(name: name, images: members.count, rejected: members.filter { $0.isRejected(at: threshold) }.count)
        }
        good = row("good", images.filter { $0.label == 0 })
        let defective = images.filter { $0.label != 0 }
        defectTypes = Dictionary(grouping: defective, by: \.defectType).sorted { $0.key < $1.key }.map { row($0.key, $0.value) }
        defects = row("all defects", defective)
    }

    /// What a plant cares about first, e.g. "At threshold 0.5, 25% of good parts are rejected
    /// (1 of 4) and 33.3% of defects escape (1 of 3)."
    public var headline: String {
        let rejects = goodRejectedRate.map { "\(Self.percent($0)) of good parts are rejected (\(good.rejected) of \(good.images))" }
            ?? "no good test images to count rejects on"
        let escapes = defectEscapeRate.map { "\(Self.percent($0)) of defects escape (\(defects.passed) of \(defects.images))" }
            ?? "no defective test images to count escapes on"
        return "At threshold \(HTMLReport.format(threshold)), \(rejects) and \(escapes)."
    }

    /// A rate in percent with at most one decimal: 0.25 -> "25%", 1/3 -> "33.3%".
    static func percent(_ rate: Double) -> String {
        var text = String(format: "%.1f", 100 * rate)
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text + "%"
    }
}

/// The per-image scores as CSV (RFC 4180: comma-separated, fields with a comma, quote or line
/// break quoted), one row per test image of every category.
public enum ScoresCSV {
    public static let header = "category,image,defect_type,label,score,decision"

    /// `decision` is `defect` or `ok` at the category's threshold, empty without one.
    public static func csv(for report: EvaluationReport) -> String {
        var lines = [header]
        for category in report.categories {
            for image in category.imageScores {
                let decision = category.threshold.map { image.isRejected(at: $0) ? "defect" : "ok" } ?? ""
                lines.append([category.category, image.image, image.defectType, "\(image.label)", "\(image.score)", decision]
                    .map(field).joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
