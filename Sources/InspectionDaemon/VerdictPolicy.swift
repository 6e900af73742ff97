/// What a line makes of one inspection: the threshold it decides with, its `threshold:` when
/// set, else the model's own, and the decision, defect at score >= threshold. Pure, and made
/// once per image: the verdict, the journal, the metrics and the heatmap's outline all take it.
public struct VerdictDecision: Sendable, Equatable {
    public var threshold: Verdict.Threshold
    public var verdict: Verdict.Decision

    public init(threshold: Verdict.Threshold, verdict: Verdict.Decision) {
        self.threshold = threshold
        self.verdict = verdict
    }
}

public enum VerdictPolicy {
    /// The one place a line's threshold override applies.
    public static func decide(_ outcome: InspectionOutcome, on line: LineConfiguration) -> VerdictDecision {
        decide(score: outcome.score, modelThreshold: outcome.threshold, thresholdOverride: line.thresholdOverride)
    }

    public static func decide(score: Float, modelThreshold: Float, thresholdOverride: Float?) -> VerdictDecision {
        let threshold = thresholdOverride.map { Verdict.Threshold(value: $0, source: .configuration) }
            ?? Verdict.Threshold(value: modelThreshold, source: .model)
        return VerdictDecision(threshold: threshold, verdict: score >= threshold.value ? .defect : .ok)
    }
}
