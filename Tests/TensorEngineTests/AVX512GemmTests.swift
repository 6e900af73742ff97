import CKernels
import Foundation
import TensorEngine
import XCTest

/// CKernels' AVX-512 sgemm (and its bias + clamp variant) against a double-precision product:
/// all four transpose combinations, shapes around and between the kernel's blocks (register
/// tile 14 x 32, K blocks of up to 384), alpha/beta, beta 0 over NaN, padded leading dimensions.
final class AVX512GemmTests: XCTestCase {
    struct Case: CustomStringConvertible {
        let transposeA, transposeB: Bool
        let m, n, k: Int
        let alpha, beta: Float
        let padding: Int  // extra floats per row of A, B and C
        var description: String { "A\(transposeA ? "t" : "") B\(transposeB ? "t" : "") \(m)x\(n)x\(k) alpha \(alpha) beta \(beta) padding \(padding)" }
    }

    override func setUpWithError() throws {
        guard rstpm_avx512_enabled() != 0 else { throw XCTSkip("no AVX-512 on this CPU (or RSTPM_KERNELS=generic)") }
    }

    func testEdgeShapesInAllTransposeCombinations() {
        let shapes = [(1, 1, 1), (1, 16, 1), (2, 17, 3), (13, 31, 5), (14, 32, 384), (15, 33, 385), (28, 64, 768),
                      (29, 65, 769), (3, 100, 1000), (100, 3, 7), (169, 47, 20), (40, 2049, 9), (1, 40, 300)]
        let generator = SeededGenerator(seed: 11)
        for (m, n, k) in shapes {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    check(Case(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 1, beta: 0, padding: 0), generator)
                }
            }
        }
    }

    func testRandomShapesWithAlphaBetaAndPaddedRows() {
        var generator = SeededGenerator(seed: 12)
        let scalings: [(Float, Float)] = [(1, 0), (1, 1), (-0.5, 2), (2, 0), (0.25, -1)]
        for trial in 0..<120 {
            let (alpha, beta) = scalings[trial % scalings.count]
            check(Case(transposeA: Bool.random(using: &generator), transposeB: Bool.random(using: &generator),
                       m: Int.random(in: 1...70, using: &generator), n: Int.random(in: 1...130, using: &generator),
                       k: Int.random(in: 1...900, using: &generator), alpha: alpha, beta: beta,
                       padding: Int.random(in: 0...5, using: &generator)), generator)
        }
    }

    func testZeroDepthOnlyScalesC() {
        let generator = SeededGenerator(seed: 13)
        check(Case(transposeA: false, transposeB: false, m: 5, n: 20, k: 0, alpha: 1, beta: 0.5, padding: 1), generator)
        check(Case(transposeA: true, transposeB: true, m: 5, n: 20, k: 0, alpha: 1, beta: 0, padding: 0), generator)
    }

    func testBiasAndClampAreAppliedToEveryTile() {
        let generator = SeededGenerator(seed: 14)
        for (m, n, k) in [(1, 1, 1), (14, 32, 10), (30, 70, 800), (64, 100, 27), (3, 2000, 16)] {
            for (low, high): (Float, Float) in [(-.infinity, .infinity), (0, .infinity), (0, 1)] {
                for withBias in [false, true] {
                    let (lda, ldb, ldc) = (k + 1, n + 2, n + 3)
                    let a = generator.uniformTensor(shape: [m * lda], bound: 1).scalars
                    let b = generator.uniformTensor(shape: [k * ldb], bound: 1).scalars
                    let bias = generator.uniformTensor(shape: [m], bound: 2).scalars
                    var c = [Float](repeating: .nan, count: m * ldc)
                    bias.withUnsafeBufferPointer { pointer in
                        rstpm_sgemm_bias_clamp(m, n, k, a, lda, b, ldb, withBias ? pointer.baseAddress : nil, low, high, &c, ldc)
                    }
                    var expected = [Double](repeating: 0, count: m * n)
                    for i in 0..<m {
                        for j in 0..<n {
                            var sum = withBias ? Double(bias[i]) : 0
                            for p in 0..<k { sum += Double(a[i * lda + p]) * Double(b[p * ldb + j]) }
                            expected[i * n + j] = min(max(sum, Double(low)), Double(high))
                        }
                    }
                    let label = "\(m)x\(n)x\(k) clamp \(low)...\(high) bias \(withBias)"
                    assertClose(c, ldc: ldc, expected, m: m, n: n, label)
                    for i in 0..<m { XCTAssert(c[(i * ldc + n)..<((i + 1) * ldc)].allSatisfy(\.isNaN), "\(label): wrote past column n") }
                }
            }
        }
    }

    /// Runs one case and compares C with the double-precision product; the columns between n
    /// and ldc must be left alone.
    private func check(_ t: Case, _ generator: SeededGenerator) {
        let (rowsA, columnsA) = t.transposeA ? (t.k, t.m) : (t.m, t.k)
        let (rowsB, columnsB) = t.transposeB ? (t.n, t.k) : (t.k, t.n)
        let (lda, ldb, ldc) = (columnsA + t.padding, columnsB + t.padding, t.n + t.padding)
        let a = generator.uniformTensor(shape: [rowsA * lda], bound: 1).scalars
        let b = generator.uniformTensor(shape: [rowsB * ldb], bound: 1).scalars
        // beta 0 must not read C: any NaN there would show in the result.
        let original = t.beta == 0 ? [Float](repeating: .nan, count: t.m * ldc) : generator.uniformTensor(shape: [t.m * ldc], bound: 1).scalars
        var c = original
        rstpm_sgemm(t.transposeA ? 1 : 0, t.transposeB ? 1 : 0, t.m, t.n, t.k, t.alpha, a, lda, b, ldb, t.beta, &c, ldc)
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
