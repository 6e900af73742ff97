/// The seven photometric augmentations applied to an anomaly-source texture (method.md, Eq. 2),
/// with the semantics of PIL's `ImageOps` / `ImageEnhance` on 8-bit RGB: the texture is quantised
/// to 8 bits, transformed with PIL's integer rules (lookup tables, truncating blends, the 3x3
/// SMOOTH filter with untouched border pixels) and brought back to [0, 1], so results equal PIL's
/// exactly on 8-bit inputs.
///
/// Parameter ranges of `random(_:using:)` (imgaug's `pillike` defaults unless DRAEM sets one):
/// posterize bits 1...8 (`iaa.Posterize`), sharpness factor 0...2, solarize threshold 32...128
/// (DRAEM's `iaa.Solarize`, applied always instead of with p = 0.5), brightness factor 0.5...1.5,
/// color (saturation) factor 0...3, autocontrast cutoff 0...20 percent (integer). DRAEM's own list
/// also holds gamma, hue, invert and rotation; the paper names these seven only.
public enum TextureAugmentation: Equatable, Sendable {
    /// Keeps the top `bits` bits of each value (`ImageOps.posterize`).
    case posterize(bits: Int)
    /// Blends the image with its SMOOTH-filtered copy (`ImageEnhance.Sharpness`): 0 blurred, 1 unchanged.
    case sharpness(factor: Float)
    /// Inverts values at or above `threshold` (`ImageOps.solarize`).
    case solarize(threshold: Int)
    /// Per-channel histogram equalisation (`ImageOps.equalize`).
    case equalize
    /// Scales the values (`ImageEnhance.Brightness`): 0 black, 1 unchanged.
    case brightness(factor: Float)
    /// Blends with the image's luma (`ImageEnhance.Color`): 0 grey, 1 unchanged.
    case color(factor: Float)
    /// Per-channel stretch to 0...255 after cutting `cutoffPercent` of the darkest and lightest values
    /// (`ImageOps.autocontrast`).
    case autocontrast(cutoffPercent: Int)

    public enum Kind: CaseIterable, Sendable {
        case posterize, sharpness, solarize, equalize, brightness, color, autocontrast
    }

    public var kind: Kind {
        switch self {
        case .posterize: return .posterize
        case .sharpness: return .sharpness
        case .solarize: return .solarize
        case .equalize: return .equalize
        case .brightness: return .brightness
        case .color: return .color
        case .autocontrast: return .autocontrast
        }
    }

    /// An augmentation of `kind` with its parameter drawn from the documented range.
    public static func random(_ kind: Kind, using generator: inout some RandomNumberGenerator) -> TextureAugmentation {
        switch kind {
        case .posterize: return .posterize(bits: Int.random(in: 1...8, using: &generator))
        case .sharpness: return .sharpness(factor: Float.random(in: 0...2, using: &generator))
        case .solarize: return .solarize(threshold: Int.random(in: 32...128, using: &generator))
        case .equalize: return .equalize
        case .brightness: return .brightness(factor: Float.random(in: 0.5...1.5, using: &generator))
        case .color: return .color(factor: Float.random(in: 0...3, using: &generator))
        case .autocontrast: return .autocontrast(cutoffPercent: Int.random(in: 0...20, using: &generator))
        }
    }

    /// `count` distinct kinds in random order, each with random parameters (DRAEM draws 3).
    public static func randomSequence(count: Int, using generator: inout some RandomNumberGenerator) -> [TextureAugmentation] {
        precondition((0...Kind.allCases.count).contains(count), "cannot draw \(count) of \(Kind.allCases.count) augmentations")
        var kinds = Kind.allCases
        // Partial Fisher-Yates: the first `count` entries are a uniform draw without replacement.
        for i in 0..<count {
            kinds.swapAt(i, Int.random(in: i..<kinds.count, using: &generator))
        }
        return kinds.prefix(count).map { random($0, using: &generator) }
    }

    /// The image, quantised to 8 bits, with this augmentation applied.
    public func applied(to image: PlanarImage) -> PlanarImage {
        var bytes = image.bytes
        apply(toPlanarBytes: &bytes, width: image.width, height: image.height)
        return PlanarImage(width: image.width, height: image.height, bytes: bytes)
    }

    /// Applies the augmentation in place to planar 8-bit RGB, (3, height, width).
    public func apply(toPlanarBytes bytes: inout [UInt8], width: Int, height: Int) {
        let plane = width * height
        precondition(bytes.count == 3 * plane, "expected \(3 * plane) planar RGB bytes, got \(bytes.count)")
        switch self {
        case .posterize(let bits):
            precondition((1...8).contains(bits), "posterize keeps 1...8 bits, got \(bits)")
            let keep = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            for i in bytes.indices { bytes[i] &= keep }
        case .solarize(let threshold):
            for i in bytes.indices where Int(bytes[i]) >= threshold { bytes[i] = 255 - bytes[i] }
        case .equalize:
            for channel in 0..<3 {
                let range = channel * plane..<(channel + 1) * plane
                let table = Self.equalizeTable(histogram: Self.histogram(bytes[range]))
                for i in range { bytes[i] = table[Int(bytes[i])] }
            }
        case .autocontrast(let cutoffPercent):
            for channel in 0..<3 {
                let range = channel * plane..<(channel + 1) * plane
                let table = Self.autocontrastTable(histogram: Self.histogram(bytes[range]), cutoffPercent: cutoffPercent)
                for i in range { bytes[i] = table[Int(bytes[i])] }
            }
        case .brightness(let factor):
            // Blend with black.
            for i in bytes.indices { bytes[i] = Self.blend(0, bytes[i], factor) }
        case .color(let factor):
            // Blend with the ITU-R 601 luma, in PIL's 16-bit fixed point.
            for p in 0..<plane {
                let red: Int = Int(bytes[p]) * 19595
                let green: Int = Int(bytes[plane + p]) * 38470
                let blue: Int = Int(bytes[2 * plane + p]) * 7471
                let luma = UInt8((red + green + blue + 0x8000) >> 16)
                for channel in 0..<3 { bytes[channel * plane + p] = Self.blend(luma, bytes[channel * plane + p], factor) }
            }
        case .sharpness(let factor):
            let smooth = Self.smoothed(bytes, width: width, height: height)
            for i in bytes.indices { bytes[i] = Self.blend(smooth[i], bytes[i], factor) }
        }
    }

    // MARK: PIL's integer rules

    private static func histogram(_ values: ArraySlice<UInt8>) -> [Int] {
        var counts = [Int](repeating: 0, count: 256)
        for value in values { counts[Int(value)] += 1 }
        return counts
    }

    /// `Image.blend(degenerate, image, factor)` on 8 bits: single-precision blend, clamped, truncated.
    @inline(__always) private static func blend(_ degenerate: UInt8, _ image: UInt8, _ factor: Float) -> UInt8 {
        let value = Float(degenerate) + factor * Float(Int(image) - Int(degenerate))
        if value <= 0 { return 0 }
        if value >= 255 { return 255 }
        return UInt8(value)
    }

    private static func equalizeTable(histogram: [Int]) -> [UInt8] {
        let present = histogram.filter { $0 > 0 }
        let identity = (0...255).map { UInt8($0) }
        guard present.count > 1 else { return identity }
        let step = (present.reduce(0, +) - present.last!) / 255
        guard step > 0 else { return identity }
        var running = step / 2
        var table = [UInt8](repeating: 0, count: 256)
        for value in 0..<256 {
            table[value] = UInt8(clamping: running / step)
            running += histogram[value]
        }
        return table
    }

    private static func autocontrastTable(histogram: [Int], cutoffPercent: Int) -> [UInt8] {
        var counts = histogram
        if cutoffPercent > 0 {
            let cut = counts.reduce(0, +) * cutoffPercent / 100
            // Remove `cut` values from the dark end, then from the light end.
            for order in [Array(0..<256), Array((0..<256).reversed())] {
                var remaining = cut
                for value in order where remaining > 0 {
                    let removed = min(remaining, counts[value])
                    counts[value] -= removed
                    remaining -= removed
                }
            }
        }
        let identity = (0...255).map { UInt8($0) }
        guard let low = counts.firstIndex(where: { $0 > 0 }), let high = counts.lastIndex(where: { $0 > 0 }),
              high > low else { return identity }
        let scale = 255.0 / Double(high - low)
        let offset = -Double(low) * scale
        // Python's int() truncates toward zero before the clamp.
        return (0..<256).map { UInt8(clamping: Int(Double($0) * scale + offset)) }
    }

    /// PIL's `ImageFilter.SMOOTH` (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, divided by 13, rounded), border pixels copied.
    private static func smoothed(_ bytes: [UInt8], width: Int, height: Int) -> [UInt8] {
        var out = bytes
        guard width >= 3, height >= 3 else { return out }
        let edge = Float(1) / 13, centre = Float(5) / 13
        let plane = width * height
        for channel in 0..<3 {
            let base = channel * plane
            for y in 1..<(height - 1) {
                for x in 1..<(width - 1) {
                    // Row by row in single precision, as PIL's KERNEL1x3 sums.
                    var sum: Float = 0
                    for dy in -1...1 {
                        let row = base + (y + dy) * width + x
                        let middle = dy == 0 ? centre : edge
                        sum += Float(bytes[row - 1]) * edge + Float(bytes[row]) * middle + Float(bytes[row + 1]) * edge
                    }
                    out[base + y * width + x] = sum <= 0 ? 0 : (sum >= 255 ? 255 : UInt8(sum + 0.5))
                }
            }
        }
        return out
    }
}
