import CKernels
import Foundation

/// Winograd F(4x4, 3x3) for Conv2d's stride-1 3x3 convolutions in `.inference` (forward, no
/// gradient): each 4x4 output tile costs 36 multiplications per input channel instead of 144.
/// The input and output transforms are CKernels' winograd.c (per kernel set); the 36 products
/// U[xi] (O, C) * V[xi] (C, tiles) run on the kernel set's product with the transformed weights
/// packed once (OpenBLAS on the generic set).
///
/// It runs where it pays and stays accurate:
/// - f32 only: bf16 would round the transformed input, whose values reach 100x the input's
///   (B^T's coefficients sum to 10 per row and column), so the error would be far above bf16's;
/// - groups 1, at least `minimumChannels` input and output channels, and outputs at least
///   `minimumOutputSide` on each side: below that the transforms and the cropped edge tiles
///   cost more than the products save;
/// - at least `minimumTiles` tiles per item: the transformed weights are 4x the direct ones (36
///   values per 3x3 filter) and are read once per item's tiles, so with few tiles the products
///   wait on memory. 256->256 at 8x8 (4 tiles): 1.28 ms against 0.52 ms direct; 384->128 at
///   16x16 (16 tiles): 0.41 ms against 0.67 ms (RSTPM_PROFILE, one item, same runs). Per item,
///   not per call, so that an image gets the same bits alone and in a batch;
/// - not with RSTPM_WINOGRAD=0 (the direct convolution, for comparisons).
///
/// F(4x4, 3x3) with points 0, +-1, +-2 sums terms up to ~100x the output's size, so it loses
/// about two decimal digits against the direct sum (relative error ~1e-5 instead of ~1e-7 of
/// the largest output; WinogradConvolutionTests bounds it at 5e-5).
enum Winograd {
    static let minimumChannels = 32
    static let minimumOutputSide = 8
    static let minimumTiles = 16

    /// RSTPM_WINOGRAD=0 turns it off, anything else (or unset) leaves it on (Engine.useWinograd).
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["RSTPM_WINOGRAD"] != "0"

    /// Whether a convolution of this shape runs through Winograd in this mode and precision.
    static func applies(inputChannels: Int, outputChannels: Int, groups: Int, mode: LayerMode, precision: Precision, _ g: WindowGeometry) -> Bool {
        enabled && mode == .inference && precision == .f32 && g.kernel == 3 && g.stride == 1 && groups == 1
            && inputChannels >= minimumChannels && outputChannels >= minimumChannels
            && g.outputHeight >= minimumOutputSide && g.outputWidth >= minimumOutputSide
            && rstpm_winograd_tiles(g.outputHeight) * rstpm_winograd_tiles(g.outputWidth) >= minimumTiles
    }

    /// The kernel set's transforms (the generic set's are the baseline x86-64 build of the same loops).
    static var transforms: (input: rstpm_winograd_input_transform, output: rstpm_winograd_output_transform) {
        switch kernels.set {
        case .avx512: (rstpm_winograd_input_avx512, rstpm_winograd_output_avx512)
        case .avx2: (rstpm_winograd_input_avx2, rstpm_winograd_output_avx2)
        case .generic: (rstpm_winograd_input_generic, rstpm_winograd_output_generic)
        }
    }

    /// Columns (tiles) of one block: V and M of a block are 36 * (C + O) * columns floats.
    static let targetColumns = 256

    /// The distance between two of the 36 matrices of V or M: `floats` rounded up to an odd
    /// number of cache lines, so that the 36 rows the transforms touch at once fall into 36
    /// different L1 sets. 4 KiB apart (as C * columns floats often are) they would all fall into
    /// one set, which holds 12 lines, and evict each other at every step.
    static func paddedStride(_ floats: Int) -> Int { 16 * ((floats + 15) / 16 | 1) }
}

/// A convolution's weights (O, C, 3, 3) transformed once: U[xi][o][c] = (G g G^T)[xi], with
/// G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] (computed
/// in double), and on a C kernel set packed for its product (the 36 xi as 36 groups).
final class WinogradWeights {
    let version: Int
    let kernelSet: KernelSet
    let transformed: [Float]
    let packed: PackedWeights?

    init(_ weights: UnsafePointer<Float>, outputChannels O: Int, inputChannels C: Int, version: Int) {
        let G: [[Double]] = [[1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                             [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]
        var transformed = [Float](repeating: 0, count: 36 * O * C)
        for o in 0..<O {
            for c in 0..<C {
                let g = weights + (o * C + c) * 9
                // (G g)[k][x], then times G^T.
                var left = [Double](repeating: 0, count: 18)
                for k in 0..<6 {
                    for x in 0..<3 { left[k * 3 + x] = (0..<3).reduce(0) { $0 + G[k][$1] * Double(g[$1 * 3 + x]) } }
                }
                for k in 0..<6 {
                    for l in 0..<6 {
                        transformed[((k * 6 + l) * O + o) * C + c] = Float((0..<3).reduce(0) { $0 + left[k * 3 + $1] * G[l][$1] })
                    }
                }
            }
        }
        (self.version, kernelSet, self.transformed) = (version, kernels.set, transformed)
        packed = kernels.c == nil ? nil : transformed.withUnsafeBufferPointer {
            PackedWeights($0.baseAddress!, groups: 36, rows: O, columns: C, version: version, precision: .f32)
        }
    }
}

extension Engine {
    /// Whether stride-1 3x3 convolutions in `.inference` may run through Winograd (RSTPM_WINOGRAD,
    /// default on; see `Winograd` for the shapes it takes).
    public static var winograd: Bool { Winograd.enabled }

    /// Turns Winograd on or off for later engine calls, for tests and benchmarks that compare
    /// it with the direct convolution in one process; call it only while no engine work runs.
    public static func useWinograd(_ on: Bool) {
        Winograd.enabled = on
    }
}

extension Conv2d {
    /// The transformed weights, transformed again only when the weights or the kernel set change.
    func frozenWinogradWeights() -> WinogradWeights {
        frozenWeightsLock.lock()
        defer { frozenWeightsLock.unlock() }
        if let winogradWeights, winogradWeights.version == weight.version, winogradWeights.kernelSet == kernels.set { return winogradWeights }
        let transformed = weight.value.scalars.withUnsafeBufferPointer {
            WinogradWeights($0.baseAddress!, outputChannels: outputChannels, inputChannels: inputChannels, version: weight.version)
        }
        winogradWeights = transformed
        return transformed
    }

    /// The Winograd forward (see `Winograd`) of N items into y, bias and activation applied in the
    /// output transform. Tile rows of all items are cut into blocks of about
    /// `Winograd.targetColumns` tiles; per block, the input transform runs per (channel, item part),
    /// the 36 products per xi, the output transform per (output channel, item part).
    func winogradForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, N: Int, g: WindowGeometry,
                         bias: UnsafePointer<Float>?, activation: FusedActivation, weights: WinogradWeights) {
        let (C, O) = (inputChannels, outputChannels)
        let (tilesY, tilesX) = (rstpm_winograd_tiles(g.outputHeight), rstpm_winograd_tiles(g.outputWidth))
        let tileRows = N * tilesY
        let rowsPerBlock = Swift.max(1, Swift.min(tileRows, Winograd.targetColumns / tilesX))
        let (input, output) = Winograd.transforms
        let (low, high) = activation.clampBounds
        let (plane, outputPlane) = (g.height * g.width, g.outputPlane)
        let columns = rowsPerBlock * tilesX
        let (vStride, mStride) = (Winograd.paddedStride(C * columns), Winograd.paddedStride(O * columns))
        ScratchPool.withBuffer(count: 36 * (vStride + mStride)) { scratch in
            for blockStart in Swift.stride(from: 0, to: tileRows, by: rowsPerBlock) {
                let blockEnd = Swift.min(tileRows, blockStart + rowsPerBlock)
                let n = (blockEnd - blockStart) * tilesX
                let (v, m) = (scratch, scratch + 36 * vStride)
                // The block's parts in one item each: (item, tile rows, first column in the block).
                let parts = Swift.stride(from: blockStart, to: blockEnd, by: 1).filter { $0 == blockStart || $0 % tilesY == 0 }.map { row in
                    (item: row / tilesY, rows: (row % tilesY)..<Swift.min(tilesY, row % tilesY + blockEnd - row), column: (row - blockStart) * tilesX)
                }
                parallelRanges(count: C * parts.count) { range in
                    for task in range {
                        let (c, part) = (task / parts.count, parts[task % parts.count])
                        input(x + (part.item * C + c) * plane, g.height, g.width, g.padding, tilesX, part.rows.lowerBound,
                              part.rows.upperBound, v + c * n + part.column, vStride)
                    }
                }
                weights.transformed.withUnsafeBufferPointer { u in
                    parallelRanges(count: 36) { range in
                        for xi in range {
                            if let packed = weights.packed, kernelGemm(m: O, n: n) {
                                withPackedMatrix(packed.matrix(group: xi)) { packedMatrix in
                                    packed.table.sgemm_bias_clamp(O, n, C, u.baseAddress! + xi * O * C, C, packedMatrix, v + xi * vStride, n,
                                                                nil, -.infinity, .infinity, m + xi * mStride, n)
                                }
                            } else {
                                cblasGemm(false, false, O, n, C, 1, u.baseAddress! + xi * O * C, C, v + xi * vStride, n, 0, m + xi * mStride, n)
                            }
                        }
                    }
                }
                parallelRanges(count: O * parts.count) { range in
                    for task in range {
                        let (o, part) = (task / parts.count, parts[task % parts.count])
                        output(m + o * n + part.column, mStride, tilesX, part.rows.lowerBound, part.rows.upperBound, bias?[o] ?? 0,
                               low, high, y + (part.item * O + o) * outputPlane, g.outputHeight, g.outputWidth)
                    }
                }
            }
        }
    }
}
