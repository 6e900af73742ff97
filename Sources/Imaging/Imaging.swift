// Imaging: pixels in and out of rstpm.
//
// - `ImageDecoder` reads PNG (1/2/4/8/16-bit gray, gray+alpha, palette with tRNS, RGB, RGBA,
//   interlaced) and JPEG (baseline, progressive, grayscale, CMYK/YCCK, Adobe-inverted) through
//   the CImageCodecs shim into an `RGBImage` of floats in 0...1, EXIF orientation applied.
//   Alpha is dropped (as PIL's `convert("RGB")`); gray is replicated to three channels.
// - `Resize` is the one resampler used for training and inference (PIL-like antialiased
//   bilinear); RSTPM's `ModelInput.prepare` turns a file into the normalised CHW model input.
// - `Heatmap` renders anomaly maps for people (turbo colormap over the image, threshold
//   outline) and for machines (16-bit PNG with its scale in tEXt chunks).
// - `PNGEncoder` / `JPEGEncoder` write files for the rest of rstpm.
// Everything is a value type or a stateless function: safe to call from several threads.

import OperatorErrors

/// An RGB image, rows top to bottom, pixels interleaved: `pixels[(y * width + x) * 3 + c]`,
/// (H, W, 3), values in 0...1 (8-bit sources are v / 255, 16-bit sources v / 65535).
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        precondition(width > 0 && height > 0, "RGBImage needs a positive size, got \(width)x\(height)")
        precondition(pixels.count == width * height * 3, "RGBImage \(width)x\(height) needs \(width * height * 3) values, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// An 8-bit single-channel image (H, W), e.g. a ground-truth mask where 0 is good and 255 is
/// defect. `pixels[y * width + x]`.
public struct GrayImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "GrayImage needs a positive size, got \(width)x\(height)")
        precondition(pixels.count == width * height, "GrayImage \(width)x\(height) needs \(width * height) values, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// A width and a height in pixels.
public struct ImageSize: Sendable, Equatable {
    public var width: Int
    public var height: Int

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }
}

/// What the decoder refuses before it allocates anything.
public struct ImageLimits: Sendable, Equatable {
    /// Largest width * height a header may declare.
    public var maxPixels: Int

    public init(maxPixels: Int = 100_000_000) {
        self.maxPixels = maxPixels
    }

    /// 100 megapixels.
    public static let `default` = ImageLimits()
}

extension OperatorError {
    /// An image file that could not be read, decoded or encoded: `detail` is what the codec or
    /// the file system said, e.g. "the file ends early" or "IDAT: CRC error". `path` is the file
    /// path, or the name given to `decode(data:name:)`.
    public static func image(_ kind: Kind, path: String, detail: String) -> OperatorError {
        let (phrase, hint): (String, String)
        switch kind {
        case .unreadable: (phrase, hint) = ("cannot be read", "check that the file exists and is readable by this user")
        case .empty: (phrase, hint) = ("is empty", "the file may still be being copied; retry once the writer has finished")
        case .truncated: (phrase, hint) = ("is truncated", "the file may still be being copied; retry once the writer has finished")
        case .unsupported: (phrase, hint) = ("has an unsupported format", "convert the image to PNG, JPEG, BMP or TIFF")
        case .imageTooLarge: (phrase, hint) = ("is too large", "downscale the image, or raise the pixel limit in the configuration")
        case .outOfMemory: (phrase, hint) = ("does not fit in memory", "free memory or lower the pixel limit")
        case .writeFailed: (phrase, hint) = ("could not be encoded", "this is a bug or a full memory; report it with the image size")
        default: (phrase, hint) = ("is corrupt", "re-export the image from its source; the file is damaged")
        }
        return OperatorError(kind, path: path, problem: "the file \(phrase): \(detail)", hint: hint)
    }
}
