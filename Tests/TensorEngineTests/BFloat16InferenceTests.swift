import CKernels
import Foundation
import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// The bf16 inference products (RSTPM_PRECISION / --precision bf16) against f32 and double.
///
/// Tolerances. bf16 keeps 8 significant bits: rounding to nearest even moves a value by at most
/// 2^-8 of itself, so a product of two rounded factors is off by at most 2^-7 + 2^-16 of |a b|,
/// and a sum of k such products by at most that much of sum |a_i b_i| (plus f32 summation,
/// (k + 2) * 2^-23 of the same sum). Each output is checked against that bound, scaled by its
/// own sum of |a b| (+ |bias|), not by a loose global constant. Against a double product of the
/// *rounded* factors only the f32 summation error is left: a wrong pair layout, a lost odd k or
/// a wrong rounding mode show there at once.
final class BFloat16InferenceTests: XCTestCase {
    private func bf16Kernels() throws -> rstpm_kernel_set {
        try requireBFloat16()
        return rstpm_avx512_bf16_kernels()!.pointee
    }

    /// `value` rounded to bf16, to nearest even (finite values).
    private func bf16(_ value: Float) -> Float {
        let bits = value.bitPattern
        return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
    }

    private static let roundingBound = 0x1p-7 + 0x1p-16

    private func summationBound(_ k: Int) -> Double { Double(k + 2) * 0x1p-23 }

    /// Shapes around the register tile (14 x 32) and the K blocks (384, even in bf16), odd k
    /// (the last pair padded with zero), with and without prepacked A, bias and ReLU6 clamp.
    func testProductMatchesDoubleReferencesOnOddShapes() throws {
        let kernels = try bf16Kernels()
        let f32 = KernelSet.avx512.table!.pointee
        let generator = SeededGenerator(seed: 71)
        var sawRounding = false
        for (m, n, k) in [(1, 16, 1), (2, 17, 3), (13, 31, 5), (14, 32, 384), (15, 33, 385), (29, 65, 769), (169, 47, 21), (40, 2049, 9),
                          (7, 100, 1001), (3, 40, 2)] {
            for (prepacked, clamp) in [(false, false), (true, false), (true, true)] {
                let (lda, ldb, ldc) = (k + 1, n + 2, n + 1)
                let a = generator.uniformTensor(shape: [m * lda], bound: 1).scalars
                let b = generator.uniformTensor(shape: [k * ldb], bound: 2).scalars
                let bias = generator.uniformTensor(shape: [m], bound: 1).scalars
                let (low, high): (Float, Float) = clamp ? (0, 6) : (-.infinity, .infinity)
                var c = [Float](repeating: .nan, count: m * ldc), reference = c
                var panels = [Float](repeating: .nan, count: kernels.packed_a_floats(m, k))
                kernels.pack_a(m, k, a, lda, &panels)
                panels.withUnsafeBufferPointer { pointer in
                    var packed = rstpm_packed_a(panels: pointer.baseAddress, rows: m, first_row: 0)
                    if prepacked {
                        // A itself must not be read: NaN there would show in C.
                        let unread = [Float](repeating: .nan, count: m * lda)
                        kernels.sgemm_bias_clamp(m, n, k, unread, lda, &packed, b, ldb, bias, low, high, &c, ldc)
                    } else {
                        kernels.sgemm_bias_clamp(m, n, k, a, lda, nil, b, ldb, bias, low, high, &c, ldc)
                    }
                }
                f32.sgemm_bias_clamp(m, n, k, a, lda, nil, b, ldb, bias, low, high, &reference, ldc)
                let label = "\(m)x\(n)x\(k) prepacked \(prepacked) clamp \(clamp)"
                for i in 0..<m {
                    for j in 0..<n {
                        var (exact, rounded, magnitude) = (Double(bias[i]), Double(bias[i]), Double(abs(bias[i])))
                        for p in 0..<k {
                            let (x, y) = (a[i * lda + p], b[p * ldb + j])
                            exact += Double(x) * Double(y)
                            rounded += Double(bf16(x)) * Double(bf16(y))
                            magnitude += Double(abs(x * y))
                        }
                        let clamped = { (value: Double) in clamp ? min(max(value, 0), 6) : value }
                        let value = Double(c[i * ldc + j])
                        let summation = summationBound(k) * magnitude
                        if abs(value - clamped(rounded)) > summation || abs(value - clamped(exact)) > Self.roundingBound * magnitude + summation
                            || abs(value - Double(reference[i * ldc + j])) > Self.roundingBound * magnitude + 2 * summation {
                            XCTFail("\(label): C[\(i)][\(j)] = \(value), bf16-rounded product \(clamped(rounded)), exact \(clamped(exact)), f32 \(reference[i * ldc + j])")
                            return
                        }
                        if abs(value - clamped(exact)) > 64 * summation { sawRounding = true }
                    }
                    XCTAssert(c[(i * ldc + n)..<((i + 1) * ldc)].allSatisfy(\.isNaN), "\(label): wrote past column n")
                }
            }
        }
        XCTAssertTrue(sawRounding, "the products matched f32 too closely: were the factors rounded to bf16 at all?")
    }

    /// A Conv2d in `.inference` on bf16 against the same layer's f32 forward, output by output,
    /// within the rounding bound of its own sum of |w x| (the layer with |w| and no bias on |x|):
    /// 3x3 at strides 1 and 2 (the implicit convolution product), 1x1 (the matrix product), groups,
    /// odd channel counts (odd K = channels * 9).
    func testConvolutionInBFloat16StaysWithinTheRoundingBound() throws {
        _ = try bf16Kernels()
        let generator = SeededGenerator(seed: 72)
        for (inputs, outputs, kernel, stride, groups) in [(5, 24, 3, 1, 1), (7, 33, 3, 2, 1), (30, 17, 1, 1, 1), (12, 32, 3, 1, 2), (3, 16, 7, 2, 1)] {
            let conv = Conv2d(inputChannels: inputs, outputChannels: outputs, kernelSize: kernel, stride: stride, padding: kernel / 2,
                              groups: groups, generator: generator)
            let x = generator.uniformTensor(shape: [2, inputs, 23, 30], bound: 3)
            let reference = conv.forward(x)
            let magnitudes = Conv2d(inputChannels: inputs, outputChannels: outputs, kernelSize: kernel, stride: stride, padding: kernel / 2,
                                    groups: groups, weight: Tensor(shape: conv.weight.value.shape, scalars: conv.weight.value.scalars.map(abs)),
                                    bias: nil).forward(Tensor(shape: x.shape, scalars: x.scalars.map(abs)))
            conv.setMode(.inference)
            let output = try withPrecision(.bf16) { conv.inferenceForward(x, activation: .none) }
            let k = inputs / groups * kernel * kernel
            let plane = reference.count / (2 * outputs)
            var largest = 0.0
            for index in 0..<output.count {
                let bias = Double(abs(conv.bias!.value.scalars[(index / plane) % outputs]))
                let bound = (Self.roundingBound + 2 * summationBound(k)) * (Double(magnitudes.scalars[index]) + bias)
                let difference = abs(Double(output.scalars[index]) - Double(reference.scalars[index]))
                largest = max(largest, difference)
                if difference > bound {
                    XCTFail("\(inputs)->\(outputs) k\(kernel) s\(stride) g\(groups): output \(index) bf16 \(output.scalars[index]), f32 \(reference.scalars[index]), bound \(bound)")
                    break
                }
            }
            XCTAssertGreaterThan(largest, 0, "\(inputs)->\(outputs) k\(kernel): bf16 output identical to f32: did the bf16 product run?")
        }
    }

    /// The implicit convolution product in bf16 against a double convolution of the bf16-rounded
    /// weights and inputs: only the f32 summation error may remain. K over one block (K = 45 * 9,
    /// cut at an even row inside a channel's taps), odd K, strides 1 and 2 with padding, and a
    /// column split over the workers: a pair row that straddles two channels or two taps'
    /// loads, or a lost odd row, shows at once.
    func testConvolutionProductMatchesDoubleOfRoundedFactors() throws {
        _ = try bf16Kernels()
        let generator = SeededGenerator(seed: 75)
        for (inputs, outputs, kernel, stride, height, width) in [(45, 20, 3, 1, 13, 35), (45, 15, 3, 2, 17, 40), (5, 30, 5, 1, 9, 70), (3, 16, 7, 2, 21, 22)] {
            let padding = kernel / 2
            let conv = Conv2d(inputChannels: inputs, outputChannels: outputs, kernelSize: kernel, stride: stride, padding: padding, generator: generator)
            let x = generator.uniformTensor(shape: [1, inputs, height, width], bound: 2)
            conv.setMode(.inference)
            let output = try withPrecision(.bf16) { conv.inferenceForward(x, activation: .none) }
            let (outputHeight, outputWidth) = (output.shape[2], output.shape[3])
            let (w, b, xs) = (conv.weight.value.scalars, conv.bias!.value.scalars, x.scalars)
            let k = inputs * kernel * kernel
            for o in 0..<outputs {
                for oy in 0..<outputHeight {
                    for ox in 0..<outputWidth {
                        var (rounded, magnitude) = (Double(b[o]), Double(abs(b[o])))
                        for c in 0..<inputs {
                            for ky in 0..<kernel {
                                let iy = oy * stride + ky - padding
                                if iy < 0 || iy >= height { continue }
                                for kx in 0..<kernel {
                                    let ix = ox * stride + kx - padding
                                    if ix < 0 || ix >= width { continue }
                                    let (weight, input) = (w[((o * inputs + c) * kernel + ky) * kernel + kx], xs[(c * height + iy) * width + ix])
                                    rounded += Double(bf16(weight)) * Double(bf16(input))
                                    magnitude += Double(abs(weight * input))
                                }
                            }
                        }
                        let value = Double(output.scalars[(o * outputHeight + oy) * outputWidth + ox])
                        if abs(value - rounded) > summationBound(k) * magnitude {
                            XCTFail("\(inputs)->\(outputs) k\(kernel) s\(stride): output (\(o), \(oy), \(ox)) = \(value), double of bf16 factors \(rounded)")
                            return
                        }
                    }
                }
            }
        }
    }

    /// Frozen weights packed in one precision are packed again after a switch: back in f32 the
    /// output is the f32 one bit for bit, not f32 arithmetic on bf16 panels (or the reverse).
    func testPackedWeightsFollowAPrecisionSwitch() throws {
        _ = try bf16Kernels()
        let generator = SeededGenerator(seed: 73)
        let conv = Conv2d(inputChannels: 16, outputChannels: 40, kernelSize: 3, padding: 1, generator: generator)
        let x = generator.uniformTensor(shape: [1, 16, 20, 24], bound: 1)
        conv.setMode(.inference)
        let f32 = conv.inferenceForward(x, activation: .relu)
        let bf16 = try withPrecision(.bf16) { conv.inferenceForward(x, activation: .relu) }
        XCTAssertNotEqual(bf16.scalars, f32.scalars)
        XCTAssertLessThanOrEqual(maxRelativeDifference(bf16.scalars, f32.scalars), 0.02)
        XCTAssertEqual(conv.inferenceForward(x, activation: .relu).scalars, f32.scalars)
        XCTAssertEqual(try withPrecision(.bf16) { conv.inferenceForward(x, activation: .relu) }.scalars, bf16.scalars)
    }

    /// Training and `.evaluation` stay f32 under bf16: only frozen (`.inference`) weights are rounded.
    func testTrainingForwardStaysF32UnderBFloat16() throws {
        _ = try bf16Kernels()
        let generator = SeededGenerator(seed: 74)
        let conv = Conv2d(inputChannels: 9, outputChannels: 20, kernelSize: 3, padding: 1, generator: generator)
        let x = generator.uniformTensor(shape: [2, 9, 17, 19], bound: 1)
        let f32 = conv.forward(x)
        for mode in [LayerMode.training, .evaluation] {
            conv.setMode(mode)
            XCTAssertEqual(try withPrecision(.bf16) { conv.forward(x) }.scalars, f32.scalars, "\(mode)")
        }
    }

    /// bf16 needs the avx512 kernel set: on another set it is not available.
    func testBFloat16NeedsTheAVX512KernelSet() throws {
        _ = try bf16Kernels()
        XCTAssertNil(Precision.bf16.problem(on: .avx512))
        XCTAssertNotNil(Precision.bf16.problem(on: .avx2))
        XCTAssertNotNil(Precision.bf16.problem(on: .generic))
        XCTAssertNil(Precision.f32.problem(on: .generic))
    }
}
