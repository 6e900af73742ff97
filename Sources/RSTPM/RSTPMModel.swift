import Foundation
import Imaging
import OperatorErrors
import TensorEngine

/// What the model says about one image. Maps are (height, width) at the model's input size,
/// row-major.
public struct Inspection: Sendable {
    /// The inspected file's name (`ModelInput.name`) and its own size.
    public var name: String
    public var imageSize: ImageSize
    public var width: Int
    public var height: Int
    /// Eq. 1: A64 * A32 * A16 * Omega7, with the S-T part smoothed as below.
    public var finalMap: [Float]
    /// A64 * A32 * A16 (student-teacher pairs only), smoothed by the model's `studentTeacherSmoothing`.
    public var studentTeacherMap: [Float]
    /// Omega7, D's output upsampled.
    public var discriminatorMap: [Float]
    /// Image score of the final map under the model's score rule; likewise for the two parts.
    /// A score at or above the threshold is a defect: the same rule as the daemon's verdicts,
    /// the gate's false-reject rate and Evaluation's ROC points.
    public var score: Float
    public var studentTeacherScore: Float
    public var discriminatorScore: Float
    /// This image's share of the batch's network time.
    public var networkMilliseconds: Double
}

/// A trained model ready for inspection: teachers, students and D in `.inference` mode.
/// Not safe for concurrent calls: serialise `inspect` (one model per worker).
public final class RSTPMModel {
    public let manifest: BundleManifest
    public let networks: RSTPMNetworks
    public var threshold: Float { manifest.threshold.value }
    public var modelID: String { manifest.modelID }
    public var inputWidth: Int { manifest.inputWidth }
    public var inputHeight: Int { manifest.inputHeight }

    /// Loads a bundle for the given teachers, refusing it if their kinds or checkpoint hashes
    /// differ from the manifest's.
    public static func load(bundle: URL, teachers: TeacherSet) throws -> RSTPMModel {
        let (manifest, tensors) = try ModelBundle.read(from: bundle)
        for (expected, actual) in zip(manifest.teachers, teachers.records) {
            guard expected.kind == actual.kind, expected.checkpointSHA256 == actual.checkpointSHA256 else {
                throw OperatorError(.wrongWeights, path: bundle.path,
                                 problem: "model was trained with \(expected.role) \(expected.kind) sha256 \(expected.checkpointSHA256), these weights are \(actual.kind) sha256 \(actual.checkpointSHA256)",
                                 hint: "use the weights directory with \(expected.checkpointFile) the model was trained with")
            }
        }
        guard teachers.records.count == manifest.teachers.count else {
            throw OperatorError(.invalidInput, path: bundle.path, problem: "expected \(manifest.teachers.count) teacher records", hint: "internal: pass T1 and T2 records")
        }
        let networks = RSTPMNetworks(configuration: manifest.configuration, teachers: teachers)
        try ModelBundle.load(tensors, into: networks, path: bundle.appendingPathComponent(ModelBundle.weightsFileName).path)
        return RSTPMModel(manifest: manifest, networks: networks)
    }

    /// A model around networks in memory (after training or loading). The BatchNorms of S1 (when
    /// it supports it), S2 and D are folded into their convolutions, so `networks` can no longer
    /// be saved afterwards.
    public init(manifest: BundleManifest, networks: RSTPMNetworks) {
        self.manifest = manifest
        self.networks = networks
        networks.freezeForInference()
    }

    /// `ModelInput.prepare` at this model's input size.
    public func prepare(_ bytes: some ContiguousBytes, name: String, limits: ImageLimits = .default) throws -> ModelInput {
        try ModelInput.prepare(bytes, name: name, width: inputWidth, height: inputHeight, limits: limits)
    }

    /// Inspects prepared inputs (at this model's input size) as one network batch.
    public func inspect(_ inputs: [ModelInput]) -> [Inspection] {
        Self.inspect(inputs, networks: networks)
    }

    /// `inspect` on networks not (yet) wrapped in a model: training calibrates its threshold so.
    static func inspect(_ inputs: [ModelInput], networks: RSTPMNetworks) -> [Inspection] {
        guard !inputs.isEmpty else { return [] }
        let start = Date()
        let input = LayerProfile.measure("inspect: input batch") { ModelInput.batch(inputs) }
        let maps = Self.maps(networks: networks, input: input)
        let milliseconds = Date().timeIntervalSince(start) * 1000 / Double(inputs.count)
        let rule = networks.configuration.scoreRule
        let (scores, stScores, dScores) = LayerProfile.measure("inspect: image scores of the three maps") {
            (MapFusion.scores(of: maps.final, rule: rule), MapFusion.scores(of: maps.studentTeacher, rule: rule),
             MapFusion.scores(of: maps.discriminator, rule: rule))
        }
        let (height, width) = (networks.configuration.inputHeight, networks.configuration.inputWidth)
        return LayerProfile.measure("inspect: per-image results") { inputs.indices.map { n in
            Inspection(name: inputs[n].name, imageSize: inputs[n].imageSize, width: width, height: height,
                       finalMap: maps.final.batchItem(n).scalars, studentTeacherMap: maps.studentTeacher.batchItem(n).scalars,
                       discriminatorMap: maps.discriminator.batchItem(n).scalars,
                       score: scores[n], studentTeacherScore: stScores[n], discriminatorScore: dScores[n], networkMilliseconds: milliseconds)
        } }
    }

    /// Final, S-T and D maps (N, 1, H, W) with every network in `.inference`.
    static func maps(networks: RSTPMNetworks, input: Tensor) -> (final: Tensor, studentTeacher: Tensor, discriminator: Tensor) {
        let configuration = networks.configuration
        let (H, W) = (configuration.inputHeight, configuration.inputWidth)
        // RSTPM_PROFILE: each stage's time outside the layers it lists itself (LayerProfile nests).
        let features = LayerProfile.measure("T1, T2, S1 features: outside listed layers") { networks.inferenceFeatures(input) }
        let levelMaps = networks.levelMaps(input: input, teachers: features.teachers, student1Features: features.student1, caching: false)
        let unsmoothed = LayerProfile.measure("S-T map: level maps resized, summed, multiplied") {
            MapFusion.studentTeacherMap(levelMaps: levelMaps, height: H, width: W)
        }
        let studentTeacher = LayerProfile.measure("S-T map: gaussian smoothing") {
            MapFusion.smoothed(unsmoothed, sigma: configuration.studentTeacherSmoothing)
        }
        let discriminatorInput = LayerProfile.measure("D input: level maps resized, summed, scaled") { networks.discriminatorInput(levelMaps: levelMaps) }
        let discriminatorOutput = LayerProfile.measure("D: outside listed layers") { networks.discriminator(discriminatorInput) }
        let discriminator = LayerProfile.measure("D map resized to the input size") { MapFusion.resized(discriminatorOutput, height: H, width: W) }
        return LayerProfile.measure("final map: S-T map times D map") { (studentTeacher * discriminator, studentTeacher, discriminator) }
    }
}
