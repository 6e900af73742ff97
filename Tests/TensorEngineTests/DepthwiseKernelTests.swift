import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// The depthwise kernels of every kernel set (CKernels/depthwise.c and depthwise_avx2.c, the
/// generic set's Swift loops), reached through Conv2d as the engine routes them, against a direct double-precision depthwise convolution: forward with every
/// fused activation, and both gradients, on planes with sizes around and between vector widths.
final class DepthwiseKernelTests: XCTestCase {
    static let sizes = [1, 2, 7, 15, 17, 33, 64]

    func testForwardWithActivationsMatchesDirectConvolution() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 21)
            var checked = 0
            for (h, w) in Self.planeSizes() {
                for k in [3, 5] {
                    for s in [1, 2] {
                        for p in [0, k / 2, k - 1] where (h + 2 * p - k) >= 0 && (w + 2 * p - k) >= 0 {
                            let conv = Conv2d(inputChannels: 3, outputChannels: 6, kernelSize: k, stride: s, padding: p, groups: 3, generator: generator)
                            conv.setMode(.inference)
                            let x = generator.uniformTensor(shape: [2, 3, h, w], bound: 4)
                            let reference = directDepthwise(x, conv.weight.value, conv.bias!.value, nil, stride: s, padding: p)
                            for activation in [FusedActivation.none, .relu, .relu6] {
                                let y = conv.inferenceForward(x, activation: activation)
                                let expected = reference.y.map { activate($0, activation) }
                                XCTAssertEqual(y.shape, reference.shape)
                                let error = scaledError(y.scalars, expected)
                                XCTAssertLessThanOrEqual(error, 1e-5, "forward \(h)x\(w) k\(k) s\(s) p\(p) \(activation)")
                            }
                            checked += 1
                        }
                    }
                }
            }
            XCTAssertGreaterThan(checked, 100)
        }
    }

    func testBackwardMatchesDirectConvolution() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 22)
            for (h, w) in Self.planeSizes() {
                for k in [3, 5] {
                    for s in [1, 2] {
                        for p in [0, k / 2, k - 1] where (h + 2 * p - k) >= 0 && (w + 2 * p - k) >= 0 {
                            // Channel multiplier 2 on odd cases: each input channel feeds two outputs.
                            let outputs = (h + w + k) % 2 == 0 ? 3 : 6
                            let conv = Conv2d(inputChannels: 3, outputChannels: outputs, kernelSize: k, stride: s, padding: p, groups: 3, generator: generator)
                            let x = generator.uniformTensor(shape: [2, 3, h, w], bound: 4)
                            let y = conv.forward(x)
                            let dy = generator.uniformTensor(shape: y.shape, bound: 1)
                            let dx = conv.backward(dy)
                            let reference = directDepthwise(x, conv.weight.value, conv.bias!.value, dy, stride: s, padding: p)
                            let name = "\(h)x\(w) k\(k) s\(s) p\(p) outputs \(outputs)"
                            XCTAssertLessThanOrEqual(scaledError(y.scalars, reference.y), 1e-5, "y \(name)")
                            XCTAssertLessThanOrEqual(scaledError(dx.scalars, reference.dx), 1e-5, "dx \(name)")
                            XCTAssertLessThanOrEqual(scaledError(conv.weight.gradient.scalars, reference.dw), 1e-5, "dw \(name)")
                        }
                    }
                }
            }
        }
    }

    /// Gradients add into what is already there (two backwards = twice the gradient).
    func testWeightGradientAccumulates() throws {
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 23)
            let conv = Conv2d(inputChannels: 4, outputChannels: 4, kernelSize: 3, stride: 2, padding: 1, groups: 4, generator: generator)
            let x = generator.uniformTensor(shape: [1, 4, 33, 17], bound: 1)
            let dy = generator.uniformTensor(shape: conv.forward(x).shape, bound: 1)
            _ = conv.backward(dy)
            let once = conv.weight.gradient.scalars
            _ = conv.forward(x)
            _ = conv.backward(dy)
            XCTAssertLessThanOrEqual(scaledError(conv.weight.gradient.scalars, once.map { 2 * Double($0) }), 1e-6)
        }
    }

    /// Every size of the list as a height, each with a different width, plus the square ones.
    /// Also 8x8 and 16x16 planes: the AVX-512 set runs those (stride 1, "same" padding)
    /// without padded row copies.
    static func planeSizes() -> [(Int, Int)] {
        let shifted = sizes.indices.map { (sizes[$0], sizes[($0 + 3) % sizes.count]) }
        return shifted + sizes.map { ($0, $0) } + [(8, 8), (16, 16)]
    }

    /// y, and with `dy` the input and weight gradients, in double precision, one loop per index.
    func directDepthwise(_ x: Tensor, _ w: Tensor, _ b: Tensor, _ dy: Tensor?, stride s: Int, padding p: Int)
        -> (y: [Double], dx: [Double], dw: [Double], shape: [Int]) {
        let (N, C, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (O, K) = (w.shape[0], w.shape[2])
        let multiplier = O / C
        let Ho = (H + 2 * p - K) / s + 1, Wo = (W + 2 * p - K) / s + 1
        var y = [Double](repeating: 0, count: N * O * Ho * Wo)
        var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
        for n in 0..<N { for o in 0..<O { for oy in 0..<Ho { for ox in 0..<Wo {
            let yi = ((n * O + o) * Ho + oy) * Wo + ox
            let g = dy.map { Double($0.scalars[yi]) } ?? 0
            var sum = Double(b.scalars[o])
            for ky in 0..<K { for kx in 0..<K {
                let iy = oy * s + ky - p, ix = ox * s + kx - p
                guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                let xi = ((n * C + o / multiplier) * H + iy) * W + ix, wi = (o * K + ky) * K + kx
                sum += Double(w.scalars[wi]) * Double(x.scalars[xi])
                dx[xi] += Double(w.scalars[wi]) * g
                dw[wi] += Double(x.scalars[xi]) * g
            } }
            y[yi] = sum
        } } } }
        return (y, dx, dw, [N, O, Ho, Wo])
    }
}
