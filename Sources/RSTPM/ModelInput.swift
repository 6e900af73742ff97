import Foundation
import Imaging
import TensorEngine

/// One image as the networks take it, and the one way an encoded file gets there: training,
/// `rstpm infer`, `eval` and `classify`, rstpmd and the learning gate all decode through
/// `prepare` (`RSTPMModel.prepare` at a model's input size), so they all see the same input.
public struct ModelInput: Sendable {
    /// ImageNet statistics (torchvision's), per RGB channel, for pixels in 0...1: what the
    /// teachers were trained with, recorded in every bundle's manifest.
    public static let mean: [Float] = [0.485, 0.456, 0.406]
    public static let std: [Float] = [0.229, 0.224, 0.225]

    /// The file's name or path, as errors and verdicts report it.
    public let name: String
    /// The input size.
    public let width: Int
    public let height: Int
    /// (3, height, width) planes of `(pixel - mean) / std`.
    public let values: [Float]
    /// The decoded file at its own precision (8-bit stays bytes), for drawing the heatmap over;
    /// nil for an image made in memory at the input size (training's own images, tests).
    public let original: DecodedImage?

    /// The image's own size: the original's, or the input size for an in-memory image.
    public var imageSize: ImageSize {
        original.map { ImageSize(width: $0.width, height: $0.height) } ?? ImageSize(width: width, height: height)
    }

    /// Decodes `bytes` (PNG, JPEG, BMP or TIFF; `name` is what errors report), resizes it to
    /// `width` x `height` and normalises it. A JPEG at least twice that size in both directions
    /// is decoded a second time through libjpeg's scaled IDCT towards it (cheaper to resize,
    /// and what every model was trained on); the original stays at full size.
    public static func prepare(_ bytes: some ContiguousBytes, name: String, width: Int, height: Int,
                               limits: ImageLimits = .default) throws -> ModelInput {
        let (original, resized) = try decode(bytes, name: name, width: width, height: height, limits: limits)
        return ModelInput(name: name, image: resized, original: original)
    }

    /// An image already at the input size, values in 0...1, normalised.
    public init(name: String = "", image: PlanarImage, original: DecodedImage? = nil) {
        var values = [Float](repeating: 0, count: image.values.count)
        values.withUnsafeMutableBufferPointer { Self.normalize(planar: image.values, into: $0.baseAddress!) }
        self.name = name
        width = image.width
        height = image.height
        self.values = values
        self.original = original
    }

    /// The inputs, all of one size, as one (N, 3, height, width) batch.
    public static func batch(_ inputs: [ModelInput]) -> Tensor {
        guard let first = inputs.first else { return Tensor(shape: [0, 3, 0, 0], scalars: []) }
        var scalars: [Float] = []
        scalars.reserveCapacity(inputs.count * first.values.count)
        for input in inputs {
            precondition(input.width == first.width && input.height == first.height,
                         "input \(input.width)x\(input.height) is not the batch's size \(first.width)x\(first.height)")
            scalars += input.values
        }
        return Tensor(shape: [inputs.count, 3, first.height, first.width], scalars: scalars)
    }

    /// The decoded original and, from it (or from a JPEG's scaled decode, see `prepare`), the
    /// image at the input size in 0...1: what training keeps before pseudo-anomalies are drawn in.
    /// The second decode happens exactly where libjpeg's scaling would shrink the file (at
    /// least half its size still covers the target), so `resized` equals what `decodeResized`
    /// gets from one scaled decode.
    static func decode(_ bytes: some ContiguousBytes, name: String, width: Int, height: Int,
                       limits: ImageLimits) throws -> (original: DecodedImage, resized: PlanarImage) {
        let original = try ImageDecoder.decodeCompact(data: bytes, name: name, limits: limits)
        let isJPEG = bytes.withUnsafeBytes { $0.first == 0xFF }
        let source = isJPEG && (original.width + 1) / 2 >= width && (original.height + 1) / 2 >= height
            ? try ImageDecoder.decodeCompact(data: bytes, name: name, limits: limits, targetSize: ImageSize(width: width, height: height))
            : original
        return (original, PlanarImage(source.resized(width: width, height: height)))
    }

    /// `decode`'s image at the input size alone, for callers that keep no original (training's
    /// images, texture folders): one decode, DCT-scaled by the codec where `decode` decodes twice.
    static func decodeResized(_ bytes: some ContiguousBytes, name: String, width: Int, height: Int,
                              limits: ImageLimits) throws -> PlanarImage {
        let source = try ImageDecoder.decodeCompact(data: bytes, name: name, limits: limits, targetSize: ImageSize(width: width, height: height))
        return PlanarImage(source.resized(width: width, height: height))
    }

    /// CHW planes in 0...1 -> `(value - mean) / std` per channel, written to `output`
    /// (`values.count` floats).
    static func normalize(planar values: [Float], into output: UnsafeMutablePointer<Float>) {
        precondition(values.count % 3 == 0, "normalize: \(values.count) values are not three planes")
        let plane = values.count / 3
        values.withUnsafeBufferPointer { input in
            for c in 0..<3 {
                let mean = mean[c], inverseStd = 1 / std[c]
                for i in (c * plane)..<((c + 1) * plane) { output[i] = (input[i] - mean) * inverseStd }
            }
        }
    }
}

extension PlanarImage {
    /// An Imaging image's HWC pixels as CHW planes, values unchanged.
    public init(_ image: RGBImage) {
        let plane = image.width * image.height
        var values = [Float](repeating: 0, count: 3 * plane)
        image.pixels.withUnsafeBufferPointer { hwc in
            values.withUnsafeMutableBufferPointer { chw in
                for i in 0..<plane { for c in 0..<3 { chw[c * plane + i] = hwc[3 * i + c] } }
            }
        }
        self.init(width: image.width, height: image.height, values: values)
    }
}
