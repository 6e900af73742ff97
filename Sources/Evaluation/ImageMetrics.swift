// Image-level metrics: one anomaly score per image, labels good = 0, defective = 1.

/// One point of a ROC curve: predicting "defective" for every score >= `threshold` gives
/// these rates. The first point of a curve has threshold +infinity (nothing flagged).
public struct ROCPoint: Codable, Equatable {
    public let falsePositiveRate: Double
    public let truePositiveRate: Double
    public let threshold: Double

    public init(falsePositiveRate: Double, truePositiveRate: Double, threshold: Double) {
        self.falsePositiveRate = falsePositiveRate
        self.truePositiveRate = truePositiveRate
        self.threshold = threshold
    }
}

/// The threshold with the best F1 and what it achieves.
public struct F1MaxResult: Codable, Equatable {
    public let f1: Double
    /// Scores >= threshold are flagged as defective.
    public let threshold: Double
    public let precision: Double
    public let recall: Double
}

/// Distinct scores in descending order with how many defective/good samples share each.
private struct ScoreGroups {
    var scores: [Double] = []
    var positives: [Int] = []
    var negatives: [Int] = []
    var positiveTotal = 0
    var negativeTotal = 0

    init<Score: BinaryFloatingPoint>(metric: String, scores input: [Score], labels: [Int]) throws {
        precondition(input.count == labels.count, "\(metric): \(input.count) scores but \(labels.count) labels")
        guard !input.isEmpty else { throw MetricError.empty(metric: metric) }
        var pairs: [(score: Double, positive: Bool)] = []
        pairs.reserveCapacity(input.count)
        for (index, (score, label)) in zip(input, labels).enumerated() {
            precondition(label == 0 || label == 1, "\(metric): label \(index) is \(label); labels are 0 (good) or 1 (defective)")
            guard !score.isNaN else { throw MetricError.notANumber(metric: metric, index: index) }
            pairs.append((Double(score), label == 1))
        }
        pairs.sort { $0.score > $1.score }
        for pair in pairs {
            if scores.last != pair.score {
                scores.append(pair.score); positives.append(0); negatives.append(0)
            }
            if pair.positive { positives[positives.count - 1] += 1; positiveTotal += 1 }
            else { negatives[negatives.count - 1] += 1; negativeTotal += 1 }
        }
    }
}

/// ROC AUC of image scores: the Mann-Whitney statistic, ties counting half (equal to
/// scikit-learn's `roc_auc_score`). Constant scores give 0.5. Throws `MetricError.singleClass`
/// when only one class is present.
public func imageAUROC<Score: BinaryFloatingPoint>(scores: [Score], labels: [Int]) throws -> Double {
    let groups = try ScoreGroups(metric: "image AUROC", scores: scores, labels: labels)
    guard groups.positiveTotal > 0, groups.negativeTotal > 0 else {
        throw MetricError.singleClass(metric: "image AUROC", positives: groups.positiveTotal, negatives: groups.negativeTotal)
    }
    // From the lowest score up: a positive beats the negatives below it and ties half with
    // the negatives at its own score.
    var negativesBelow = 0.0, wins = 0.0
    for g in stride(from: groups.scores.count - 1, through: 0, by: -1) {
        wins += Double(groups.positives[g]) * (negativesBelow + 0.5 * Double(groups.negatives[g]))
        negativesBelow += Double(groups.negatives[g])
    }
    return wins / (Double(groups.positiveTotal) * Double(groups.negativeTotal))
}

/// The full ROC curve of image scores: one point per distinct score, from (0, 0) to (1, 1).
public func imageROCCurve<Score: BinaryFloatingPoint>(scores: [Score], labels: [Int]) throws -> [ROCPoint] {
    let groups = try ScoreGroups(metric: "image ROC curve", scores: scores, labels: labels)
    guard groups.positiveTotal > 0, groups.negativeTotal > 0 else {
        throw MetricError.singleClass(metric: "image ROC curve", positives: groups.positiveTotal, negatives: groups.negativeTotal)
    }
    var points = [ROCPoint(falsePositiveRate: 0, truePositiveRate: 0, threshold: .infinity)]
    var truePositives = 0, falsePositives = 0
    for g in 0..<groups.scores.count {
        truePositives += groups.positives[g]
        falsePositives += groups.negatives[g]
        points.append(ROCPoint(falsePositiveRate: Double(falsePositives) / Double(groups.negativeTotal),
                               truePositiveRate: Double(truePositives) / Double(groups.positiveTotal),
                               threshold: groups.scores[g]))
    }
    return points
}

/// The best F1 over all thresholds at the distinct scores (scores >= threshold flagged).
/// Among equal F1 values the lowest threshold wins, as with scikit-learn's
/// `precision_recall_curve` followed by `argmax`. Throws when there is no defective sample.
public func f1Max<Score: BinaryFloatingPoint>(scores: [Score], labels: [Int]) throws -> F1MaxResult {
    let groups = try ScoreGroups(metric: "F1-max", scores: scores, labels: labels)
    guard groups.positiveTotal > 0 else {
        throw MetricError.singleClass(metric: "F1-max", positives: 0, negatives: groups.negativeTotal)
    }
    var best = F1MaxResult(f1: -1, threshold: .infinity, precision: 1, recall: 0)
    var truePositives = 0, flagged = 0
    for g in 0..<groups.scores.count {
        truePositives += groups.positives[g]
        flagged += groups.positives[g] + groups.negatives[g]
        let f1 = 2 * Double(truePositives) / Double(flagged + groups.positiveTotal)
        if f1 >= best.f1 {
            best = F1MaxResult(f1: f1, threshold: groups.scores[g],
                               precision: Double(truePositives) / Double(flagged),
                               recall: Double(truePositives) / Double(groups.positiveTotal))
        }
    }
    return best
}
