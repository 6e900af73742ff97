import DaemonSupport
import Evaluation
import Foundation
import SystemPackage

/// A model bundle's image scores for a list of files, and its own calibrated threshold.
public struct BundleScores: Sendable, Equatable {
    /// One per image, in the order asked; higher is more anomalous. NaN for an image the
    /// model could not read (the gate leaves it out).
    public var scores: [Float]
    public var threshold: Float

    public init(scores: [Float], threshold: Float) {
        self.scores = scores
        self.threshold = threshold
    }
}

/// Scores images with the model bundle at a path. Implemented with RSTPM by the executable;
/// called on a line's learning queue, never from inspection.
public protocol CandidateEvaluator: AnyObject {
    func scores(bundle: FilePath, images: [FilePath]) throws -> BundleScores
}

/// How much worse a candidate may be and still replace the current model.
public struct GatePolicy: Sendable, Equatable, Codable {
    /// The candidate's false-reject rate on held-out normals may exceed the current one's by this.
    public var falseRejectTolerance: Double
    /// Its AUROC on known defects may fall below the current one's by this.
    public var aurocTolerance: Double

    public init(falseRejectTolerance: Double = 0, aurocTolerance: Double = 0.01) {
        self.falseRejectTolerance = falseRejectTolerance
        self.aurocTolerance = aurocTolerance
    }

    enum CodingKeys: String, CodingKey {
        case falseRejectTolerance = "false_reject_tolerance"
        case aurocTolerance = "auroc_tolerance"
    }
}

/// One model's figures on the gate's images.
public struct GateFigures: Sendable, Equatable, Codable {
    /// Share of held-out normals scored at or above the model's own threshold.
    public var falseRejectRate: Double
    /// Held-out normals against known defects; nil without defects.
    public var auroc: Double?
    public var threshold: Float

    enum CodingKeys: String, CodingKey {
        case falseRejectRate = "false_reject_rate"
        case auroc, threshold
    }

    /// `normals` then `defects` scores, as the evaluator returned them; NaN scores are left out.
    public init(scores: BundleScores, normalCount: Int) throws {
        precondition(scores.scores.count >= normalCount, "\(scores.scores.count) scores for \(normalCount) normals")
        let normals = scores.scores.prefix(normalCount).filter(\.isFinite)
        let defects = scores.scores.dropFirst(normalCount).filter(\.isFinite)
        falseRejectRate = normals.isEmpty ? 0 : Double(normals.filter { $0 >= scores.threshold }.count) / Double(normals.count)
        threshold = scores.threshold
        if !defects.isEmpty && !normals.isEmpty {
            auroc = try imageAUROC(scores: normals + defects, labels: [Int](repeating: 0, count: normals.count) + [Int](repeating: 1, count: defects.count))
        } else {
            auroc = nil
        }
    }

    public init(falseRejectRate: Double, auroc: Double?, threshold: Float) {
        self.falseRejectRate = falseRejectRate
        self.auroc = auroc
        self.threshold = threshold
    }
}

/// The gate's decision about one candidate, written as `gate.json` in its version directory.
public struct GateRecord: Sendable, Equatable, Codable {
    public enum Decision: String, Sendable, Codable { case accepted, rejected }

    public static let fileName = "gate.json"

    public var schemaVersion = 1
    public var decision: Decision
    public var reason: String
    public var line: String
    public var candidate: GateFigures
    /// The model serving when the gate ran (nil when there was none).
    public var current: GateFigures?
    public var currentVersion: String?
    public var heldOutImages: Int
    public var defectImages: Int
    /// Training images in the snapshot the candidate was trained on.
    public var trainingImages: Int
    public var policy: GatePolicy
    public var decidedAt: String

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case decision, reason, line, candidate, current
        case currentVersion = "current_version"
        case heldOutImages = "held_out_images"
        case defectImages = "defect_images"
        case trainingImages = "training_images"
        case policy
        case decidedAt = "decided_at"
    }

    public init(decision: Decision, reason: String, line: String, candidate: GateFigures, current: GateFigures?, currentVersion: String?,
                heldOutImages: Int, defectImages: Int, trainingImages: Int, policy: GatePolicy, decidedAt: String) {
        self.decision = decision
        self.reason = reason
        self.line = line
        self.candidate = candidate
        self.current = current
        self.currentVersion = currentVersion
        self.heldOutImages = heldOutImages
        self.defectImages = defectImages
        self.trainingImages = trainingImages
        self.policy = policy
        self.decidedAt = decidedAt
    }

    /// Compares the candidate with the current model under `policy`.
    public static func decide(candidate: GateFigures, current: GateFigures?, heldOutImages: Int, policy: GatePolicy) -> (Decision, String) {
        guard heldOutImages > 0 else {
            return (.rejected, "no held-out normal images to measure the false-reject rate on")
        }
        guard let current else { return (.accepted, "no current model to compare with") }
        let frrLimit = current.falseRejectRate + policy.falseRejectTolerance
        if candidate.falseRejectRate > frrLimit + 1e-12 {
            return (.rejected, "false-reject rate \(format(candidate.falseRejectRate)) on held-out normals is above the current \(format(current.falseRejectRate)) + tolerance \(format(policy.falseRejectTolerance))")
        }
        if let candidateAUROC = candidate.auroc, let currentAUROC = current.auroc, candidateAUROC < currentAUROC - policy.aurocTolerance - 1e-12 {
            return (.rejected, "AUROC \(format(candidateAUROC)) on known defects is below the current \(format(currentAUROC)) - tolerance \(format(policy.aurocTolerance))")
        }
        return (.accepted, "false-reject rate \(format(candidate.falseRejectRate)) (current \(format(current.falseRejectRate)))"
            + (candidate.auroc.map { ", AUROC \(format($0)) (current \(current.auroc.map(format) ?? "n/a"))" } ?? ""))
    }

    static func format(_ value: Double) -> String { String(format: "%.4f", value) }

    public func encoded() -> [UInt8] {
        documentJSON()
    }

    static func read(from path: FilePath, files: FileOperations) throws -> GateRecord {
        try JSONDecoder().decode(GateRecord.self, from: Data(files.readFile(path, maximumBytes: 1 << 20)))
    }
}
