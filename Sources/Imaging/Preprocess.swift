/// Image -> model input, identical for training and inference.
public enum Preprocess {
    /// ImageNet statistics (torchvision's), per RGB channel, for pixels in 0...1.
    public static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imageNetStd: [Float] = [0.229, 0.224, 0.225]

    /// Resizes with `Resize.bilinear` (antialiased) to `width` x `height`, then returns
    /// (3, height, width) CHW values `(pixel - mean) / std`. Gray sources are already
    /// replicated to RGB by the decoder.
    public static func modelInput(_ image: RGBImage, width: Int, height: Int) -> [Float] {
        let resized = Resize.bilinear(image, width: width, height: height, antialias: true)
        let plane = width * height
        var output = [Float](repeating: 0, count: 3 * plane)
        resized.pixels.withUnsafeBufferPointer { hwc in
            output.withUnsafeMutableBufferPointer { chw in
                for c in 0..<3 {
                    let mean = imageNetMean[c], inverseStd = 1 / imageNetStd[c]
                    for i in 0..<plane { chw[c * plane + i] = (hwc[3 * i + c] - mean) * inverseStd }
                }
            }
        }
        return output
    }
}
