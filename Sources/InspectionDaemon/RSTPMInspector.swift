import Foundation
import Imaging
import OperatorErrors
import RSTPM
import SystemPackage
import TensorEngine

/// The daemon's inspector on a real RSTPM model bundle: decodes each input with Imaging, runs
/// the inputs that arrived together as one network batch, takes Eq. 1's final map as the
/// anomaly map and renders the heatmap over the original image, scaled to the line's
/// `HeatmapResolution`, with the outline at the threshold the line decides with. An input that
/// cannot be decoded, or whose score is not finite, fails alone; the rest of the batch goes on.
public final class RSTPMInspector: Inspector {
    public let model: RSTPMModel
    public let modelIdentity: ModelIdentity
    /// What the decoder refuses before allocating (a bomb-sized header ends in quarantine).
    public let imageLimits: ImageLimits
    public let heatmapResolution: HeatmapResolution
    /// The precision the model's inference products run in, and why.
    public let precisionChoice: PrecisionChoice
    public var modelThreshold: Float? { model.threshold }

    /// 40 megapixels: a decoded image takes 3 bytes per pixel (12 from a 16-bit file), and a
    /// line holds up to three batches of them (being decoded, inspected, drawn as heatmaps).
    public static let defaultImageLimits = ImageLimits(maxPixels: 40_000_000)

    /// `precision`: nil runs the engine's (RSTPM_PRECISION, else f32).
    public init(model: RSTPMModel, imageLimits: ImageLimits = RSTPMInspector.defaultImageLimits,
                heatmapResolution: HeatmapResolution = .default, precision: PrecisionChoice? = nil) {
        self.model = model
        self.imageLimits = imageLimits
        self.heatmapResolution = heatmapResolution
        precisionChoice = precision ?? PrecisionChoice(precision: Engine.precision, reason: "the engine's precision")
        model.networks.setInferencePrecision(precisionChoice.precision)
        modelIdentity = ModelIdentity(identifier: model.modelID, version: model.manifest.createdAt, precision: precisionChoice.precision.rawValue)
    }

    /// Loads the bundle with its teachers from `weightsDirectory` (checked against the
    /// manifest's SHA-256), in the precision `PrecisionChoice` picks for it; throws
    /// an `OperatorError` naming the file at fault.
    public convenience init(bundle: FilePath, weightsDirectory: URL,
                            imageLimits: ImageLimits = RSTPMInspector.defaultImageLimits, heatmapResolution: HeatmapResolution = .default) throws {
        let model: RSTPMModel
        do {
            model = try RSTPMModel.load(bundle: URL(fileURLWithPath: bundle.string), weightsDirectory: weightsDirectory)
        } catch let error as OperatorError {
            throw OperatorError(error.kind, path: error.path, problem: error.problem, hint: Self.daemonHint(error.hint, weightsDirectory: weightsDirectory))
        }
        self.init(model: model, imageLimits: imageLimits, heatmapResolution: heatmapResolution, precision: PrecisionChoice.choose(for: model.manifest))
    }

    /// The loader's hints speak of `rstpm`'s flags; an operator of rstpmd sets YAML keys and a
    /// weights directory instead.
    static func daemonHint(_ hint: String, weightsDirectory: URL) -> String {
        hint.replacingOccurrences(of: "point --model at", with: "point lines[].model at")
            .replacingOccurrences(of: "or pass --weights-dir with", with: "(rstpm weights fetch --dir \(weightsDirectory.path)) so that \(weightsDirectory.path) holds")
    }

    struct Decoded {
        var index: Int
        /// What `RSTPMModel.prepare` made of the file; its original is the heatmap's background.
        var input: ModelInput
        var decodeMilliseconds: Double
    }

    /// A batch as `prepare` left it: each input decoded, or why it could not be.
    public struct DecodedBatch {
        let inputs: [InspectionInput]
        let decodings: [Result<Decoded, InspectionError>]
    }

    /// Decodes every input; a failure is that input's result.
    public func prepare(_ inputs: [InspectionInput]) -> DecodedBatch {
        let decodings = inputs.enumerated().map { index, input -> Result<Decoded, InspectionError> in
            let start = monotonicNanoseconds()
            do {
                // The bytes as read (and hashed) by the pipeline: no copy into a Data.
                let prepared = try model.prepare(input.bytes, name: input.fileName, limits: imageLimits)
                return .success(Decoded(index: index, input: prepared, decodeMilliseconds: Double(monotonicNanoseconds() - start) / 1e6))
            } catch let error as OperatorError {
                return .failure(inspectionError(error))
            } catch {
                return .failure(.decodeFailure(message: "\(error)"))
            }
        }
        return DecodedBatch(inputs: inputs, decodings: decodings)
    }

    public func inspect(prepared: DecodedBatch) -> [Result<InspectionOutcome, InspectionError>] {
        let (inputs, decodings) = (prepared.inputs, prepared.decodings)
        var results = [Result<InspectionOutcome, InspectionError>?](repeating: nil, count: inputs.count)
        var decoded: [Decoded] = []
        for (index, decoding) in decodings.enumerated() {
            switch decoding {
            case .success(let item): decoded.append(item)
            case .failure(let error): results[index] = .failure(error)
            }
        }
        if !decoded.isEmpty {
            let inspections = model.inspect(decoded.map(\.input))
            for (item, inspection) in zip(decoded, inspections) {
                results[item.index] = outcome(item.input, inspection, decodeMilliseconds: item.decodeMilliseconds)
            }
        }
        return results.map { $0! }
    }

    /// The decoder's typed refusal as the quarantine's error kind: a too-large file with the
    /// size its header declares (the codec fills it in; no message is parsed).
    private func inspectionError(_ error: OperatorError) -> InspectionError {
        switch error.kind {
        case .imageTooLarge(let width, let height):
            return .tooLarge(width: width, height: height, limit: imageLimits.maxPixels)
        case .unsupported:
            return .unsupportedFormat(message: error.problem)
        default:
            return .decodeFailure(message: error.problem)
        }
    }

    /// The outcome of one inspected input, its heatmap drawn over the input's original (at the
    /// line's resolution) when asked; `rstpm infer` draws its heatmaps through this too.
    public func outcome(_ input: ModelInput, _ anomaly: Inspection, decodeMilliseconds: Double) -> Result<InspectionOutcome, InspectionError> {
        guard anomaly.score.isFinite, anomaly.finalMap.allSatisfy(\.isFinite) else {
            return .failure(.inferenceFailure(message: "the anomaly map of \(anomaly.name) is not finite (score \(anomaly.score))"))
        }
        guard let original = input.original else { preconditionFailure("ModelInput.prepare keeps the original") }
        let map = anomaly.finalMap, mapWidth = anomaly.width, mapHeight = anomaly.height
        let size = heatmapResolution.size(width: original.width, height: original.height)
        let modelID = model.modelID, score = anomaly.score
        let render: @Sendable (Float, Bool) throws -> [UInt8] = { threshold, drawsLabel in
            // VerdictPolicy's rule: defect at score >= threshold.
            let isDefect = score >= threshold, scale: ClosedRange<Float> = 0...max(2 * threshold, .leastNormalMagnitude)
            let text = Heatmap.textChunks(model: modelID, score: score, threshold: threshold, isDefect: isDefect, scale: scale)
            let background = original.resized(width: size.width, height: size.height)
            var figure = Heatmap.render8(map: map, mapWidth: mapWidth, mapHeight: mapHeight, over: background,
                                         threshold: threshold, scale: scale)
            if drawsLabel {
                Heatmap.drawLabel(score: score, threshold: threshold, isDefect: isDefect, into: &figure, width: size.width, height: size.height)
            }
            return Array(try PNGEncoder.encode(rgb8: figure, width: size.width, height: size.height, text: text, compression: .fast))
        }
        let timings = InspectionTimings(decodeMilliseconds: decodeMilliseconds,
                                        inferMilliseconds: anomaly.networkMilliseconds)
        return .success(InspectionOutcome(
            score: anomaly.score, threshold: model.threshold,
            anomalyMap: anomaly.finalMap, mapWidth: anomaly.width, mapHeight: anomaly.height,
            imageWidth: original.width, imageHeight: original.height, renderHeatmapPNG: render, timings: timings))
    }
}
