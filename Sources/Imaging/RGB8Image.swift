/// An 8-bit RGB image as decoded, `pixels[(y * width + x) * 3 + c]`, for callers that only
/// need resized copies (`Resize.bilinear(_:width:height:)` on it equals resizing `floats()`):
/// a quarter of the float image's memory, and no full-size float pass.
public struct RGB8Image: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "RGB8Image needs a positive size, got \(width)x\(height)")
        precondition(pixels.count == width * height * 3, "RGB8Image \(width)x\(height) needs \(width * height * 3) values, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// v / 255 for every byte: a lookup is exact and avoids a divide per sample.
    static let unit: [Float] = (0..<256).map { Float($0) / 255 }

    /// The float image the decoder would have returned for the same file.
    public func floats() -> RGBImage {
        RGBImage(width: width, height: height, pixels: RGB8Image.unit.withUnsafeBufferPointer { unit in pixels.map { unit[Int($0)] } })
    }
}
