import BuildInfo
import Evaluation
import Foundation
import TensorEngine

/// The accuracy check of a reduced inference precision for one model, recorded in its manifest
/// (`precisions`). A bundle holds no defective images, so the check runs on what training held
/// out: the validation-normal images and the same images made anomalous with a fixed seed
/// (the pseudo-anomalies D is validated on, with their masks). It compares the precision with
/// f32 on them as the bar compares on a labelled test set: image and pixel AUROC within
/// `aurocTolerance` of f32, and verdicts at the model's threshold agreeing on at least
/// `minimumAgreement` of the images.
public struct PrecisionCheck: Codable, Equatable, Sendable {
    public static let aurocTolerance = 0.002
    public static let minimumAgreement = 0.995
    /// Pseudo-anomalous variants made of each validation image: with n normal images one
    /// swapped pair moves image AUROC by 1 / (n * variants * n), which must stay below the
    /// tolerance even for a small bundle (12 images: 0.0017), or the check could never pass.
    public static let pseudoAnomalousVariants = 4

    public var passed: Bool
    /// Share of the check images whose verdict (score >= threshold) is the same as in f32.
    public var verdictAgreement: Double
    /// Largest |score - f32 score| / f32 score over the check images.
    public var maxRelativeScoreChange: Double
    /// Image and pixel AUROC of the precision minus f32's (normal against pseudo-anomalous).
    public var imageAUROCChange: Double
    public var pixelAUROCChange: Double
    /// Validation-normal images, and the pseudo-anomalous ones checked with them (nil in
    /// records written before it was counted: as many as the normal ones).
    public var normalImages: Int
    public var anomalousImages: Int?
    /// ISO 8601 time of the check and the rstpm that ran it.
    public var checkedAt: String
    public var rstpmVersion: String?

    public init(passed: Bool, verdictAgreement: Double, maxRelativeScoreChange: Double, imageAUROCChange: Double,
                pixelAUROCChange: Double, normalImages: Int, anomalousImages: Int? = nil, checkedAt: String, rstpmVersion: String?) {
        self.passed = passed
        self.verdictAgreement = verdictAgreement
        self.maxRelativeScoreChange = maxRelativeScoreChange
        self.imageAUROCChange = imageAUROCChange
        self.pixelAUROCChange = pixelAUROCChange
        self.normalImages = normalImages
        self.anomalousImages = anomalousImages
        self.checkedAt = checkedAt
        self.rstpmVersion = rstpmVersion
    }

    /// One line for logs and the journal: "passed: verdicts agree on 100.0% ...".
    public var summary: String {
        (passed ? "passed" : "failed") + String(format: ": verdicts agree on %.1f%%, image AUROC %+.4f, pixel AUROC %+.4f, scores within %.1f%% of f32 (%d normal + %d pseudo-anomalous validation images)",
                                                verdictAgreement * 100, imageAUROCChange, pixelAUROCChange, maxRelativeScoreChange * 100,
                                                normalImages, anomalousImages ?? normalImages)
    }

    /// The check images' scores and final maps in one precision.
    public struct Run {
        public var scores: [Float]
        public var maps: [[Float]]

        public init(scores: [Float], maps: [[Float]]) {
            self.scores = scores
            self.maps = maps
        }
    }

    /// Checks every precision other than f32 that runs on the engine's kernel set here, on
    /// `networks` (frozen for inference; left in f32 afterwards). `normal` and `anomalous`
    /// are images at the input size; `masks` are the anomalous ones' (values in [0, 1]). Empty where no reduced precision runs here.
    public static func checkAll(networks: RSTPMNetworks, threshold: Float, normal: [PlanarImage], anomalous: [PlanarImage],
                                masks: [[Float]], batchSize: Int) throws -> [String: PrecisionCheck] {
        let reduced = Precision.allCases.filter { $0 != .f32 && $0.problem(on: Engine.kernelSet) == nil }
        guard !reduced.isEmpty, !normal.isEmpty else { return [:] }
        let images = normal + anomalous
        let labels = Array(repeating: 0, count: normal.count) + Array(repeating: 1, count: anomalous.count)
        let pixelMasks: [[UInt8]?] = Array(repeating: nil, count: normal.count) + masks.map { $0.map { $0 >= 0.5 ? 255 : 0 } }
        func run(_ precision: Precision) -> Run {
            networks.setInferencePrecision(precision)
            defer { networks.setInferencePrecision(nil) }
            var result = Run(scores: [], maps: [])
            for start in stride(from: 0, to: images.count, by: batchSize) {
                let batch = Array(images[start..<min(start + batchSize, images.count)])
                let maps = RSTPMModel.maps(networks: networks, input: networks.inputTensor(batch))
                result.scores += MapFusion.scores(of: maps.final, rule: networks.configuration.scoreRule)
                result.maps += batch.indices.map { maps.final.batchItem($0).scalars }
            }
            return result
        }
        let reference = run(.f32)
        let referenceImage = try imageAUROC(scores: reference.scores, labels: labels)
        let referencePixel = try pixelAUROC(maps: reference.maps, masks: pixelMasks)
        var checks: [String: PrecisionCheck] = [:]
        for precision in reduced {
            let candidate = run(precision)
            checks[precision.rawValue] = try compare(candidate, with: reference, threshold: threshold, labels: labels, masks: pixelMasks,
                                                     referenceAUROC: (referenceImage, referencePixel), normalImages: normal.count,
                                                     anomalousImages: anomalous.count)
        }
        return checks
    }

    /// Judges `candidate` against f32's `reference` on the same images (`labels` 0 normal, 1
    /// anomalous; `masks` 0/255, nil for normal images); `referenceAUROC` is `reference`'s.
    public static func compare(_ candidate: Run, with reference: Run, threshold: Float, labels: [Int], masks: [[UInt8]?],
                               referenceAUROC: (image: Double, pixel: Double), normalImages: Int,
                               anomalousImages: Int? = nil) throws -> PrecisionCheck {
        let agreeing = zip(candidate.scores, reference.scores).filter { ($0 >= threshold) == ($1 >= threshold) }.count
        let agreement = Double(agreeing) / Double(max(1, reference.scores.count))
        let change = zip(candidate.scores, reference.scores).map { Double(abs($0 - $1) / max(abs($1), .leastNormalMagnitude)) }.max() ?? 0
        let imageChange = try imageAUROC(scores: candidate.scores, labels: labels) - referenceAUROC.image
        let pixelChange = try pixelAUROC(maps: candidate.maps, masks: masks) - referenceAUROC.pixel
        let finite = candidate.scores.allSatisfy(\.isFinite)
        let passed = finite && agreement >= minimumAgreement && abs(imageChange) <= aurocTolerance && abs(pixelChange) <= aurocTolerance
        return PrecisionCheck(passed: passed, verdictAgreement: agreement, maxRelativeScoreChange: change, imageAUROCChange: imageChange,
                              pixelAUROCChange: pixelChange, normalImages: normalImages, anomalousImages: anomalousImages,
                              checkedAt: ISO8601DateFormatter().string(from: Date()), rstpmVersion: RSTPMBuild.description)
    }
}

extension RSTPMNetworks {
    /// Runs every network's inference products (teachers, students, D) in `precision`; nil
    /// follows the engine's (`RSTPM_PRECISION`, `--precision`).
    public func setInferencePrecision(_ precision: Precision?) {
        for network: any Layer in [teachers.teacher1, teachers.teacher2, student1, student2, discriminator] {
            network.setInferencePrecision(precision)
        }
    }
}
