import Imaging
import TensorEngine

/// Image -> model input, the same for training, pseudo-anomalies and inference: RGB in [0, 1]
/// resized (Imaging's antialiased bilinear) to the input size, ImageNet mean/std normalisation.
public enum ImageNormalization {
    public static let mean = Preprocess.imageNetMean
    public static let std = Preprocess.imageNetStd

    /// An Imaging image resized to the input size, as a planar image in [0, 1].
    public static func planar(_ image: RGBImage, width: Int, height: Int) -> PlanarImage {
        let resized = (image.width == width && image.height == height) ? image : Resize.bilinear(image, width: width, height: height, antialias: true)
        let plane = width * height
        var values = [Float](repeating: 0, count: 3 * plane)
        for i in 0..<plane { for c in 0..<3 { values[c * plane + i] = resized.pixels[3 * i + c] } }
        return PlanarImage(width: width, height: height, values: values)
    }

    /// Planar images in [0, 1], all width x height -> (N, 3, height, width) normalised.
    public static func tensor(_ images: [PlanarImage], width: Int, height: Int) -> Tensor {
        let plane = width * height
        var scalars = [Float](repeating: 0, count: images.count * 3 * plane)
        for (n, image) in images.enumerated() {
            precondition(image.width == width && image.height == height, "image \(image.width)x\(image.height) is not the input size \(width)x\(height)")
            for c in 0..<3 {
                let (m, inverse) = (mean[c], 1 / std[c])
                let base = (n * 3 + c) * plane
                for i in 0..<plane { scalars[base + i] = (image.values[c * plane + i] - m) * inverse }
            }
        }
        return Tensor(shape: [images.count, 3, height, width], scalars: scalars)
    }
}
