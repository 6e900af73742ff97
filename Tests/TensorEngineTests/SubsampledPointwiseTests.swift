import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// Strided 1x1 convolutions (ResNet's downsampling shortcuts), which Conv2d runs as a copy of
/// every stride-th row and column followed by a stride-1 1x1 product: against a direct sum in
/// double, in `.inference` with the packed weights and a fused ReLU and in `.training`, on every
/// kernel set, on odd sizes, strides 2 and 3, and groups.
final class SubsampledPointwiseTests: XCTestCase {
    struct Case { let c, o, s, groups, n, h, w: Int }

    func testMatchesDirectSum() throws {
        let cases = [
            Case(c: 8, o: 6, s: 2, groups: 1, n: 2, h: 9, w: 11),    // odd sides: 5x6 outputs
            Case(c: 8, o: 6, s: 2, groups: 2, n: 2, h: 12, w: 10),   // grouped
            Case(c: 5, o: 4, s: 3, groups: 1, n: 1, h: 14, w: 16),   // stride 3
            Case(c: 64, o: 40, s: 2, groups: 1, n: 3, h: 16, w: 16), // several register tiles of rows
        ]
        try forEachKernelSet { set in
            let generator = SeededGenerator(seed: 21)
            for t in cases {
                let conv = Conv2d(inputChannels: t.c, outputChannels: t.o, kernelSize: 1, stride: t.s, groups: t.groups, generator: generator)
                let x = generator.uniformTensor(shape: [t.n, t.c, t.h, t.w], bound: 1)
                let expected = direct(x, conv, t)
                for mode in [LayerMode.inference, .training] {
                    conv.setMode(mode)
                    let y = mode == .inference ? conv.inferenceForward(x, activation: .relu) : conv.forward(x)
                    XCTAssertEqual(y.shape, [t.n, t.o, (t.h - 1) / t.s + 1, (t.w - 1) / t.s + 1], "\(set.rawValue) \(t)")
                    let reference = mode == .inference ? expected.map { Swift.max($0, 0) } : expected
                    let error = zip(y.scalars, reference).map { abs(Double($0) - $1) }.max() ?? 0
                    XCTAssertLessThanOrEqual(error, 1e-5, "\(set.rawValue) \(t) \(mode)")
                }
            }
        }
    }

    /// y[n][o][oy][ox] = bias[o] + sum over the group's channels c of w[o][c] * x[n][c][oy * s][ox * s], in double.
    func direct(_ x: Tensor, _ conv: Conv2d, _ t: Case) -> [Double] {
        let (Ho, Wo, Cg, Og) = ((t.h - 1) / t.s + 1, (t.w - 1) / t.s + 1, t.c / t.groups, t.o / t.groups)
        let (w, b) = (conv.weight.value.scalars, conv.bias!.value.scalars)
        var y = [Double](repeating: 0, count: t.n * t.o * Ho * Wo)
        for n in 0..<t.n { for o in 0..<t.o { for oy in 0..<Ho { for ox in 0..<Wo {
            var sum = Double(b[o])
            for c in 0..<Cg {
                let input = (o / Og) * Cg + c
                sum += Double(w[o * Cg + c]) * Double(x.scalars[((n * t.c + input) * t.h + oy * t.s) * t.w + ox * t.s])
            }
            y[((n * t.o + o) * Ho + oy) * Wo + ox] = sum
        } } } }
        return y
    }
}
