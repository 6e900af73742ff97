import CImageCodecs
import Foundation
import OperatorErrors

/// PNG files: 8-bit RGB or gray, 16-bit gray, with optional tEXt chunks (sorted by key).
public enum PNGEncoder {
    /// How hard deflate works: `.compact` is libpng's default; `.fast` (libdeflate level 1, SUB filter) is for
    /// files written on a hot path, such as the daemon's heatmaps.
    public enum Compression: Sendable {
        case compact, fast
    }

    /// 8-bit RGB; values in 0...1 are rounded to the nearest of 256 levels.
    public static func encode(_ image: RGBImage, text: [String: String] = [:], compression: Compression = .compact) throws -> Data {
        let bytes = quantize(image.pixels)
        return try encode(bytes: bytes, width: image.width, height: image.height, channels: 3, bitDepth: 8, text: text,
                          compression: compression)
    }

    /// 8-bit RGB already quantised, (H, W, 3), e.g. `Heatmap.render8`.
    public static func encode(rgb8: [UInt8], width: Int, height: Int, text: [String: String] = [:],
                              compression: Compression = .compact) throws -> Data {
        precondition(rgb8.count == width * height * 3, "\(rgb8.count) values are not \(width)x\(height)x3")
        return try encode(bytes: rgb8, width: width, height: height, channels: 3, bitDepth: 8, text: text, compression: compression)
    }

    /// 8-bit gray, (H, W).
    public static func encode(gray: [UInt8], width: Int, height: Int, text: [String: String] = [:],
                              compression: Compression = .compact) throws -> Data {
        precondition(gray.count == width * height, "\(gray.count) values are not \(width)x\(height)")
        return try encode(bytes: gray, width: width, height: height, channels: 1, bitDepth: 8, text: text, compression: compression)
    }

    /// 16-bit gray, (H, W).
    public static func encode(gray16: [UInt16], width: Int, height: Int, text: [String: String] = [:]) throws -> Data {
        precondition(gray16.count == width * height, "\(gray16.count) values are not \(width)x\(height)")
        return try encode(bytes: gray16, width: width, height: height, channels: 1, bitDepth: 16, text: text)
    }

    static func encode<T>(bytes: [T], width: Int, height: Int, channels: Int, bitDepth: Int, text: [String: String],
                          compression: Compression = .compact) throws -> Data {
        let entries = text.sorted { $0.key < $1.key }
        let keys = entries.map { strdup($0.key) }, values = entries.map { strdup($0.value) }
        defer { (keys + values).forEach { free($0) } }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = keys.map { UnsafePointer($0) }.withUnsafeBufferPointer { keyPointers in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { valuePointers in
                bytes.withUnsafeBytes { pixels in
                    ic_encode_png(pixels.baseAddress, Int32(width), Int32(height), Int32(channels), Int32(bitDepth),
                                  compression == .fast ? 1 : 0,
                                  keyPointers.baseAddress, valuePointers.baseAddress, Int32(entries.count),
                                  &out, &size, &message, message.count)
                }
            }
        }
        return try take(status: status, out: out, size: size, message: message, format: "PNG")
    }
}

/// JPEG files (baseline or progressive), 8-bit RGB or gray; quality 90 and above keeps colour at
/// full resolution (4:4:4), below it libjpeg's default 4:2:0.
public enum JPEGEncoder {
    public static func encode(_ image: RGBImage, quality: Int = 90, progressive: Bool = false) throws -> Data {
        try encode(bytes: quantize(image.pixels), width: image.width, height: image.height, channels: 3,
                   quality: quality, progressive: progressive)
    }

    public static func encode(gray: [UInt8], width: Int, height: Int, quality: Int = 90, progressive: Bool = false) throws -> Data {
        precondition(gray.count == width * height, "\(gray.count) values are not \(width)x\(height)")
        return try encode(bytes: gray, width: width, height: height, channels: 1, quality: quality, progressive: progressive)
    }

    static func encode(bytes: [UInt8], width: Int, height: Int, channels: Int, quality: Int, progressive: Bool) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = ic_encode_jpeg(bytes, Int32(width), Int32(height), Int32(channels), Int32(quality),
                                    progressive ? 1 : 0, &out, &size, &message, message.count)
        return try take(status: status, out: out, size: size, message: message, format: "JPEG")
    }
}

/// 0...1 -> 0...255, rounded, clamped.
func quantize(_ values: [Float]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: values.count)
    values.withUnsafeBufferPointer { source in
        bytes.withUnsafeMutableBufferPointer { destination in
            for i in 0..<source.count {
                destination[i] = UInt8(min(max(source[i] * 255 + 0.5, 0), 255))
            }
        }
    }
    return bytes
}

private func take(status: Int32, out: UnsafeMutablePointer<UInt8>?, size: Int, message: [CChar], format: String) throws -> Data {
    guard status == Int32(IC_OK.rawValue), let out else {
        throw OperatorError.image(.writeFailed, path: "<\(format) encoder>", detail: String(cString: message))
    }
    defer { ic_buffer_free(out) }
    return Data(bytes: out, count: size)
}
