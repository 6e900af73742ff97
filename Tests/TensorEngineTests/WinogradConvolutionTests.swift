import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// Winograd F(4x4, 3x3) (WinogradConvolution.swift, CKernels/winograd.c) on every kernel set,
/// through Conv2d in `.inference` as the engine routes it: against a direct convolution summed
/// in double, and against the engine's direct path (RSTPM_WINOGRAD off), on odd plane sizes
/// (partial edge tiles), paddings 0 to 2, batches whose tile blocks span items, planes wider
/// than one chunk of the transforms, and every fused activation.
final class WinogradConvolutionTests: XCTestCase {
    struct Case { let c, o, p, n, h, w: Int }

    /// F(4x4, 3x3) sums terms up to ~100x the outputs (see `Winograd`): 5e-5 of the largest
    /// output is ~100x f32's rounding, and far below any error of a wrong transform (~1).
    static let tolerance = 5e-5

    func testMatchesDirectConvolutionOnEveryKernelSet() throws {
        let cases = [
            Case(c: 32, o: 32, p: 1, n: 1, h: 16, w: 16),    // smallest plane it takes: 4x4 tiles
            Case(c: 33, o: 40, p: 1, n: 2, h: 13, w: 15),    // odd channels, partial edge tiles
            Case(c: 35, o: 33, p: 0, n: 2, h: 18, w: 17),    // no padding
            Case(c: 32, o: 34, p: 2, n: 2, h: 13, w: 14),    // padding 2
            Case(c: 32, o: 32, p: 1, n: 3, h: 16, w: 261),   // 66 tiles a row (two chunks); blocks of 3 tile rows span items
        ]
        defer { Engine.useWinograd(true) }
        try forEachKernelSet { set in
            let generator = SeededGenerator(seed: 14)
            for t in cases {
                let conv = Conv2d(inputChannels: t.c, outputChannels: t.o, kernelSize: 3, padding: t.p, generator: generator)
                conv.setMode(.inference)
                let x = generator.uniformTensor(shape: [t.n, t.c, t.h, t.w], bound: 2)
                let reference = direct(x, conv.weight.value, conv.bias?.value, padding: t.p)
                for activation in [FusedActivation.none, .relu, .relu6] {
                    Engine.useWinograd(true)
                    let y = conv.inferenceForward(x, activation: activation)
                    Engine.useWinograd(false)
                    let directPath = conv.inferenceForward(x, activation: activation)
                    let expected = reference.map { activate($0, activation) }
                    XCTAssertEqual(y.shape, directPath.shape)
                    let error = scaledError(y.scalars, expected), directError = scaledError(directPath.scalars, expected)
                    print("winograd \(set.rawValue) \(t) \(activation): \(error) (direct path \(directError))")
                    XCTAssertLessThanOrEqual(error, Self.tolerance, "\(set.rawValue) \(t) \(activation)")
                    // Rounded differently from the direct sum: Winograd really ran.
                    if activation == .none { XCTAssertNotEqual(y.scalars, directPath.scalars, "\(set.rawValue) \(t): Winograd did not run") }
                }
            }
        }
    }

    /// Below `Winograd.minimumTiles` tiles per item (8x8: 4 tiles) the direct path runs, bit for
    /// bit, however many items; at 16x16 Winograd runs, and an item gets the same bits alone and
    /// in a batch.
    func testTileRuleIsPerItem() throws {
        defer { Engine.useWinograd(true) }
        let generator = SeededGenerator(seed: 16)
        let conv = Conv2d(inputChannels: 32, outputChannels: 32, kernelSize: 3, padding: 1, generator: generator)
        conv.setMode(.inference)
        for (items, side, winograd) in [(1, 8, false), (4, 8, false), (1, 16, true)] {
            let x = generator.uniformTensor(shape: [items, 32, side, side], bound: 2)
            Engine.useWinograd(true)
            let y = conv.inferenceForward(x, activation: .none)
            Engine.useWinograd(false)
            let directPath = conv.inferenceForward(x, activation: .none)
            XCTAssertEqual(y.scalars != directPath.scalars, winograd, "\(items) items at \(side)x\(side)")
        }
        Engine.useWinograd(true)
        let batch = generator.uniformTensor(shape: [3, 32, 16, 16], bound: 2)
        let alone = conv.inferenceForward(batch.batchItem(1), activation: .none)
        let inBatch = conv.inferenceForward(batch, activation: .none)
        XCTAssertEqual(alone.scalars, Array(inBatch.scalars[(32 * 256)..<(2 * 32 * 256)]))
    }

    func testNewWeightsAreTransformedAgain() throws {
        defer { Engine.useWinograd(true) }
        Engine.useWinograd(true)
        try forEachKernelSet { _ in
            let generator = SeededGenerator(seed: 15)
            let conv = Conv2d(inputChannels: 32, outputChannels: 32, kernelSize: 3, padding: 1, bias: false, generator: generator)
            conv.setMode(.inference)
            let x = generator.uniformTensor(shape: [1, 32, 16, 16], bound: 1)
            _ = conv.inferenceForward(x, activation: .none)
            conv.weight.value = generator.uniformTensor(shape: conv.weight.value.shape, bound: 1)
            let y = conv.inferenceForward(x, activation: .none)
            XCTAssertLessThanOrEqual(scaledError(y.scalars, direct(x, conv.weight.value, nil, padding: 1)), Self.tolerance)
        }
    }

    /// y = bias + sum over c, ky, kx of w * x (stride 1, zero padding), in double.
    func direct(_ x: Tensor, _ w: Tensor, _ b: Tensor?, padding p: Int) -> [Double] {
        let (N, C, H, W, O) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0])
        let (Ho, Wo) = (H + 2 * p - 2, W + 2 * p - 2)
        var y = [Double](repeating: 0, count: N * O * Ho * Wo)
        for n in 0..<N { for o in 0..<O { for oy in 0..<Ho { for ox in 0..<Wo {
            var sum = Double(b?.scalars[o] ?? 0)
            for c in 0..<C { for ky in 0..<3 { for kx in 0..<3 {
                let (iy, ix) = (oy + ky - p, ox + kx - p)
                guard iy >= 0 && iy < H && ix >= 0 && ix < W else { continue }
                sum += Double(w.scalars[((o * C + c) * 3 + ky) * 3 + kx]) * Double(x.scalars[((n * C + c) * H + iy) * W + ix])
            } } }
            y[((n * O + o) * Ho + oy) * Wo + ox] = sum
        } } } }
        return y
    }


}
