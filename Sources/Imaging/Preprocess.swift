/// Image -> model input, identical for training and inference. The one place that holds the
/// normalisation; RSTPM's `ImageNormalization` batches these for its networks.
public enum Preprocess {
    /// ImageNet statistics (torchvision's), per RGB channel, for pixels in 0...1.
    public static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imageNetStd: [Float] = [0.229, 0.224, 0.225]

    /// Resizes with `Resize.bilinear` (antialiased) to `width` x `height`, then returns
    /// (3, height, width) CHW values `(pixel - mean) / std`. Gray sources are already
    /// replicated to RGB by the decoder.
    public static func modelInput(_ image: RGBImage, width: Int, height: Int) -> [Float] {
        normalized(planar: planar(Resize.bilinear(image, width: width, height: height, antialias: true)))
    }

    /// The image's HWC pixels as CHW planes, values unchanged.
    public static func planar(_ image: RGBImage) -> [Float] {
        let plane = image.width * image.height
        var output = [Float](repeating: 0, count: 3 * plane)
        image.pixels.withUnsafeBufferPointer { hwc in
            output.withUnsafeMutableBufferPointer { chw in
                for i in 0..<plane { for c in 0..<3 { chw[c * plane + i] = hwc[3 * i + c] } }
            }
        }
        return output
    }

    /// CHW planes in 0...1 -> `(value - mean) / std` per channel.
    public static func normalized(planar values: [Float]) -> [Float] {
        var output = [Float](repeating: 0, count: values.count)
        output.withUnsafeMutableBufferPointer { normalize(planar: values, into: $0.baseAddress!) }
        return output
    }

    /// `normalized(planar:)` written to `output` (`values.count` floats): a batch fills its
    /// tensor in place, without a copy per image.
    public static func normalize(planar values: [Float], into output: UnsafeMutablePointer<Float>) {
        precondition(values.count % 3 == 0, "normalize: \(values.count) values are not three planes")
        let plane = values.count / 3
        values.withUnsafeBufferPointer { input in
            for c in 0..<3 {
                let mean = imageNetMean[c], inverseStd = 1 / imageNetStd[c]
                for i in (c * plane)..<((c + 1) * plane) { output[i] = (input[i] - mean) * inverseStd }
            }
        }
    }
}
