import Foundation
import Imaging
import TensorEngine

/// Image -> model input, the same for training, pseudo-anomalies and inference: RGB in [0, 1]
/// resized (Imaging's antialiased bilinear) to the input size, then Imaging's `Preprocess`
/// normalisation (ImageNet mean/std), batched into a tensor.
public enum ImageNormalization {
    public static let mean = Preprocess.imageNetMean
    public static let std = Preprocess.imageNetStd

    /// Decodes an image file as training reads it: a large JPEG through libjpeg's scaled IDCT
    /// down towards width x height (cheaper, and what the daemon does too), anything else at
    /// full size. `planar` then resizes it to the input size.
    public static func decode(contentsOf url: URL, width: Int, height: Int) throws -> RGBImage {
        try ImageDecoder.decode(contentsOf: url, targetSize: ImageSize(width: width, height: height))
    }

    /// An Imaging image resized to the input size, as a planar image in [0, 1].
    public static func planar(_ image: RGBImage, width: Int, height: Int) -> PlanarImage {
        let resized = (image.width == width && image.height == height) ? image : Resize.bilinear(image, width: width, height: height, antialias: true)
        return PlanarImage(width: width, height: height, values: Preprocess.planar(resized))
    }

    /// Planar images in [0, 1], all width x height -> (N, 3, height, width) normalised.
    public static func tensor(_ images: [PlanarImage], width: Int, height: Int) -> Tensor {
        let count = 3 * width * height
        var scalars = [Float](repeating: 0, count: images.count * count)
        scalars.withUnsafeMutableBufferPointer { output in
            for (n, image) in images.enumerated() {
                precondition(image.width == width && image.height == height, "image \(image.width)x\(image.height) is not the input size \(width)x\(height)")
                Preprocess.normalize(planar: image.values, into: output.baseAddress! + n * count)
            }
        }
        return Tensor(shape: [images.count, 3, height, width], scalars: scalars)
    }
}
