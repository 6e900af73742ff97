/// The one resampler of rstpm, used by training and inference alike so the two never differ.
///
/// Bilinear (triangle) filter as PIL's `Image.resize(..., BILINEAR)` and torchvision's
/// `resize(antialias=True)`: pixel centres at (i + 0.5) * scale; when shrinking by `scale` > 1
/// with `antialias`, the triangle is stretched to a support of `scale` input pixels on each
/// side so every input pixel contributes (no aliasing); weights are renormalised at the
/// borders. Without `antialias` (or when enlarging) the support is 1 pixel: plain bilinear.
/// Arithmetic is Float without intermediate rounding (PIL rounds 8-bit images to bytes after
/// its horizontal pass; its "F" mode matches this code to float precision).
public enum Resize {
    public static func bilinear(_ image: RGBImage, width: Int, height: Int, antialias: Bool = true) -> RGBImage {
        if width == image.width && height == image.height { return image }
        let pixels = resample(image.pixels, width: image.width, height: image.height, channels: 3,
                              toWidth: width, toHeight: height, antialias: antialias)
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// Resizes a single-channel map (H, W), e.g. an anomaly map to the image's size.
    public static func bilinear(map: [Float], width: Int, height: Int, toWidth: Int, toHeight: Int, antialias: Bool = true) -> [Float] {
        precondition(map.count == width * height, "map of \(map.count) values is not \(width)x\(height)")
        if width == toWidth && height == toHeight { return map }
        return resample(map, width: width, height: height, channels: 1, toWidth: toWidth, toHeight: toHeight, antialias: antialias)
    }

    /// Per output index: first input index and the normalised weights of its taps.
    struct Taps {
        var first: [Int]
        var count: [Int]
        var weights: [Float]  // (outSize, maxCount)
        var maxCount: Int
    }

    static func taps(inSize: Int, outSize: Int, antialias: Bool) -> Taps {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = antialias ? max(scale, 1) : 1
        let support = filterScale  // the triangle's support is 1, stretched by filterScale
        let maxCount = Int((support * 2).rounded(.up)) + 1
        var taps = Taps(first: [Int](repeating: 0, count: outSize), count: [Int](repeating: 0, count: outSize),
                        weights: [Float](repeating: 0, count: outSize * maxCount), maxCount: maxCount)
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            let low = max(Int(center - support + 0.5), 0)
            let high = min(Int(center + support + 0.5), inSize)
            var total = 0.0
            var weights = [Double](repeating: 0, count: max(high - low, 0))
            for j in low..<high {
                let w = max(0, 1 - abs((Double(j) - center + 0.5) / filterScale))
                weights[j - low] = w
                total += w
            }
            taps.first[i] = low
            taps.count[i] = high - low
            for k in 0..<weights.count {
                taps.weights[i * maxCount + k] = Float(total > 0 ? weights[k] / total : 0)
            }
        }
        return taps
    }

    /// An 8-bit RGB image (values v / 255) resized exactly as `bilinear` resizes its float
    /// copy, bit for bit, without building that full-size float copy: the vertical pass reads
    /// the bytes through the same v / 255 table the decoder uses.
    public static func bilinear(_ image: RGB8Image, width: Int, height: Int, antialias: Bool = true) -> RGBImage {
        precondition(width > 0 && height > 0, "cannot resize to \(width)x\(height)")
        if height == image.height { return bilinear(image.floats(), width: width, height: height, antialias: antialias) }
        let rows = vertical(bytes: image.pixels, width: image.width, height: image.height, toHeight: height, antialias: antialias)
        let pixels = width == image.width ? rows
            : horizontal(rows, width: image.width, height: height, channels: 3, toWidth: width, antialias: antialias)
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// `vertical` on 3-channel bytes; the same products and sums in the same order.
    static func vertical(bytes input: [UInt8], width: Int, height: Int, toHeight: Int, antialias: Bool) -> [Float] {
        let rowLength = width * 3
        return input.withUnsafeBufferPointer { src in
            RGB8Image.unit.withUnsafeBufferPointer { unit in
                verticalTaps(height: height, toHeight: toHeight, rowLength: rowLength, antialias: antialias) { out, inputRow, w in
                    let row = src.baseAddress! + inputRow * rowLength
                    // Float(v) / 255 is the table's value exactly; 16 at a time it vectorises.
                    var i = 0
                    while i + 16 <= rowLength {
                        let values = SIMD16<Float>(UnsafeRawPointer(row + i).loadUnaligned(as: SIMD16<UInt8>.self)) / 255
                        let sums = UnsafeRawPointer(out + i).loadUnaligned(as: SIMD16<Float>.self) + w * values
                        UnsafeMutableRawPointer(out + i).storeBytes(of: sums, as: SIMD16<Float>.self)
                        i += 16
                    }
                    while i < rowLength {
                        out[i] += w * unit[Int(row[i])]
                        i += 1
                    }
                }
            }
        }
    }

    /// The vertical pass's loop, shared by floats and bytes: for each output row and each of its
    /// taps in order, `accumulate(out, inputRow, weight)` adds weight times that input row to the
    /// output row (`rowLength` values, zero at first).
    static func verticalTaps(height: Int, toHeight: Int, rowLength: Int, antialias: Bool,
                             _ accumulate: (UnsafeMutablePointer<Float>, Int, Float) -> Void) -> [Float] {
        let t = taps(inSize: height, outSize: toHeight, antialias: antialias)
        var output = [Float](repeating: 0, count: toHeight * rowLength)
        output.withUnsafeMutableBufferPointer { dst in
            for y in 0..<toHeight {
                for k in 0..<t.count[y] {
                    accumulate(dst.baseAddress! + y * rowLength, t.first[y] + k, t.weights[y * t.maxCount + k])
                }
            }
        }
        return output
    }

    /// (H, W, C) -> (toHeight, toWidth, C): rows first (vertical), then columns.
    static func resample(_ input: [Float], width: Int, height: Int, channels: Int,
                         toWidth: Int, toHeight: Int, antialias: Bool) -> [Float] {
        precondition(toWidth > 0 && toHeight > 0, "cannot resize to \(toWidth)x\(toHeight)")
        var current = input
        if toHeight != height {
            current = vertical(current, width: width, height: height, channels: channels, toHeight: toHeight, antialias: antialias)
        }
        if toWidth != width {
            current = horizontal(current, width: width, height: toHeight, channels: channels, toWidth: toWidth, antialias: antialias)
        }
        return current
    }

    static func vertical(_ input: [Float], width: Int, height: Int, channels: Int, toHeight: Int, antialias: Bool) -> [Float] {
        let rowLength = width * channels
        return input.withUnsafeBufferPointer { src in
            verticalTaps(height: height, toHeight: toHeight, rowLength: rowLength, antialias: antialias) { out, inputRow, w in
                let row = src.baseAddress! + inputRow * rowLength
                for i in 0..<rowLength { out[i] += w * row[i] }
            }
        }
    }

    static func horizontal(_ input: [Float], width: Int, height: Int, channels: Int, toWidth: Int, antialias: Bool) -> [Float] {
        let t = taps(inSize: width, outSize: toWidth, antialias: antialias)
        var output = [Float](repeating: 0, count: height * toWidth * channels)
        input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                t.weights.withUnsafeBufferPointer { weights in
                    for y in 0..<height {
                        let row = src.baseAddress! + y * width * channels
                        let out = dst.baseAddress! + y * toWidth * channels
                        for x in 0..<toWidth {
                            let w = weights.baseAddress! + x * t.maxCount
                            let first = row + t.first[x] * channels
                            if channels == 3 {
                                var r: Float = 0, g: Float = 0, b: Float = 0
                                for k in 0..<t.count[x] {
                                    r += w[k] * first[3 * k]
                                    g += w[k] * first[3 * k + 1]
                                    b += w[k] * first[3 * k + 2]
                                }
                                out[3 * x] = r; out[3 * x + 1] = g; out[3 * x + 2] = b
                            } else if channels == 1 {
                                var sum: Float = 0
                                for k in 0..<t.count[x] { sum += w[k] * first[k] }
                                out[x] = sum
                            } else {
                                for c in 0..<channels {
                                    var sum: Float = 0
                                    for k in 0..<t.count[x] { sum += w[k] * first[k * channels + c] }
                                    out[x * channels + c] = sum
                                }
                            }
                        }
                    }
                }
            }
        }
        return output
    }
}
