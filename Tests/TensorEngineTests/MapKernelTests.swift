import Foundation
import TensorEngine
import XCTest

/// The score-map kernels (`MapKernels`, the separable `BilinearResize`, the fused normalised
/// distance) against straightforward implementations of what they compute: equal to the last bit
/// where the order of operations is kept, which is everywhere.
final class MapKernelTests: XCTestCase {
    /// Bilinear resize output by output, as `F.interpolate(..., mode="bilinear", align_corners=False)`.
    private func referenceResize(_ input: Tensor, height Ho: Int, width Wo: Int) -> Tensor {
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        func taps(_ n: Int, _ m: Int) -> [(Int, Int, Float, Float)] {
            let scale = Float(n) / Float(m)
            return (0..<m).map { dst in
                let source = max(scale * (Float(dst) + 0.5) - 0.5, 0)
                let low = min(Int(source), n - 1)
                let lambda = source - Float(low)
                return (low, low < n - 1 ? low + 1 : low, 1 - lambda, lambda)
            }
        }
        let (rows, columns) = (taps(H, Ho), taps(W, Wo))
        var out = [Float](repeating: 0, count: N * C * Ho * Wo)
        for plane in 0..<(N * C) {
            for oy in 0..<Ho {
                let (t, b, wt, wb) = rows[oy]
                for ox in 0..<Wo {
                    let (l, r, wl, wr) = columns[ox]
                    let x = { (y: Int, x: Int) in input.scalars[plane * H * W + y * W + x] }
                    out[plane * Ho * Wo + oy * Wo + ox] = wt * (wl * x(t, l) + wr * x(t, r)) + wb * (wl * x(b, l) + wr * x(b, r))
                }
            }
        }
        return Tensor(shape: [N, C, Ho, Wo], scalars: out)
    }

    private func resizedOrSame(_ map: Tensor, _ height: Int, _ width: Int) -> Tensor {
        map.height == height && map.width == width ? map : referenceResize(map, height: height, width: width)
    }

    func testBilinearResizeEqualsPerOutputFormula() {
        let generator = SeededGenerator(seed: 21)
        // (H, W) -> (Ho, Wo): 2x and 4x up, down, odd ratios, same size, one row or column.
        for (H, W, Ho, Wo) in [(8, 8, 16, 16), (16, 16, 64, 64), (13, 7, 5, 19), (32, 32, 8, 8), (9, 11, 9, 11), (1, 5, 3, 10), (6, 1, 12, 2)] {
            let input = generator.uniformTensor(shape: [2, 3, H, W], bound: 4)
            let resize = BilinearResize(outputHeight: Ho, outputWidth: Wo)
            resize.mode = .inference
            XCTAssertEqual(resize(input), referenceResize(input, height: Ho, width: Wo), "\(H)x\(W) -> \(Ho)x\(Wo)")
        }
    }

    /// Six maps at three sizes (one already at the output size), batch 1 (split into row bands)
    /// and batch 3, against resize-then-add-then-multiply and -scale on whole tensors.
    func testResizedPairSumsEqualWholeMapArithmetic() {
        let generator = SeededGenerator(seed: 22)
        let pairs = [(0, 5), (1, 4), (2, 3)]
        for (N, H, W) in [(1, 64, 48), (3, 32, 40), (2, 7, 9)] {
            let sizes = [(H, W), (H / 2, W / 2), (H / 4 + 1, W / 4 + 1), (H / 4 + 1, W / 4 + 1), (H / 2, W / 2), (H / 3 + 1, W)]
            let maps = sizes.map { generator.uniformTensor(shape: [N, 1, max($0.0, 1), max($0.1, 1)], bound: 2) }
            let resized = maps.map { resizedOrSame($0, H, W) }
            let sums = pairs.map { resized[$0.0] + resized[$0.1] }
            XCTAssertEqual(MapKernels.resizedPairSumProduct(maps, pairs: pairs, height: H, width: W), sums[0] * sums[1] * sums[2], "\(N)x\(H)x\(W)")
            let scales: [Float] = [0.5, 3, 1.25]
            var channels: [Float] = []
            for n in 0..<N { for g in 0..<3 { channels += sums[g].batchItem(n).scalars.map { $0 * scales[g] } } }
            XCTAssertEqual(MapKernels.resizedPairSums(maps, pairs: pairs, scales: scales, height: H, width: W),
                           Tensor(shape: [N, 3, H, W], scalars: channels), "\(N)x\(H)x\(W)")
        }
    }

    /// scipy's gaussian_filter with "reflect" borders, taps to 4 sigma: rows, then columns, each
    /// output one running sum.
    private func referenceBlur(_ plane: [Float], height: Int, width: Int, sigma: Float) -> [Float] {
        let radius = Int((4 * sigma).rounded())
        var taps = (-radius...radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let total = taps.reduce(0, +)
        taps = taps.map { $0 / total }
        func reflected(_ i: Int, _ n: Int) -> Int {
            var j = i % (2 * n)
            if j < 0 { j += 2 * n }
            return j < n ? j : 2 * n - 1 - j
        }
        var rows = [Float](repeating: 0, count: plane.count), out = rows
        for y in 0..<height { for x in 0..<width {
            var sum: Float = 0
            for (k, tap) in taps.enumerated() { sum += tap * plane[y * width + reflected(x + k - radius, width)] }
            rows[y * width + x] = sum
        } }
        for y in 0..<height { for x in 0..<width {
            var sum: Float = 0
            for (k, tap) in taps.enumerated() { sum += tap * rows[reflected(y + k - radius, height) * width + x] }
            out[y * width + x] = sum
        } }
        return out
    }

    func testGaussianBlurEqualsReference() {
        let generator = SeededGenerator(seed: 23)
        // Radius beyond the plane (reflected more than once), widths not a multiple of 16.
        for (N, H, W, sigma) in [(1, 64, 64, Float(4)), (3, 20, 37, 2), (2, 5, 6, 4), (1, 33, 16, 0.5)] {
            let map = generator.uniformTensor(shape: [N, 1, H, W], bound: 1)
            let blurred = MapKernels.gaussianBlurred(map, sigma: sigma)
            var expected: [Float] = []
            for n in 0..<N { expected += referenceBlur(map.batchItem(n).scalars, height: H, width: W, sigma: sigma) }
            XCTAssertEqual(blurred.scalars, expected, "\(N)x\(H)x\(W) sigma \(sigma)")
        }
        let map = generator.uniformTensor(shape: [1, 1, 8, 8], bound: 1)
        XCTAssertEqual(MapKernels.gaussianBlurred(map, sigma: 0), map)
    }

    func testItemMaximaAsArrayMax() {
        let generator = SeededGenerator(seed: 24)
        let map = generator.uniformTensor(shape: [3, 1, 5, 7], bound: 9)
        XCTAssertEqual(MapKernels.itemMaxima(map), (0..<3).map { map.batchItem($0).scalars.max() })
        // NaN: as Array.max, an item that starts with NaN gives NaN, later NaNs are passed over.
        var values = (0..<40).map { Float($0) }
        values[17] = .nan
        XCTAssertEqual(MapKernels.itemMaxima(Tensor(shape: [2, 20], scalars: values)), [19, 39])
        values[0] = .nan
        XCTAssertTrue(MapKernels.itemMaxima(Tensor(shape: [2, 20], scalars: values))[0]!.isNaN)
        XCTAssertEqual(MapKernels.itemMaxima(Tensor(shape: [2, 0], scalars: [])), [nil, nil])
    }

    /// The fused inference distance against L2Normalization twice, then HalfSquaredDistance,
    /// with all-zero positions (the norm clamped to epsilon) and planes that are not a whole
    /// number of the kernel's 256-position blocks or 8-lane vectors.
    func testNormalizedDistanceEqualsLayerSequence() {
        let generator = SeededGenerator(seed: 25)
        for shape in [[2, 24, 17, 19], [1, 5, 16, 16], [3, 3, 1, 7]] {
            var teacher = generator.uniformTensor(shape: shape, bound: 3)
            let student = generator.uniformTensor(shape: shape, bound: 3)
            let plane = shape[2] * shape[3]
            for c in 0..<shape[1] { teacher.scalars[c * plane + 2] = 0 }
            let (normalizeTeacher, normalizeStudent, distance) = (L2Normalization(), L2Normalization(), HalfSquaredDistance())
            for layer in [normalizeTeacher, normalizeStudent] { layer.mode = .inference }
            distance.mode = .inference
            let expected = distance.forward(normalizeTeacher(teacher), normalizeStudent(student))
            XCTAssertEqual(HalfSquaredDistance.ofNormalized(teacher, student), expected, "\(shape)")
        }
    }
}
