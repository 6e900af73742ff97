import Foundation

/// Anomaly maps rendered for people and for machines.
public enum Heatmap {
    /// The map resized (bilinear) to the image, coloured with turbo over `scale` (values below
    /// the lower bound are deep blue, above the upper dark red), blended over the image with an
    /// opacity that grows with the score (0.2 at the bottom of the scale, 0.7 at the top) so
    /// normal areas stay recognisable; with a `threshold`, the outline of the region above it
    /// is drawn in white, about 1 pixel per 256 of the image's smaller side. Values are
    /// 8-bit levels (k / 255), ready for `PNGEncoder`.
    public static func render(map: [Float], mapWidth: Int, mapHeight: Int, over image: RGBImage,
                              threshold: Float?, scale: ClosedRange<Float>) -> RGBImage {
        let bytes = render8(map: map, mapWidth: mapWidth, mapHeight: mapHeight, over: image, threshold: threshold, scale: scale)
        return RGBImage(width: image.width, height: image.height, pixels: bytes.map { Float($0) / 255 })
    }

    /// `render` as 8-bit RGB (H, W, 3), the form `PNGEncoder.encode(rgb8:)` writes without a
    /// float copy of the figure.
    public static func render8(map: [Float], mapWidth: Int, mapHeight: Int, over image: RGBImage,
                               threshold: Float?, scale: ClosedRange<Float>) -> [UInt8] {
        let width = image.width, height = image.height
        let values = Resize.bilinear(map: map, width: mapWidth, height: mapHeight, toWidth: width, toHeight: height)
        let span = max(scale.upperBound - scale.lowerBound, .leastNormalMagnitude)
        // Table index per unit of score: one multiply per pixel instead of a divide. Finite even
        // for a degenerate scale, so that a score at its bottom gives 0, not 0 * infinity.
        let levelsPerUnit = min(Float(BlendTable.levels - 1) / span, .greatestFiniteMagnitude)
        var bytes = [UInt8](repeating: 0, count: width * height * 3)
        values.withUnsafeBufferPointer { values in
            image.pixels.withUnsafeBufferPointer { base in
                bytes.withUnsafeMutableBufferPointer { out in
                    BlendTable.shared.entries.withUnsafeBufferPointer { table in
                        for i in 0..<width * height {
                            let level = min(max((values[i] - scale.lowerBound) * levelsPerUnit, 0), Float(BlendTable.levels - 1))
                            let entry = table[Int(level + 0.5)]
                            // 255 * ((1 - alpha) * base + alpha * colour), rounded and clamped.
                            func blend(_ base: Float, _ colour: Float) -> UInt8 {
                                UInt8(min(max(entry.keep * base + colour, 0), 255) + 0.5)
                            }
                            out[3 * i] = blend(base[3 * i], entry.red)
                            out[3 * i + 1] = blend(base[3 * i + 1], entry.green)
                            out[3 * i + 2] = blend(base[3 * i + 2], entry.blue)
                        }
                    }
                }
            }
        }
        // Most images of a line are normal: nothing above the threshold, no outline to find.
        if let threshold, values.contains(where: { $0 > threshold }) {
            let outline = self.outline(values, width: width, height: height, threshold: threshold,
                                       radius: max(1, min(width, height) / 256))
            for i in 0..<width * height where outline[i] {
                bytes[3 * i] = 255; bytes[3 * i + 1] = 255; bytes[3 * i + 2] = 255
            }
        }
        return bytes
    }

    /// Turbo colours and opacities at `levels` evenly spaced scale positions, pre-multiplied
    /// and scaled to 0...255: the polynomial per pixel cost more than the rest of the render.
    /// 1024 levels keep the error under half an 8-bit level.
    struct BlendTable: Sendable {
        struct Entry: Sendable {
            /// 255 * (1 - alpha), applied to the image.
            var keep: Float
            /// 255 * alpha * colour.
            var red: Float, green: Float, blue: Float
        }

        static let levels = 1024
        static let shared = BlendTable()
        let entries: [Entry]

        init() {
            entries = (0..<Self.levels).map { level in
                let t = Float(level) / Float(Self.levels - 1)
                let (red, green, blue) = Heatmap.turbo(t)
                let alpha = 0.2 + 0.5 * t
                return Entry(keep: 255 * (1 - alpha), red: 255 * alpha * red, green: 255 * alpha * green, blue: 255 * alpha * blue)
            }
        }
    }

    /// The map as a 16-bit gray PNG at its own resolution: pixel p stands for
    /// `scale.lowerBound + (scale.upperBound - scale.lowerBound) * p / 65535` (values outside
    /// the scale are clamped). The scale is written in tEXt chunks `rstpm.scale.min`,
    /// `rstpm.scale.max` and the formula in `rstpm.scale`.
    public static func raw16(map: [Float], mapWidth: Int, mapHeight: Int, scale: ClosedRange<Float>) throws -> Data {
        precondition(map.count == mapWidth * mapHeight, "map of \(map.count) values is not \(mapWidth)x\(mapHeight)")
        let span = max(scale.upperBound - scale.lowerBound, .leastNormalMagnitude)
        let levels = map.map { value -> UInt16 in
            UInt16(min(max((value - scale.lowerBound) / span, 0), 1) * 65535 + 0.5)
        }
        return try PNGEncoder.encode(gray16: levels, width: mapWidth, height: mapHeight, text: [
            "rstpm.scale.min": "\(scale.lowerBound)",
            "rstpm.scale.max": "\(scale.upperBound)",
            "rstpm.scale": "score = min + (max - min) * pixel / 65535",
        ])
    }

    /// Google's turbo colormap, Mikhailov's polynomial fit (error below 1% of the range).
    public static func turbo(_ t: Float) -> (Float, Float, Float) {
        let x = min(max(t, 0), 1)
        let x2 = x * x, x3 = x2 * x, x4 = x2 * x2, x5 = x4 * x
        let r = 0.13572138 + 4.61539260 * x - 42.66032258 * x2 + 132.13108234 * x3 - 152.94239396 * x4 + 59.28637943 * x5
        let g = 0.09140261 + 2.19418839 * x + 4.84296658 * x2 - 14.18503333 * x3 + 4.27729857 * x4 + 2.82956604 * x5
        let b = 0.10667330 + 12.64194608 * x - 60.58204836 * x2 + 110.36276771 * x3 - 89.90310912 * x4 + 27.34824973 * x5
        return (min(max(r, 0), 1), min(max(g, 0), 1), min(max(b, 0), 1))
    }

    /// Pixels within `radius` (Chebyshev) of a boundary pixel of {value > threshold}; the image
    /// border counts as outside, so a region touching it is closed.
    static func outline(_ values: [Float], width: Int, height: Int, threshold: Float, radius: Int) -> [Bool] {
        func inside(_ x: Int, _ y: Int) -> Bool {
            x >= 0 && y >= 0 && x < width && y < height && values[y * width + x] > threshold
        }
        var edge = [Bool](repeating: false, count: width * height)
        for y in 0..<height {
            for x in 0..<width where inside(x, y) {
                edge[y * width + x] = !inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1)
            }
        }
        var wide = [Bool](repeating: false, count: width * height)
        for y in 0..<height {
            for x in 0..<width where edge[y * width + x] {
                for dx in max(0, x - radius)...min(width - 1, x + radius) { wide[y * width + dx] = true }
            }
        }
        var tall = [Bool](repeating: false, count: width * height)
        for y in 0..<height {
            for x in 0..<width where wide[y * width + x] {
                for dy in max(0, y - radius)...min(height - 1, y + radius) { tall[dy * width + x] = true }
            }
        }
        return tall
    }
}
