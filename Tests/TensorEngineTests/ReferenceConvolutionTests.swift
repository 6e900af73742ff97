import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// The fast convolution kernels (pointwise sgemm, depthwise loop, batched im2col) against a
/// direct six-loop convolution, forward and backward, on odd sizes.
final class ReferenceConvolutionTests: XCTestCase {
    struct Case { let c, o, k, s, p, groups, n, h, w: Int }

    func testFastKernelsMatchDirectConvolution() throws {
        try forEachKernelSet { _ in
            let cases = [
                Case(c: 3, o: 5, k: 3, s: 1, p: 1, groups: 1, n: 3, h: 7, w: 6),    // im2col, batched
                Case(c: 4, o: 6, k: 3, s: 2, p: 1, groups: 2, n: 2, h: 9, w: 8),    // grouped, strided
                Case(c: 6, o: 6, k: 5, s: 2, p: 2, groups: 6, n: 2, h: 11, w: 10),  // depthwise
                Case(c: 3, o: 6, k: 3, s: 1, p: 0, groups: 3, n: 1, h: 5, w: 5),   // depthwise multiplier 2
                Case(c: 4, o: 4, k: 3, s: 3, p: 1, groups: 4, n: 1, h: 10, w: 11), // depthwise, generic stride
                Case(c: 4, o: 4, k: 3, s: 2, p: 1, groups: 4, n: 2, h: 7, w: 9),   // depthwise stride 2, odd width
                Case(c: 8, o: 4, k: 1, s: 1, p: 0, groups: 1, n: 2, h: 4, w: 5),    // pointwise
                Case(c: 8, o: 6, k: 1, s: 1, p: 0, groups: 2, n: 2, h: 3, w: 5),    // pointwise, grouped
                Case(c: 8, o: 4, k: 1, s: 2, p: 0, groups: 2, n: 2, h: 5, w: 5),    // strided 1x1, grouped
                Case(c: 2, o: 3, k: 7, s: 2, p: 3, groups: 1, n: 2, h: 40, w: 36),  // ResNet stem-like, one item per block
                Case(c: 64, o: 4, k: 3, s: 1, p: 1, groups: 2, n: 2, h: 96, w: 90), // large plane: blocks of output rows
                Case(c: 4, o: 6, k: 3, s: 1, p: 0, groups: 2, n: 2, h: 8, w: 19),   // no padding: dx convolved with padding 2
                Case(c: 3, o: 5, k: 5, s: 1, p: 2, groups: 1, n: 1, h: 9, w: 17),   // 5x5
            ]
            let generator = SeededGenerator(seed: 7)
            for t in cases {
                let conv = Conv2d(inputChannels: t.c, outputChannels: t.o, kernelSize: t.k, stride: t.s, padding: t.p,
                                  groups: t.groups, bias: true, generator: generator)
                let x = generator.uniformTensor(shape: [t.n, t.c, t.h, t.w], bound: 1)
                let y = conv.forward(x)
                let dy = generator.uniformTensor(shape: y.shape, bound: 1)
                let dx = conv.backward(dy)
                let reference = directConvolution(x, conv.weight.value, conv.bias!.value, dy, stride: t.s, padding: t.p, groups: t.groups)
                XCTAssertEqual(y.shape, reference.y.shape)
                let errors = [maxRelativeDifference(y.scalars, reference.y.scalars),
                              maxRelativeDifference(dx.scalars, reference.dx.scalars),
                              maxRelativeDifference(conv.weight.gradient.scalars, reference.dw.scalars),
                              maxRelativeDifference(conv.bias!.gradient.scalars, reference.db.scalars)]
                print("conv \(t): y \(errors[0]) dx \(errors[1]) dw \(errors[2]) db \(errors[3])")
                for error in errors { XCTAssertLessThanOrEqual(error, 1e-4, "\(t)") }
            }
        }
    }

    func directConvolution(_ x: Tensor, _ w: Tensor, _ b: Tensor, _ dy: Tensor, stride s: Int, padding p: Int, groups: Int)
        -> (y: Tensor, dx: Tensor, dw: Tensor, db: Tensor) {
        let (N, C, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (O, Cg, K) = (w.shape[0], w.shape[1], w.shape[2])
        let Og = O / groups
        let Ho = (H + 2 * p - K) / s + 1, Wo = (W + 2 * p - K) / s + 1
        var y = Tensor(zeros: [N, O, Ho, Wo]), dx = Tensor(zeros: x.shape), dw = Tensor(zeros: w.shape), db = Tensor(zeros: [O])
        for n in 0..<N { for o in 0..<O { for oy in 0..<Ho { for ox in 0..<Wo {
            let yi = ((n * O + o) * Ho + oy) * Wo + ox
            var sum = b.scalars[o]
            db.scalars[o] += dy.scalars[yi]
            for ci in 0..<Cg { for ky in 0..<K { for kx in 0..<K {
                let c = (o / Og) * Cg + ci, iy = oy * s + ky - p, ix = ox * s + kx - p
                guard iy >= 0, iy < H, ix >= 0, ix < W else { continue }
                let xi = ((n * C + c) * H + iy) * W + ix, wi = ((o * Cg + ci) * K + ky) * K + kx
                sum += w.scalars[wi] * x.scalars[xi]
                dx.scalars[xi] += w.scalars[wi] * dy.scalars[yi]
                dw.scalars[wi] += x.scalars[xi] * dy.scalars[yi]
            } } }
            y.scalars[yi] = sum
        } } } }
        return (y, dx, dw, db)
    }
}
