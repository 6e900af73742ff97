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

/// A file that could not be read, decoded or encoded: which file, what was wrong, what to do.
public struct ImageError: OperatorError, Sendable, Equatable {
    public enum Reason: String, Sendable, Equatable {
        case unreadable = "cannot be read"
        case empty = "is empty"
        case truncated = "is truncated"
        case corrupt = "is corrupt"
        case unsupported = "has an unsupported format"
        case tooLarge = "is too large"
        case outOfMemory = "does not fit in memory"
        case encodingFailed = "could not be encoded"
    }

    /// The file path, or the name given to `decode(data:name:)`.
    public let path: String
    public let reason: Reason
    /// What the codec said, e.g. "the file ends early" or "IDAT: CRC error".
    public let detail: String
    /// The width and height the header declares, when the file is refused as `.tooLarge`.
    public let declaredSize: ImageSize?

    public init(path: String, reason: Reason, detail: String, declaredSize: ImageSize? = nil) {
        self.path = path
        self.reason = reason
        self.detail = detail
        self.declaredSize = declaredSize
    }

    /// What an operator can do about it.
    public var hint: String {
        switch reason {
        case .unreadable: return "check that the file exists and is readable by this user"
        case .empty, .truncated: return "the file may still be being copied; retry once the writer has finished"
        case .corrupt: return "re-export the image from its source; the file is damaged"
        case .unsupported: return "convert the image to PNG, JPEG, BMP or TIFF"
        case .tooLarge: return "downscale the image, or raise the pixel limit in the configuration"
        case .outOfMemory: return "free memory or lower the pixel limit"
        case .encodingFailed: return "this is a bug or a full memory; report it with the image size"
        }
    }

    public var problem: String { "the file \(reason.rawValue): \(detail)" }
}
