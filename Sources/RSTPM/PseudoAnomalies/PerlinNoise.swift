import Foundation

/// Binary masks from 2D Perlin noise, the shape of DRAEM's pseudo-anomalies (method.md, Eq. 2).
///
/// Gradient noise on a lattice of `cellsAlongHeight x cellsAlongWidth` cells with random unit
/// gradients at the lattice points, faded with 6t^5 - 15t^4 + 10t^3 and scaled by sqrt(2), as
/// DRAEM's `rand_perlin_2d_np`. Lattice coordinates are `y * cells / height`, so any image size
/// works (no power of two and no divisibility needed). The noise is then rotated about the image
/// centre with bilinear sampling and a constant 0 outside, as imgaug's `Affine(rotate:)` with its
/// defaults (order 1, mode "constant", cval 0), and thresholded: rotated-in corners are never
/// anomalous.
public enum PerlinNoise {
    /// Noise values above this become mask 1.
    public static let threshold: Float = 0.5
    /// The lattice has 2^a x 2^b cells with a, b drawn uniformly from this range (DRAEM: 0 to 6 exclusive).
    public static let scaleExponents: ClosedRange<Int> = 0...5
    /// The noise is rotated by an angle drawn uniformly from this range, in degrees.
    public static let rotationDegrees: ClosedRange<Float> = -90...90

    /// A random mask as DRAEM draws it: a, b, then the lattice gradients, then the angle.
    /// Returns (height, width) values, each exactly 0 or 1.
    public static func mask(width: Int, height: Int, using generator: inout some RandomNumberGenerator) -> [Float] {
        let exponentAlongHeight = Int.random(in: scaleExponents, using: &generator)
        let exponentAlongWidth = Int.random(in: scaleExponents, using: &generator)
        let field = noise(width: width, height: height,
                          cellsAlongWidth: 1 << exponentAlongWidth, cellsAlongHeight: 1 << exponentAlongHeight,
                          using: &generator)
        let degrees = Float.random(in: rotationDegrees, using: &generator)
        return binarised(rotated(field, width: width, height: height, degrees: degrees))
    }

    /// A mask with a given lattice and angle (the gradients still come from `generator`).
    public static func mask(width: Int, height: Int, cellsAlongWidth: Int, cellsAlongHeight: Int, degrees: Float,
                            using generator: inout some RandomNumberGenerator) -> [Float] {
        let field = noise(width: width, height: height,
                          cellsAlongWidth: cellsAlongWidth, cellsAlongHeight: cellsAlongHeight, using: &generator)
        return binarised(rotated(field, width: width, height: height, degrees: degrees))
    }

    /// Perlin noise, (height, width), roughly in [-1, 1]; the gradients' angles are drawn row-major
    /// over the (cellsAlongHeight + 1) x (cellsAlongWidth + 1) lattice points.
    public static func noise(width: Int, height: Int, cellsAlongWidth: Int, cellsAlongHeight: Int,
                             using generator: inout some RandomNumberGenerator) -> [Float] {
        precondition(width > 0 && height > 0, "noise size must be positive, got \(width)x\(height)")
        precondition(cellsAlongWidth > 0 && cellsAlongHeight > 0, "the lattice needs at least one cell per axis")
        let latticeWidth = cellsAlongWidth + 1
        var gradientAlongHeight = [Float](repeating: 0, count: (cellsAlongHeight + 1) * latticeWidth)
        var gradientAlongWidth = gradientAlongHeight
        for i in 0..<gradientAlongHeight.count {
            let angle = 2 * Float.pi * Float.random(in: 0..<1, using: &generator)
            gradientAlongHeight[i] = cos(angle)
            gradientAlongWidth[i] = sin(angle)
        }
        // Per column: lattice cell, offset inside it, and its fade (shared by all rows).
        let columnCell = (0..<width).map { min(Int(Float($0 * cellsAlongWidth) / Float(width)), cellsAlongWidth - 1) }
        let columnOffset = (0..<width).map { Float($0 * cellsAlongWidth) / Float(width) - Float(columnCell[$0]) }
        let columnFade = columnOffset.map(fade)
        var field = [Float](repeating: 0, count: width * height)
        field.withUnsafeMutableBufferPointer { out in
            for y in 0..<height {
                let position = Float(y * cellsAlongHeight) / Float(height)
                let i = min(Int(position), cellsAlongHeight - 1)
                let u = position - Float(i), t = fade(u)
                for x in 0..<width {
                    let j = columnCell[x], v = columnOffset[x]
                    let p00 = i * latticeWidth + j, p10 = p00 + latticeWidth
                    let n00 = gradientAlongHeight[p00] * u + gradientAlongWidth[p00] * v
                    let n10 = gradientAlongHeight[p10] * (u - 1) + gradientAlongWidth[p10] * v
                    let n01 = gradientAlongHeight[p00 + 1] * u + gradientAlongWidth[p00 + 1] * (v - 1)
                    let n11 = gradientAlongHeight[p10 + 1] * (u - 1) + gradientAlongWidth[p10 + 1] * (v - 1)
                    let n0 = n00 + t * (n10 - n00), n1 = n01 + t * (n11 - n01)
                    let blended: Float = n0 + columnFade[x] * (n1 - n0)
                    out[y * width + x] = Float(2).squareRoot() * blended
                }
            }
        }
        return field
    }

    /// `field` (height, width) rotated by `degrees` about the image centre; bilinear, 0 outside.
    public static func rotated(_ field: [Float], width: Int, height: Int, degrees: Float) -> [Float] {
        precondition(field.count == width * height, "field has \(field.count) values, expected \(width)x\(height)")
        let radians = degrees * Float.pi / 180
        let cosine = cos(radians), sine = sin(radians)
        let centreX = Float(width - 1) / 2, centreY = Float(height - 1) / 2
        var out = [Float](repeating: 0, count: width * height)
        field.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { destination in
                // Taps outside the image read 0, as a constant border.
                @inline(__always) func tap(_ x: Int, _ y: Int) -> Float {
                    (x >= 0 && x < width && y >= 0 && y < height) ? source[y * width + x] : 0
                }
                for y in 0..<height {
                    let dy = Float(y) - centreY
                    for x in 0..<width {
                        // Inverse map: where in the source this output pixel comes from.
                        let dx = Float(x) - centreX
                        let sourceX = cosine * dx + sine * dy + centreX
                        let sourceY = -sine * dx + cosine * dy + centreY
                        let x0f = sourceX.rounded(.down), y0f = sourceY.rounded(.down)
                        guard x0f >= -1, y0f >= -1, x0f < Float(width), y0f < Float(height) else { continue }
                        let x0 = Int(x0f), y0 = Int(y0f)
                        let fx = sourceX - x0f, fy = sourceY - y0f
                        let top = tap(x0, y0) + fx * (tap(x0 + 1, y0) - tap(x0, y0))
                        let bottom = tap(x0, y0 + 1) + fx * (tap(x0 + 1, y0 + 1) - tap(x0, y0 + 1))
                        destination[y * width + x] = top + fy * (bottom - top)
                    }
                }
            }
        }
        return out
    }

    private static func binarised(_ field: [Float]) -> [Float] {
        field.map { $0 > threshold ? 1 : 0 }
    }

    @inline(__always) private static func fade(_ t: Float) -> Float {
        t * t * t * (t * (t * 6 - 15) + 10)
    }
}
