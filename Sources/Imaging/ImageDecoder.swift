import CImageCodecs
import Foundation
import OperatorErrors

/// Decodes PNG, JPEG, BMP and TIFF files (told apart by their signature, not their name).
/// BMP and TIFF always come out at 8 bits (16-bit TIFF scaled, see `ic_decode_tiff`).
public enum ImageDecoder {
    /// The file name extensions of the formats above (lower case), for the callers that list
    /// folders by name: training, `eval`, `infer`.
    public static let fileExtensions: Set<String> = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"]

    /// Whether `url`'s extension names a format above (any case).
    public static func hasImageExtension(_ url: URL) -> Bool {
        fileExtensions.contains(url.pathExtension.lowercased())
    }

    /// Reads and decodes `url`. `targetSize` (the size the caller will resize to) lets a large
    /// JPEG decode at 1/2, 1/4 or 1/8 scale via libjpeg's DCT scaling, never below the target;
    /// the result is then larger than or equal to `targetSize`, not equal to it.
    public static func decode(contentsOf url: URL, limits: ImageLimits = .default, targetSize: ImageSize? = nil) throws -> RGBImage {
        try decode(data: read(url), name: url.path, limits: limits, targetSize: targetSize)
    }

    /// Decodes bytes already in memory; `name` is what errors report as the path.
    public static func decode(data: Data, name: String, limits: ImageLimits = .default, targetSize: ImageSize? = nil) throws -> RGBImage {
        try decodeRaw(data: data, name: name, limits: limits, targetSize: targetSize).rgb()
    }

    /// Decodes bytes in memory at the file's own precision: 8-bit files stay bytes (no
    /// full-size float image), 16-bit files become floats. For callers that only resize.
    public static func decodeCompact(data: some ContiguousBytes, name: String, limits: ImageLimits = .default, targetSize: ImageSize? = nil) throws -> DecodedImage {
        let buffer = try decodeRaw(data: data, name: name, limits: limits, targetSize: targetSize)
        return buffer.image.bit_depth == 8 ? .bytes(buffer.rgb8()) : .floats(buffer.rgb())
    }

    /// Decodes a mask (0 = good, 255 = defect, as MVTec AD's `*_mask.png`) to 8 bits per pixel.
    /// A colour mask keeps the brightest channel; 16-bit masks keep the high byte.
    public static func decodeMask(contentsOf url: URL, limits: ImageLimits = .default) throws -> GrayImage {
        try decodeMask(data: read(url), name: url.path, limits: limits)
    }

    public static func decodeMask(data: Data, name: String, limits: ImageLimits = .default) throws -> GrayImage {
        try decodeRaw(data: data, name: name, limits: limits, targetSize: nil).gray()
    }

    /// The file's bytes, or an `.unreadable` error naming it.
    public static func read(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw OperatorError.image(.unreadable, path: url.path, detail: (error as NSError).localizedDescription)
        }
    }

    static func decodeRaw(data: some ContiguousBytes, name: String, limits: ImageLimits, targetSize: ImageSize?) throws -> DecodedBuffer {
        if data.withUnsafeBytes(\.isEmpty) { throw OperatorError.image(.empty, path: name, detail: "the file has zero bytes") }
        var options = ic_decode_options(
            max_pixels: UInt64(max(limits.maxPixels, 0)),
            target_width: Int32(clamping: targetSize?.width ?? 0),
            target_height: Int32(clamping: targetSize?.height ?? 0),
            png_decoder: Int32(IC_PNG_AUTO.rawValue))
        let buffer = DecodedBuffer()
        var message = [CChar](repeating: 0, count: 256)
        let status: Int32 = data.withUnsafeBytes { bytes in
            let base = bytes.bindMemory(to: UInt8.self).baseAddress!
            if bytes.count >= 1 && base[0] == 0x89 {
                return ic_decode_png(base, bytes.count, &options, &buffer.image, &message, message.count)
            }
            if bytes.count >= 1 && base[0] == 0xFF {
                return ic_decode_jpeg(base, bytes.count, &options, &buffer.image, &message, message.count)
            }
            if bytes.count >= 2 && base[0] == UInt8(ascii: "B") && base[1] == UInt8(ascii: "M") {
                return ic_decode_bmp(base, bytes.count, &options, &buffer.image, &message, message.count)
            }
            if bytes.count >= 2 && ((base[0] == UInt8(ascii: "I") && base[1] == UInt8(ascii: "I")) || (base[0] == UInt8(ascii: "M") && base[1] == UInt8(ascii: "M"))) {
                return ic_decode_tiff(base, bytes.count, &options, &buffer.image, &message, message.count)
            }
            return -1
        }
        if status == -1 {
            let head = data.withUnsafeBytes { $0.prefix(8) }.map { String(format: "%02x", $0) }.joined(separator: " ")
            throw OperatorError.image(.unsupported, path: name, detail: "not a PNG, JPEG, BMP or TIFF file (starts with \(head))")
        }
        if status != Int32(IC_OK.rawValue) {
            let detail = String(cString: message)
            throw OperatorError.image(kind(status, declared: buffer.image), path: name, detail: detail.isEmpty ? "the codec gave no reason" : detail)
        }
        return buffer
    }

    /// The kind of a codec failure; a refused size is the one the header declares (the shim
    /// leaves it in the image's width and height).
    static func kind(_ status: Int32, declared: ic_image) -> OperatorError.Kind {
        switch UInt32(status) {
        case IC_ERR_EMPTY.rawValue: return .empty
        case IC_ERR_TRUNCATED.rawValue: return .truncated
        case IC_ERR_UNSUPPORTED.rawValue: return .unsupported
        case IC_ERR_TOO_LARGE.rawValue: return .imageTooLarge(width: Int(declared.width), height: Int(declared.height))
        case IC_ERR_NO_MEMORY.rawValue: return .outOfMemory
        default: return .malformed
        }
    }
}

/// The shim's output: interleaved 1 or 3 channels at 8 or 16 bits, orientation not applied.
final class DecodedBuffer {
    var image = ic_image()

    deinit { ic_image_free(&image) }

    func rgb() -> RGBImage {
        let width = Int(image.width), height = Int(image.height), channels = Int(image.channels)
        let count = width * height
        var pixels = [Float](repeating: 0, count: count * 3)
        pixels.withUnsafeMutableBufferPointer { out in
            if image.bit_depth == 8 {
                let source = image.pixels.assumingMemoryBound(to: UInt8.self)
                RGB8Image.unit.withUnsafeBufferPointer { unit in
                    if channels == 3 {
                        for i in 0..<count * 3 { out[i] = unit[Int(source[i])] }
                    } else {
                        for i in 0..<count {
                            let v = unit[Int(source[i])]
                            out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
                        }
                    }
                }
            } else {
                let source = image.pixels.assumingMemoryBound(to: UInt16.self)
                let scale: Float = 1 / 65535
                if channels == 3 {
                    for i in 0..<count * 3 { out[i] = Float(source[i]) * scale }
                } else {
                    for i in 0..<count {
                        let v = Float(source[i]) * scale
                        out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
                    }
                }
            }
        }
        let (orientedWidth, orientedHeight, oriented) = Orientation.apply(
            Int(image.orientation), pixels: pixels, width: width, height: height, channels: 3)
        return RGBImage(width: orientedWidth, height: orientedHeight, pixels: oriented)
    }

    /// An 8-bit buffer as RGB bytes (gray replicated), orientation applied.
    func rgb8() -> RGB8Image {
        precondition(image.bit_depth == 8, "rgb8() needs an 8-bit decode, got \(image.bit_depth) bits")
        let width = Int(image.width), height = Int(image.height), count = width * height
        let source = image.pixels.assumingMemoryBound(to: UInt8.self)
        let pixels: [UInt8]
        if image.channels == 3 {
            pixels = Array(UnsafeBufferPointer(start: source, count: count * 3))
        } else {
            pixels = [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
                for i in 0..<count { let v = source[i]; out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v }
                initialized = count * 3
            }
        }
        let (orientedWidth, orientedHeight, oriented) = Orientation.apply(
            Int(image.orientation), pixels: pixels, width: width, height: height, channels: 3)
        return RGB8Image(width: orientedWidth, height: orientedHeight, pixels: oriented)
    }

    func gray() -> GrayImage {
        let width = Int(image.width), height = Int(image.height), channels = Int(image.channels)
        let count = width * height
        var pixels = [UInt8](repeating: 0, count: count)
        pixels.withUnsafeMutableBufferPointer { out in
            for i in 0..<count {
                var value: UInt8 = 0
                for c in 0..<channels {
                    let sample: UInt8 = image.bit_depth == 8
                        ? image.pixels.assumingMemoryBound(to: UInt8.self)[i * channels + c]
                        : UInt8(image.pixels.assumingMemoryBound(to: UInt16.self)[i * channels + c] >> 8)
                    value = max(value, sample)
                }
                out[i] = value
            }
        }
        let (orientedWidth, orientedHeight, oriented) = Orientation.apply(
            Int(image.orientation), pixels: pixels, width: width, height: height, channels: 1)
        return GrayImage(width: orientedWidth, height: orientedHeight, pixels: oriented)
    }
}

/// EXIF orientation (1...8) turned into the upright image, as PIL's `ImageOps.exif_transpose`.
enum Orientation {
    static func apply<T>(_ orientation: Int, pixels: [T], width: Int, height: Int, channels: Int) -> (Int, Int, [T]) {
        guard orientation >= 2 && orientation <= 8 else { return (width, height, pixels) }
        let swaps = orientation >= 5
        let outWidth = swaps ? height : width, outHeight = swaps ? width : height
        var out = pixels
        pixels.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { destination in
                for y in 0..<outHeight {
                    for x in 0..<outWidth {
                        // (sx, sy): the source pixel shown at (x, y).
                        let sx: Int, sy: Int
                        switch orientation {
                        case 2: (sx, sy) = (width - 1 - x, y)
                        case 3: (sx, sy) = (width - 1 - x, height - 1 - y)
                        case 4: (sx, sy) = (x, height - 1 - y)
                        case 5: (sx, sy) = (y, x)
                        case 6: (sx, sy) = (y, height - 1 - x)
                        case 7: (sx, sy) = (width - 1 - y, height - 1 - x)
                        default: (sx, sy) = (width - 1 - y, x)
                        }
                        let d = (y * outWidth + x) * channels, s = (sy * width + sx) * channels
                        for c in 0..<channels { destination[d + c] = source[s + c] }
                    }
                }
            }
        }
        return (outWidth, outHeight, out)
    }
}
