import CKernels
import Foundation
import KernelSetTesting
import TensorEngine
import XCTest

/// The C products of the AVX-512 and AVX2 kernel sets (sgemm, its bias + clamp and convolution
/// variants, prepacked A) against a double-precision product: all four transpose combinations,
/// shapes around and between the kernels' blocks (register tiles 14 x 32 and 6 x 16, K blocks of
/// up to 384), alpha/beta, beta 0 over NaN, padded leading dimensions. (The generic set's
/// products are OpenBLAS's.)
final class KernelGemmTests: XCTestCase {
    struct Case: CustomStringConvertible {
        var set = KernelSet.avx512
        let transposeA, transposeB: Bool
        let m, n, k: Int
        let alpha, beta: Float
        let padding: Int  // extra floats per row of A, B and C
        var description: String { "\(set.rawValue): A\(transposeA ? "t" : "") B\(transposeB ? "t" : "") \(m)x\(n)x\(k) alpha \(alpha) beta \(beta) padding \(padding)" }
    }

    /// Runs `body` with the C kernels of each set that has them.
    private func forEachProduct(_ body: (KernelSet, rstpm_kernel_set) throws -> Void) throws {
        try forEachKernelSet([.avx512, .avx2]) { set in try body(set, set.table!.pointee) }
    }

    func testEdgeShapesInAllTransposeCombinations() throws {
        let shapes = [(1, 1, 1), (1, 16, 1), (2, 17, 3), (5, 7, 2), (6, 16, 4), (7, 9, 11), (13, 31, 5), (14, 32, 384), (15, 33, 385),
                      (28, 64, 768), (29, 65, 769), (3, 100, 1000), (100, 3, 7), (169, 47, 20), (40, 2049, 9), (1, 40, 300)]
        try forEachProduct { set, kernels in
            let generator = SeededGenerator(seed: 11)
            for (m, n, k) in shapes {
                for transposeA in [false, true] {
                    for transposeB in [false, true] {
                        check(kernels, Case(set: set, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 1, beta: 0,
                                            padding: 0), generator)
                    }
                }
            }
        }
    }

    func testRandomShapesWithAlphaBetaAndPaddedRows() throws {
        try forEachProduct { set, kernels in
            var generator = SeededGenerator(seed: 12)
            let scalings: [(Float, Float)] = [(1, 0), (1, 1), (-0.5, 2), (2, 0), (0.25, -1)]
            for trial in 0..<120 {
                let (alpha, beta) = scalings[trial % scalings.count]
                check(kernels, Case(set: set, transposeA: Bool.random(using: &generator), transposeB: Bool.random(using: &generator),
                                    m: Int.random(in: 1...70, using: &generator), n: Int.random(in: 1...130, using: &generator),
                                    k: Int.random(in: 1...900, using: &generator), alpha: alpha, beta: beta,
                                    padding: Int.random(in: 0...5, using: &generator)), generator)
            }
        }
    }

    func testZeroDepthOnlyScalesC() throws {
        try forEachProduct { set, kernels in
            let generator = SeededGenerator(seed: 13)
            check(kernels, Case(set: set, transposeA: false, transposeB: false, m: 5, n: 20, k: 0, alpha: 1, beta: 0.5, padding: 1), generator)
            check(kernels, Case(set: set, transposeA: true, transposeB: true, m: 5, n: 20, k: 0, alpha: 1, beta: 0, padding: 0), generator)
        }
    }

    func testBiasAndClampAreAppliedToEveryTile() throws {
        try forEachProduct { set, kernels in
            let generator = SeededGenerator(seed: 14)
            for (m, n, k) in [(1, 1, 1), (14, 32, 10), (30, 70, 800), (64, 100, 27), (3, 2000, 16), (5, 9, 3), (6, 16, 7)] {
                for (low, high): (Float, Float) in [(-.infinity, .infinity), (0, .infinity), (0, 1)] {
                    for withBias in [false, true] {
                        let (lda, ldb, ldc) = (k + 1, n + 2, n + 3)
                        let a = generator.uniformTensor(shape: [m * lda], bound: 1).scalars
                        let b = generator.uniformTensor(shape: [k * ldb], bound: 1).scalars
                        let bias = generator.uniformTensor(shape: [m], bound: 2).scalars
                        var c = [Float](repeating: .nan, count: m * ldc)
                        bias.withUnsafeBufferPointer { pointer in
                            kernels.sgemm_bias_clamp(m, n, k, a, lda, nil, b, ldb, withBias ? pointer.baseAddress : nil, low, high, &c, ldc)
                        }
                        var expected = [Double](repeating: 0, count: m * n)
                        for i in 0..<m {
                            for j in 0..<n {
                                var sum = withBias ? Double(bias[i]) : 0
                                for p in 0..<k { sum += Double(a[i * lda + p]) * Double(b[p * ldb + j]) }
                                expected[i * n + j] = min(max(sum, Double(low)), Double(high))
                            }
                        }
                        let label = "\(set.rawValue): \(m)x\(n)x\(k) clamp \(low)...\(high) bias \(withBias)"
                        assertClose(c, ldc: ldc, expected, m: m, n: n, label)
                        for i in 0..<m { XCTAssert(c[(i * ldc + n)..<((i + 1) * ldc)].allSatisfy(\.isNaN), "\(label): wrote past column n") }
                    }
                }
            }
        }
    }

    /// A packed once (the set's pack_a) gives the same C, bit for bit, as packing it in the call,
    /// also for row blocks that start inside the packed matrix (first_row), across row blocks
    /// of the product (m > 168 and > 96) and K blocks (k > 384).
    func testPrepackedAMatchesPackingInTheCall() throws {
        try forEachProduct { set, kernels in
            let generator = SeededGenerator(seed: 16)
            for (m, n, k) in [(1, 20, 3), (15, 40, 5), (30, 70, 800), (200, 33, 400), (169, 64, 27)] {
                let (lda, ldb, ldc) = (k + 1, n + 2, n)
                let a = generator.uniformTensor(shape: [m * lda], bound: 1).scalars
                let b = generator.uniformTensor(shape: [k * ldb], bound: 1).scalars
                let bias = generator.uniformTensor(shape: [m], bound: 1).scalars
                var panels = [Float](repeating: .nan, count: kernels.packed_a_floats(m, k))
                kernels.pack_a(m, k, a, lda, &panels)
                for firstRow in Swift.stride(from: 0, to: m, by: kernels.gemm_rows) {
                    let rows = m - firstRow
                    var expected = [Float](repeating: .nan, count: rows * ldc), c = expected
                    kernels.sgemm_bias_clamp(rows, n, k, Array(a[(firstRow * lda)...]), lda, nil, b, ldb, Array(bias[firstRow...]), 0, 2, &expected, ldc)
                    panels.withUnsafeBufferPointer { pointer in
                        var packed = rstpm_packed_a(panels: pointer.baseAddress, rows: m, first_row: firstRow)
                        // A itself must not be read: NaN there would show in C.
                        let unread = [Float](repeating: .nan, count: rows * lda)
                        kernels.sgemm_bias_clamp(rows, n, k, unread, lda, &packed, b, ldb, Array(bias[firstRow...]), 0, 2, &c, ldc)
                    }
                    XCTAssertEqual(c, expected, "\(set.rawValue): \(m)x\(n)x\(k) from row \(firstRow)")
                }
            }
        }
    }

    /// The convolution variant packs B straight from the input planes: against a direct
    /// convolution, on column ranges that start and end inside output rows, narrow planes (one
    /// panel spans several output rows), padding 0..3, kernels 1, 3, 5, 7, strides 1 and 2
    /// (planes then split into their even and odd columns, odd widths included).
    func testConvolutionInputIsUnfoldedWhilePacking() throws {
        struct Shape { let channels, height, width, kernel, stride, padding, outputs, first, trailing: Int }
        let shapes = [
            Shape(channels: 5, height: 7, width: 9, kernel: 3, stride: 1, padding: 1, outputs: 6, first: 0, trailing: 0),
            Shape(channels: 3, height: 16, width: 16, kernel: 3, stride: 1, padding: 1, outputs: 64, first: 7, trailing: 5),
            Shape(channels: 8, height: 40, width: 37, kernel: 3, stride: 1, padding: 1, outputs: 20, first: 33, trailing: 70),
            Shape(channels: 2, height: 5, width: 3, kernel: 3, stride: 1, padding: 0, outputs: 3, first: 0, trailing: 0),
            Shape(channels: 4, height: 11, width: 13, kernel: 5, stride: 1, padding: 2, outputs: 17, first: 3, trailing: 1),
            Shape(channels: 3, height: 1, width: 40, kernel: 3, stride: 1, padding: 1, outputs: 5, first: 0, trailing: 2),
            Shape(channels: 16, height: 9, width: 7, kernel: 1, stride: 1, padding: 0, outputs: 30, first: 1, trailing: 0),
            Shape(channels: 130, height: 6, width: 6, kernel: 3, stride: 1, padding: 1, outputs: 9, first: 2, trailing: 3),
            Shape(channels: 3, height: 38, width: 45, kernel: 7, stride: 2, padding: 3, outputs: 16, first: 5, trailing: 9),
            Shape(channels: 6, height: 17, width: 16, kernel: 3, stride: 2, padding: 1, outputs: 29, first: 0, trailing: 0),
            Shape(channels: 4, height: 9, width: 11, kernel: 3, stride: 2, padding: 0, outputs: 5, first: 1, trailing: 2),
            Shape(channels: 2, height: 13, width: 70, kernel: 5, stride: 2, padding: 2, outputs: 14, first: 40, trailing: 31),
            Shape(channels: 7, height: 8, width: 9, kernel: 1, stride: 2, padding: 0, outputs: 3, first: 0, trailing: 1),
        ]
        try forEachProduct { set, kernels in
            let generator = SeededGenerator(seed: 15)
            for t in shapes {
                let outputHeight = (t.height + 2 * t.padding - t.kernel) / t.stride + 1
                let outputWidth = (t.width + 2 * t.padding - t.kernel) / t.stride + 1
                let (taps, plane) = (t.kernel * t.kernel, t.height * t.width)
                let k = t.channels * taps, n = outputHeight * outputWidth - t.first - t.trailing
                let x = generator.uniformTensor(shape: [t.channels * plane], bound: 1).scalars
                // Each row as its stride phases: columns q, q + stride, ... from phase q * phaseWidth.
                let phaseWidth = (t.width + t.stride - 1) / t.stride
                var phases = [Float](repeating: .nan, count: t.channels * t.height * t.stride * phaseWidth)
                for row in 0..<(t.channels * t.height) {
                    for ix in 0..<t.width { phases[(row * t.stride + ix % t.stride) * phaseWidth + ix / t.stride] = x[row * t.width + ix] }
                }
                let w = generator.uniformTensor(shape: [t.outputs * k], bound: 1).scalars
                let bias = generator.uniformTensor(shape: [t.outputs], bound: 1).scalars
                var c = [Float](repeating: .nan, count: t.outputs * n)
                phases.withUnsafeBufferPointer { planes in
                    var input = rstpm_convolution_input(planes: planes.baseAddress, height: t.height, width: t.width, kernel: t.kernel,
                                                        stride: t.stride, padding: t.padding, output_width: outputWidth)
                    kernels.convolution_bias_clamp(t.outputs, n, k, w, k, nil, &input, t.first, bias, -.infinity, .infinity, &c, n)
                }
                var expected = [Double](repeating: 0, count: t.outputs * n)
                for o in 0..<t.outputs {
                    for j in 0..<n {
                        let (oy, ox) = ((t.first + j) / outputWidth, (t.first + j) % outputWidth)
                        var sum = Double(bias[o])
                        for channel in 0..<t.channels {
                            for ky in 0..<t.kernel {
                                for kx in 0..<t.kernel {
                                    let (iy, ix) = (oy * t.stride + ky - t.padding, ox * t.stride + kx - t.padding)
                                    guard iy >= 0 && iy < t.height && ix >= 0 && ix < t.width else { continue }
                                    sum += Double(w[o * k + channel * taps + ky * t.kernel + kx]) * Double(x[channel * plane + iy * t.width + ix])
                                }
                            }
                        }
                        expected[o * n + j] = sum
                    }
                }
                assertClose(c, ldc: n, expected, m: t.outputs, n: n, "\(set.rawValue): \(t)")
            }
        }
    }

    /// Runs one case and compares C with the double-precision product; the columns between n
    /// and ldc must be left alone.
    private func check(_ kernels: rstpm_kernel_set, _ t: Case, _ generator: SeededGenerator) {
        let (rowsA, columnsA) = t.transposeA ? (t.k, t.m) : (t.m, t.k)
        let (rowsB, columnsB) = t.transposeB ? (t.n, t.k) : (t.k, t.n)
        let (lda, ldb, ldc) = (columnsA + t.padding, columnsB + t.padding, t.n + t.padding)
        let a = generator.uniformTensor(shape: [rowsA * lda], bound: 1).scalars
        let b = generator.uniformTensor(shape: [rowsB * ldb], bound: 1).scalars
        // beta 0 must not read C: any NaN there would show in the result.
        let original = t.beta == 0 ? [Float](repeating: .nan, count: t.m * ldc) : generator.uniformTensor(shape: [t.m * ldc], bound: 1).scalars
        var c = original
        kernels.sgemm(t.transposeA ? 1 : 0, t.transposeB ? 1 : 0, t.m, t.n, t.k, t.alpha, a, lda, b, ldb, t.beta, &c, ldc)
        var expected = [Double](repeating: 0, count: t.m * t.n)
        for i in 0..<t.m {
            for j in 0..<t.n {
                var sum = 0.0
                for p in 0..<t.k {
                    let left = t.transposeA ? a[p * lda + i] : a[i * lda + p]
                    let right = t.transposeB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(left) * Double(right)
                }
                expected[i * t.n + j] = Double(t.alpha) * sum + (t.beta == 0 ? 0 : Double(t.beta) * Double(original[i * ldc + j]))
            }
        }
        assertClose(c, ldc: ldc, expected, m: t.m, n: t.n, "\(t)")
        for i in 0..<t.m {
            for j in t.n..<ldc where c[i * ldc + j].bitPattern != original[i * ldc + j].bitPattern {
                XCTFail("\(t): wrote C[\(i)][\(j)] past column n")
                return
            }
        }
    }

    /// Every element within 1e-5 of the largest magnitude in `expected`.
    private func assertClose(_ c: [Float], ldc: Int, _ expected: [Double], m: Int, n: Int, _ label: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        let scale = max(expected.map(abs).max() ?? 0, 1e-3)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                let difference = abs(Double(c[i * ldc + j]) - expected[i * n + j])
                worst = difference.isNaN ? .infinity : max(worst, difference)
            }
        }
        XCTAssertLessThanOrEqual(worst / scale, 1e-5, label, file: file, line: line)
    }
}
