import Foundation
import SeededRandom

/// Generated anomaly-source textures, so training works without any texture folder.
///
/// Texture `index` has kind `Kind.allCases[index % 5]` and parameters (colours, scale, angle, ...)
/// drawn from a SplitMix64 generator seeded by `seed` and `index`, so the same index always gives
/// the same texture and neighbouring indices differ.
public struct ProceduralTextureSource: TextureSource, Sendable {
    public enum Kind: CaseIterable, Sendable {
        /// Multi-octave value noise between two colours (stains, blotches).
        case valueNoise
        /// Soft or hard stripes at a random angle and period.
        case stripes
        /// A checkerboard at a random angle and cell size.
        case checker
        /// Voronoi cells with a colour each and darkened borders (cracks, grains).
        case cellular
        /// Thin random line segments over a faint noisy background.
        case scratches
    }

    public let count: Int
    public let seed: UInt64

    public init(count: Int = 500, seed: UInt64 = 0) {
        precondition(count > 0, "a procedural source needs at least one texture")
        self.count = count
        self.seed = seed
    }

    public func kind(at index: Int) -> Kind {
        Kind.allCases[index % Kind.allCases.count]
    }

    public func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage {
        precondition((0..<count).contains(index), "texture index \(index) outside 0..<\(count)")
        precondition(width > 0 && height > 0, "texture size must be positive, got \(width)x\(height)")
        var generator = SplitMix64(state: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index))
        let first = randomColour(using: &generator), second = randomColour(using: &generator)
        // Coverage in 0...1 per pixel, (height, width); the two colours are mixed by it.
        let coverage: [Float]
        switch kind(at: index) {
        case .valueNoise: coverage = valueNoise(width: width, height: height, using: &generator)
        case .stripes: coverage = stripes(width: width, height: height, using: &generator)
        case .checker: coverage = checker(width: width, height: height, using: &generator)
        case .cellular: coverage = cellular(width: width, height: height, using: &generator)
        case .scratches: coverage = scratches(width: width, height: height, using: &generator)
        }
        let plane = width * height
        var values = [Float](repeating: 0, count: 3 * plane)
        for c in 0..<3 {
            for p in 0..<plane {
                values[c * plane + p] = first[c] + coverage[p] * (second[c] - first[c])
            }
        }
        return PlanarImage(width: width, height: height, values: values)
    }

    private func randomColour(using generator: inout SplitMix64) -> [Float] {
        (0..<3).map { _ in Float.random(in: 0...1, using: &generator) }
    }

    private func valueNoise(width: Int, height: Int, using generator: inout SplitMix64) -> [Float] {
        let baseCells = Int.random(in: 2...12, using: &generator)
        let octaves = Int.random(in: 2...5, using: &generator)
        var field = [Float](repeating: 0, count: width * height)
        var amplitude: Float = 1, total: Float = 0, cells = baseCells
        for _ in 0..<octaves {
            let lattice = (0..<((cells + 1) * (cells + 1))).map { _ in Float.random(in: 0...1, using: &generator) }
            for y in 0..<height {
                let fy = Float(y * cells) / Float(height)
                let i = min(Int(fy), cells - 1), ty = smoothstep(fy - Float(i))
                for x in 0..<width {
                    let fx = Float(x * cells) / Float(width)
                    let j = min(Int(fx), cells - 1), tx = smoothstep(fx - Float(j))
                    let p = i * (cells + 1) + j
                    let top = lattice[p] + tx * (lattice[p + 1] - lattice[p])
                    let bottom = lattice[p + cells + 1] + tx * (lattice[p + cells + 2] - lattice[p + cells + 1])
                    field[y * width + x] += amplitude * (top + ty * (bottom - top))
                }
            }
            total += amplitude
            amplitude *= 0.5
            cells *= 2
        }
        return field.map { $0 / total }
    }

    private func stripes(width: Int, height: Int, using generator: inout SplitMix64) -> [Float] {
        let angle = Float.random(in: 0..<Float.pi, using: &generator)
        let period = Float.random(in: 4...Float(max(8, min(width, height) / 4)), using: &generator)
        let sharpness = Float.random(in: 1...12, using: &generator)
        let phase = Float.random(in: 0..<(2 * Float.pi), using: &generator)
        let cosine = cos(angle), sine = sin(angle)
        var field = [Float](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let wave = sin(2 * Float.pi * (Float(x) * cosine + Float(y) * sine) / period + phase)
                field[y * width + x] = 0.5 + 0.5 * tanh(sharpness * wave)
            }
        }
        return field
    }

    private func checker(width: Int, height: Int, using generator: inout SplitMix64) -> [Float] {
        let angle = Float.random(in: 0..<(Float.pi / 2), using: &generator)
        let size = Float.random(in: 4...Float(max(6, min(width, height) / 6)), using: &generator)
        let cosine = cos(angle), sine = sin(angle)
        var field = [Float](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let u = (Float(x) * cosine + Float(y) * sine) / size
                let v = (Float(y) * cosine - Float(x) * sine) / size
                field[y * width + x] = (Int(u.rounded(.down)) + Int(v.rounded(.down))) & 1 == 0 ? 0 : 1
            }
        }
        return field
    }

    private func cellular(width: Int, height: Int, using generator: inout SplitMix64) -> [Float] {
        // One jittered site per grid cell, so each pixel only looks at the 3x3 neighbouring cells.
        let cellSize = Float.random(in: 8...Float(max(10, min(width, height) / 4)), using: &generator)
        let columns = Int((Float(width) / cellSize).rounded(.up)), rows = Int((Float(height) / cellSize).rounded(.up))
        var siteX = [Float](), siteY = [Float](), shade = [Float]()
        for row in 0..<rows {
            for column in 0..<columns {
                siteX.append((Float(column) + Float.random(in: 0..<1, using: &generator)) * cellSize)
                siteY.append((Float(row) + Float.random(in: 0..<1, using: &generator)) * cellSize)
                shade.append(Float.random(in: 0...1, using: &generator))
            }
        }
        let borderWidth = Float.random(in: 0.5...3, using: &generator)
        var field = [Float](repeating: 0, count: width * height)
        for y in 0..<height {
            let row = min(Int(Float(y) / cellSize), rows - 1)
            for x in 0..<width {
                let column = min(Int(Float(x) / cellSize), columns - 1)
                var nearest = Float.infinity, second = Float.infinity, nearestSite = 0
                for r in max(0, row - 1)...min(rows - 1, row + 1) {
                    for c in max(0, column - 1)...min(columns - 1, column + 1) {
                        let site = r * columns + c
                        let dx = siteX[site] - Float(x), dy = siteY[site] - Float(y)
                        let distance = (dx * dx + dy * dy).squareRoot()
                        if distance < nearest {
                            second = nearest; nearest = distance; nearestSite = site
                        } else if distance < second {
                            second = distance
                        }
                    }
                }
                // Near the bisector between the two nearest sites the pixel is border (dark).
                let border = min(1, (second - nearest) / (2 * borderWidth))
                field[y * width + x] = shade[nearestSite] * border
            }
        }
        return field
    }

    private func scratches(width: Int, height: Int, using generator: inout SplitMix64) -> [Float] {
        var field = (0..<(width * height)).map { _ in Float.random(in: 0...0.15, using: &generator) }
        let lineCount = Int.random(in: 8...40, using: &generator)
        let diagonal = Float(width + height)
        for _ in 0..<lineCount {
            var x = Float.random(in: 0..<Float(width), using: &generator)
            var y = Float.random(in: 0..<Float(height), using: &generator)
            var angle = Float.random(in: 0..<(2 * Float.pi), using: &generator)
            let length = Float.random(in: 0.1...0.6, using: &generator) * diagonal
            let radius = Float.random(in: 0.4...1.8, using: &generator)
            let intensity = Float.random(in: 0.6...1, using: &generator)
            let bend = Float.random(in: -0.02...0.02, using: &generator)
            // Walk half a pixel at a time, stamping a disc, with a slight curve.
            for _ in 0..<Int(length * 2) {
                let reach = Int(radius.rounded(.up))
                for py in max(0, Int(y) - reach)...min(height - 1, max(0, Int(y) + reach)) {
                    for px in max(0, Int(x) - reach)...min(width - 1, max(0, Int(x) + reach)) {
                        let dx = Float(px) - x, dy = Float(py) - y
                        if dx * dx + dy * dy <= radius * radius {
                            field[py * width + px] = max(field[py * width + px], intensity)
                        }
                    }
                }
                x += 0.5 * cos(angle)
                y += 0.5 * sin(angle)
                angle += bend
                if x < -1 || y < -1 || x > Float(width) || y > Float(height) { break }
            }
        }
        return field
    }

    @inline(__always) private func smoothstep(_ t: Float) -> Float { t * t * (3 - 2 * t) }
}
