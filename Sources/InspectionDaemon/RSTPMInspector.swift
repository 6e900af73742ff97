import Foundation
import Imaging
import RSTPM
import SystemPackage

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
    public var modelThreshold: Float? { model.threshold }

    /// 40 megapixels: a decoded image takes 3 bytes per pixel (12 from a 16-bit file), and a
    /// line holds up to three batches of them (being decoded, inspected, drawn as heatmaps).
    public static let defaultImageLimits = ImageLimits(maxPixels: 40_000_000)

    public init(model: RSTPMModel, imageLimits: ImageLimits = RSTPMInspector.defaultImageLimits,
                heatmapResolution: HeatmapResolution = .default) {
        self.model = model
        self.imageLimits = imageLimits
        self.heatmapResolution = heatmapResolution
        modelIdentity = ModelIdentity(identifier: model.modelID, version: model.manifest.createdAt)
    }

    /// Loads the bundle with its teachers from `weightsDirectory` (checked against the
    /// manifest's SHA-256); throws `RSTPMError` naming the file at fault.
    public convenience init(bundle: FilePath, weightsDirectory: URL,
                            imageLimits: ImageLimits = RSTPMInspector.defaultImageLimits, heatmapResolution: HeatmapResolution = .default) throws {
        let model: RSTPMModel
        do {
            model = try RSTPMModel.load(bundle: URL(fileURLWithPath: bundle.string), weightsDirectory: weightsDirectory)
        } catch let error as RSTPMError {
            throw RSTPMError(path: error.path, problem: error.problem, hint: Self.daemonHint(error.hint, weightsDirectory: weightsDirectory))
        }
        self.init(model: model, imageLimits: imageLimits, heatmapResolution: heatmapResolution)
    }

    /// The loader's hints speak of `rstpm`'s flags; an operator of rstpmd sets YAML keys and a
    /// weights directory instead.
    static func daemonHint(_ hint: String, weightsDirectory: URL) -> String {
        hint.replacingOccurrences(of: "point --model at", with: "point lines[].model at")
            .replacingOccurrences(of: "or pass --weights-dir with", with: "(rstpm weights fetch --dir \(weightsDirectory.path)) so that \(weightsDirectory.path) holds")
    }

    struct Decoded {
        var index: Int
        /// The file at its own precision (8-bit stays bytes); the heatmap's background comes from it.
        var original: DecodedImage
        /// What the network sees, already at its input size; from a JPEG's DCT-scaled decode, as in training.
        var modelInput: RGBImage
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
                let (original, modelInput) = try decode(input)
                return .success(Decoded(index: index, original: original, modelInput: modelInput,
                                        decodeMilliseconds: Double(monotonicNanoseconds() - start) / 1e6))
            } catch let error as InspectionError {
                return .failure(error)
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
            let anomalies = model.inspect(images: decoded.map(\.modelInput))
            for (item, anomaly) in zip(decoded, anomalies) {
                results[item.index] = outcome(item, anomaly, fileName: inputs[item.index].fileName)
            }
        }
        return results.map { $0! }
    }

    /// The original image, and the model's input resized from it, except for a JPEG at least
    /// twice the input size, which libjpeg decodes again at a reduced scale, as training did.
    /// Neither makes a full-size float image: the model's input is resized from the decoded
    /// bytes with the same arithmetic as the float resize.
    private func decode(_ input: InspectionInput) throws -> (DecodedImage, RGBImage) {
        // The bytes as read (and hashed) by the pipeline: no copy into a Data.
        let data = input.bytes
        let original = try decodeImage(data, name: input.fileName, targetSize: nil)
        let isJPEG = input.bytes.first == 0xFF
        let source = isJPEG && original.width >= 2 * model.inputWidth && original.height >= 2 * model.inputHeight
            ? try decodeImage(data, name: input.fileName, targetSize: ImageSize(width: model.inputWidth, height: model.inputHeight))
            : original
        return (original, source.resized(width: model.inputWidth, height: model.inputHeight))
    }

    private func decodeImage(_ data: [UInt8], name: String, targetSize: ImageSize?) throws -> DecodedImage {
        do {
            return try ImageDecoder.decodeCompact(data: data, name: name, limits: imageLimits, targetSize: targetSize)
        } catch let error as ImageError {
            switch error.reason {
            case .tooLarge:
                let size = error.declaredSize ?? ImageSize(width: 0, height: 0)
                throw InspectionError.tooLarge(width: size.width, height: size.height, limit: imageLimits.maxPixels)
            case .unsupported:
                throw InspectionError.unsupportedFormat(message: error.detail)
            default:
                throw InspectionError.decodeFailure(message: error.problem)
            }
        }
    }

    private func outcome(_ item: Decoded, _ anomaly: AnomalyResult, fileName: String) -> Result<InspectionOutcome, InspectionError> {
        guard anomaly.score.isFinite, anomaly.finalMap.allSatisfy(\.isFinite) else {
            return .failure(.inferenceFailure(message: "the anomaly map of \(fileName) is not finite (score \(anomaly.score))"))
        }
        let original = item.original, map = anomaly.finalMap, mapWidth = anomaly.width, mapHeight = anomaly.height
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
        let timings = InspectionTimings(decodeMilliseconds: item.decodeMilliseconds,
                                        inferMilliseconds: anomaly.timings.preprocessMilliseconds + anomaly.timings.networkMilliseconds)
        return .success(InspectionOutcome(
            score: anomaly.score, threshold: anomaly.threshold,
            anomalyMap: anomaly.finalMap, mapWidth: anomaly.width, mapHeight: anomaly.height,
            imageWidth: original.width, imageHeight: original.height, renderHeatmapPNG: render, timings: timings))
    }
}
