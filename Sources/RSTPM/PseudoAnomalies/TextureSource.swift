import Foundation
import OperatorErrors

/// Where anomaly-source textures come from (the "A" of Eq. 2).
///
/// Implementations here: `GIMPPatternSource` (GIMP `.pat` files) and `ProceduralTextureSource`
/// (generated, needs no files). A source over a folder of PNG/JPEG images belongs beside them once
/// Imaging decodes images: it lists the files at init and decodes and resizes one per call.
public protocol TextureSource {
    /// Number of distinct textures; `texture(at:)` accepts 0..<count.
    var count: Int { get }
    /// Texture `index` at exactly `width` x `height`.
    func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage
}

/// Texture sources that cannot be used, naming the file or folder.
extension OperatorError {
    static func unreadableTextures(path: String, reason: String) -> OperatorError {
        OperatorError(.unreadable, path: path, problem: "cannot read texture source (\(reason))", hint: "check the path and its permissions")
    }

    static func malformedPattern(path: String, reason: String) -> OperatorError {
        OperatorError(.malformed, path: path, problem: "not a GIMP pattern (\(reason))", hint: "remove the file or re-export it from GIMP as .pat")
    }

    static func noPatterns(path: String) -> OperatorError {
        OperatorError(.empty, path: path, problem: "no .pat textures found",
                      hint: "point the texture source at a folder of GIMP patterns (Debian: gimp-data, /usr/share/gimp/2.0/patterns)")
    }
}

/// A texture, 8-bit RGB, at its own size (interleaved: `(y * width + x) * 3 + c`).
public struct GIMPPattern: Sendable {
    public let name: String
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]  // (height, width, 3)

    /// Decodes a GIMP pattern file (docs/devel-docs/pat.txt): big-endian UInt32 header size,
    /// version (1), width, height, bytes per pixel (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), the magic
    /// "GPAT", a NUL-terminated UTF-8 name filling the rest of the header, then the pixels row by row.
    /// Alpha is composited over white (some patterns are black ink whose shape is all in alpha).
    public init(data: Data, path: String) throws {
        let bytes = [UInt8](data)
        func word(_ index: Int) -> Int {
            let o = 4 * index
            return Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
        }
        guard bytes.count >= 24 else {
            throw OperatorError.malformedPattern(path: path, reason: "\(bytes.count) bytes, shorter than the 24-byte header")
        }
        let headerSize = word(0), version = word(1), width = word(2), height = word(3), depth = word(4)
        guard bytes[20..<24].elementsEqual("GPAT".utf8) else {
            throw OperatorError.malformedPattern(path: path, reason: "magic is not GPAT")
        }
        guard version == 1 else {
            throw OperatorError.malformedPattern(path: path, reason: "version \(version), only version 1 is known")
        }
        guard (1...4).contains(depth) else {
            throw OperatorError.malformedPattern(path: path, reason: "\(depth) bytes per pixel, expected 1 to 4")
        }
        guard width > 0, height > 0, width <= 1 << 14, height <= 1 << 14 else {
            throw OperatorError.malformedPattern(path: path, reason: "size \(width)x\(height) out of range")
        }
        guard headerSize >= 24, headerSize + width * height * depth <= bytes.count else {
            throw OperatorError.malformedPattern(
                path: path, reason: "header of \(headerSize) bytes and \(width)x\(height)x\(depth) pixels exceed the file's \(bytes.count) bytes")
        }
        let nameBytes = bytes[24..<headerSize].prefix { $0 != 0 }
        self.name = String(decoding: nameBytes, as: UTF8.self)
        self.width = width
        self.height = height
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        let colourChannels = depth <= 2 ? 1 : 3, hasAlpha = depth == 2 || depth == 4
        for p in 0..<(width * height) {
            let source = headerSize + p * depth
            let alpha = hasAlpha ? Int(bytes[source + depth - 1]) : 255
            for c in 0..<3 {
                let colour = Int(bytes[source + (colourChannels == 1 ? 0 : c)])
                rgb[p * 3 + c] = UInt8((colour * alpha + 255 * (255 - alpha) + 127) / 255)
            }
        }
        self.rgb = rgb
    }

    /// The pattern repeated from the top-left corner to fill `width` x `height`, as GIMP fills with it.
    public func tiled(width targetWidth: Int, height targetHeight: Int) -> PlanarImage {
        let plane = targetWidth * targetHeight
        var values = [Float](repeating: 0, count: 3 * plane)
        for y in 0..<targetHeight {
            let row = (y % height) * width
            for x in 0..<targetWidth {
                let source = (row + x % width) * 3
                for c in 0..<3 { values[c * plane + y * targetWidth + x] = Float(rgb[source + c]) / 255 }
            }
        }
        return PlanarImage(width: targetWidth, height: targetHeight, values: values)
    }
}

/// Every `.pat` file under a folder (recursively, sorted by path), decoded once at init and tiled
/// to the requested size.
public struct GIMPPatternSource: TextureSource, Sendable {
    public let patterns: [GIMPPattern]
    public var count: Int { patterns.count }

    public init(directory: URL) throws {
        let manager = FileManager.default
        guard let enumerator = manager.enumerator(at: directory, includingPropertiesForKeys: nil) else {
            throw OperatorError.unreadableTextures(path: directory.path, reason: "not a readable directory")
        }
        let files = enumerator.compactMap { $0 as? URL }
            .filter { $0.pathExtension.lowercased() == "pat" }
            .sorted { $0.path < $1.path }
        guard !files.isEmpty else { throw OperatorError.noPatterns(path: directory.path) }
        patterns = try files.map { file in
            let data: Data
            do { data = try Data(contentsOf: file) } catch {
                throw OperatorError.unreadableTextures(path: file.path, reason: "\(error)")
            }
            return try GIMPPattern(data: data, path: file.path)
        }
    }

    public init(patterns: [GIMPPattern]) {
        precondition(!patterns.isEmpty, "a pattern source needs at least one pattern")
        self.patterns = patterns
    }

    public func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage {
        precondition(patterns.indices.contains(index), "texture index \(index) outside 0..<\(count)")
        return patterns[index].tiled(width: width, height: height)
    }
}
