/// An RGB image as the pseudo-anomaly generator sees it: planar channel-height-width Float
/// values in [0, 1], `values[(c * height + y) * width + x]`.
///
/// A small type of this folder's own; the RSTPM pipeline bridges it to Imaging's image type.
public struct PlanarImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// Always 3 (RGB).
    public var channels: Int { 3 }
    public var values: [Float]  // (3, height, width)

    public init(width: Int, height: Int, values: [Float]) {
        precondition(width > 0 && height > 0, "image size must be positive, got \(width)x\(height)")
        precondition(values.count == 3 * width * height,
                     "a \(width)x\(height) RGB image needs \(3 * width * height) values, got \(values.count)")
        self.width = width
        self.height = height
        self.values = values
    }

    /// A uniform image of one grey level.
    public init(width: Int, height: Int, repeating value: Float) {
        self.init(width: width, height: height, values: [Float](repeating: value, count: 3 * width * height))
    }

    /// Builds the image from 8-bit planar values (0...255 -> 0...1).
    public init(width: Int, height: Int, bytes: [UInt8]) {
        self.init(width: width, height: height, values: bytes.map { Float($0) / 255 })
    }

    /// The values quantised to 8 bits (rounded, clamped), planar as `values`.
    public var bytes: [UInt8] {
        values.map { UInt8(clamping: Int(($0 * 255).rounded())) }
    }

    public subscript(channel: Int, y: Int, x: Int) -> Float {
        get { values[(channel * height + y) * width + x] }
        set { values[(channel * height + y) * width + x] = newValue }
    }
}
