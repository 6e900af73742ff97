// Over 400 lines: the window geometry and every loop that walks it (im2col, phase-split
// stride-2 rows, fused activations) change together.
import CBLAS
import CKernels
import Foundation

/// Geometry of one 2-D sliding window: an input plane (H, W), a square kernel, stride and
/// symmetric zero padding, giving an output plane (outputHeight, outputWidth).
struct WindowGeometry {
    let height: Int, width: Int
    let kernel: Int, stride: Int, padding: Int
    let outputHeight: Int, outputWidth: Int

    init(height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
        self.height = height
        self.width = width
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.outputHeight = (height + 2 * padding - kernel) / stride + 1
        self.outputWidth = (width + 2 * padding - kernel) / stride + 1
    }

    /// Explicit output size (a transposed convolution's input plane, which may exceed the
    /// floor formula by its output_padding).
    init(height: Int, width: Int, kernel: Int, stride: Int, padding: Int, outputHeight: Int, outputWidth: Int) {
        self.height = height
        self.width = width
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
    }

    var outputPlane: Int { outputHeight * outputWidth }

    /// Output columns ox whose input column ox*stride + offset lies inside [0, width).
    @inline(__always)
    func validColumns(offset: Int) -> Range<Int> {
        // ox*stride + offset >= 0  and  ox*stride + offset <= width - 1
        let low = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let highInclusive = width - 1 - offset
        let high = highInclusive < 0 ? 0 : min(outputWidth, highInclusive / stride + 1)
        return low..<max(low, high)
    }
}

/// Unfolds one input plane `(H, W)` into its `kernel*kernel` rows of `columns`, each row holding
/// the windows of output rows `rows` (`rows.count * outputWidth` values) and starting
/// `rowStride` floats after the previous one.
@inline(__always)
func im2colPlane(_ plane: UnsafePointer<Float>, _ g: WindowGeometry,
                 _ columns: UnsafeMutablePointer<Float>, rowStride: Int, rows: Range<Int>) {
    let (k, s, p, W) = (g.kernel, g.stride, g.padding, g.width)
    if s == 2 {
        im2colPlaneStride2(plane, g, columns, rowStride: rowStride, rows: rows)
        return
    }
    for ky in 0..<k {
        for kx in 0..<k {
            let row = columns + (ky * k + kx) * rowStride
            let valid = g.validColumns(offset: kx - p)
            for oy in rows {
                let out = row + (oy - rows.lowerBound) * g.outputWidth
                let iy = oy * s + ky - p
                if iy < 0 || iy >= g.height || valid.isEmpty {
                    out.update(repeating: 0, count: g.outputWidth)
                    continue
                }
                if valid.lowerBound > 0 { out.update(repeating: 0, count: valid.lowerBound) }
                let source = plane + iy * W + kx - p
                if s == 1 {
                    (out + valid.lowerBound).update(from: source + valid.lowerBound, count: valid.count)
                } else {
                    for ox in valid { out[ox] = source[ox * s] }
                }
                if valid.upperBound < g.outputWidth {
                    (out + valid.upperBound).update(repeating: 0, count: g.outputWidth - valid.upperBound)
                }
            }
        }
    }
}

/// im2colPlane for stride 2: each input row is split once into its even and odd columns, and
/// every kernel column then copies a contiguous run (instead of a strided gather per tap).
@inline(__always)
func im2colPlaneStride2(_ plane: UnsafePointer<Float>, _ g: WindowGeometry,
                        _ columns: UnsafeMutablePointer<Float>, rowStride: Int, rows: Range<Int>) {
    let (k, p, W, Wo) = (g.kernel, g.padding, g.width, g.outputWidth)
    withUnsafeTemporaryAllocation(of: Float.self, capacity: W + 2) { temporary in
        let even = temporary.baseAddress!, odd = even + (W + 1) / 2
        for oy in rows {
            for ky in 0..<k {
                let iy = oy * 2 + ky - p
                let inside = iy >= 0 && iy < g.height
                if inside { deinterleave(plane + iy * W, width: W, even: even, odd: odd) }
                for kx in 0..<k {
                    let out = columns + (ky * k + kx) * rowStride + (oy - rows.lowerBound) * Wo
                    let valid = g.validColumns(offset: kx - p)
                    if !inside || valid.isEmpty {
                        out.update(repeating: 0, count: Wo)
                        continue
                    }
                    let d = kx - p
                    let source = UnsafePointer(d & 1 == 0 ? even : odd) + (d >> 1)
                    out.update(repeating: 0, count: valid.lowerBound)
                    (out + valid.lowerBound).update(from: source + valid.lowerBound, count: valid.count)
                    (out + valid.upperBound).update(repeating: 0, count: Wo - valid.upperBound)
                }
            }
        }
    }
}

/// Adds the `kernel*kernel` rows of `columns` (windows of output rows `rows`) back into one
/// plane `(H, W)`: im2col's adjoint.
@inline(__always)
func col2imPlane(_ columns: UnsafePointer<Float>, rowStride: Int, _ g: WindowGeometry,
                 _ plane: UnsafeMutablePointer<Float>, rows: Range<Int>) {
    let (k, s, p, W) = (g.kernel, g.stride, g.padding, g.width)
    for ky in 0..<k {
        for kx in 0..<k {
            let row = columns + (ky * k + kx) * rowStride
            let valid = g.validColumns(offset: kx - p)
            if valid.isEmpty { continue }
            for oy in rows {
                let iy = oy * s + ky - p
                if iy < 0 || iy >= g.height { continue }
                let source = row + (oy - rows.lowerBound) * g.outputWidth
                let target = plane + iy * W + kx - p
                if s == 1 {
                    for ox in valid { target[ox] += source[ox] }
                } else {
                    for ox in valid { target[ox * s] += source[ox] }
                }
            }
        }
    }
}

/// Row-major `C = alpha * op(A) * op(B) + beta * C`: the product of the engine's C kernel set
/// (see `blasGemm`), else OpenBLAS.
///
/// Each call runs single-threaded; large products are split here into column (or row) blocks
/// of C, one per engine worker. OpenBLAS's own threads busy-wait between calls, which on a
/// small machine steals the cores from the engine's other parallel loops. `package`: the
/// EngineBench module times it.
@inline(__always)
package func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
           b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    Engine.prepare()
    let workers = Engine.threadCount
    let splitColumns = n >= m
    let parts = min(workers, (splitColumns ? n : m) / 16)
    if parts <= 1 || m * n * k < 1 << 18 {
        blasGemm(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    parallelFor(iterations: parts) { part in
        if splitColumns {
            let (j0, j1) = (gemmSplit(n, part, parts, unit: kernels.gemmColumns), gemmSplit(n, part + 1, parts, unit: kernels.gemmColumns))
            blasGemm(transposeA, transposeB, m, j1 - j0, k, alpha, a, lda,
                     transposeB ? b + j0 * ldb : b + j0, ldb, beta, c + j0, ldc)
        } else {
            let (i0, i1) = (gemmSplit(m, part, parts, unit: kernels.gemmRows), gemmSplit(m, part + 1, parts, unit: kernels.gemmRows))
            blasGemm(transposeA, transposeB, i1 - i0, n, k, alpha,
                     transposeA ? a + i0 : a + i0 * lda, lda, b, ldb, beta, c + i0 * ldc, ldc)
        }
    }
}

/// `C (m, n) = activation(bias + A (m, k) * B (k, n))`, bias one value per row of C (a
/// convolution's output channel), both row-major without transposes.
///
/// With a C kernel set's product, bias and activation are applied to each register tile of C before
/// it is stored, and C is cut into one block per worker (columns, or rows when C is tall and
/// narrow): each call packs its panels once, so fewer, larger calls are cheaper.
/// With OpenBLAS, C is cut into tiles of a few hundred columns (or rows), spread over the
/// workers; each tile is filled with its bias, multiplied into with beta = 1 (OpenBLAS then
/// skips its own pass that zeroes C) and activated while it is still in cache, so the output
/// is written once instead of three times.
///
/// `packedA`: A already packed (frozen weights) with the table that multiplies it (`PackedWeights.table`:
/// the precision it was packed in), used when its product runs.
func sgemmWithEpilogue(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, packedA: (matrix: rstpm_packed_a, table: rstpm_kernel_set)? = nil,
                       b: UnsafePointer<Float>, ldb: Int,
                       bias: UnsafePointer<Float>?, activation: FusedActivation, c: UnsafeMutablePointer<Float>, ldc: Int) {
    Engine.prepare()
    if kernelGemm(m: m, n: n) {
        sgemmWithEpilogueKernel(m: m, n: n, k: k, a: a, lda: lda, packedA: packedA, b: b, ldb: ldb, bias: bias, activation: activation,
                                c: c, ldc: ldc)
        return
    }
    let workers = Engine.threadCount
    // Column tiles of 256...1024 when there are enough columns for every worker; else one row
    // tile per worker (each row tile packs all of B again). Small products stay in one call.
    let small = m * n * k < 1 << 18
    let columnTiles = small ? 1 : Swift.max(1, Swift.min(n / 256, Swift.max(4 * workers, n / 1024)))
    let rowTiles = small || columnTiles >= workers ? 1 : Swift.max(1, Swift.min(m / 16, workers))
    parallelRanges(count: rowTiles * columnTiles) { range in
        for tile in range {
            let (rowTile, columnTile) = (tile / columnTiles, tile % columnTiles)
            let (i0, i1) = (m * rowTile / rowTiles, m * (rowTile + 1) / rowTiles)
            let (j0, j1) = (n * columnTile / columnTiles, n * (columnTile + 1) / columnTiles)
            if let bias {
                for i in i0..<i1 { (c + i * ldc + j0).update(repeating: bias[i], count: j1 - j0) }
            }
            cblasGemm(false, false, i1 - i0, j1 - j0, k, 1, a + i0 * lda, lda, b + j0, ldb, bias == nil ? 0 : 1, c + i0 * ldc + j0, ldc)
            if activation != .none {
                for i in i0..<i1 { addAndActivate(c + i * ldc + j0, count: j1 - j0, adding: 0, activation: activation) }
            }
        }
    }
}

/// sgemmWithEpilogue on the kernel set's product: one block of C per worker, split along the longer
/// side at multiples of the kernel's register tile (each block packs all of the other side's
/// operand again: A (m, k) for column blocks, B (k, n) for row blocks).
private func sgemmWithEpilogueKernel(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, packedA packedWeights: (matrix: rstpm_packed_a, table: rstpm_kernel_set)?,
                                     b: UnsafePointer<Float>, ldb: Int,
                                     bias: UnsafePointer<Float>?, activation: FusedActivation, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let (low, high) = activation.clampBounds
    // Packed weights are multiplied by the table that packed them (bf16 where chosen).
    let (packedA, product) = (packedWeights?.matrix, (packedWeights?.table ?? kernels.c)!.sgemm_bias_clamp!)
    let splitColumns = n >= m
    let extent = splitColumns ? n : m, unit = splitColumns ? kernels.gemmColumns : kernels.gemmRows
    let parts = m * n * k < 1 << 18 ? 1 : Swift.max(1, Swift.min(Engine.threadCount, extent / unit))
    let block = { (part: Int) in
        let (start, end) = (gemmSplit(extent, part, parts, unit: unit), gemmSplit(extent, part + 1, parts, unit: unit))
        if splitColumns {
            withPackedMatrix(packedA) { packed in
                product(m, end - start, k, a, lda, packed, b + start, ldb, bias, low, high, c + start, ldc)
            }
        } else {
            // Row blocks start at multiples of the register tile, as the packed panels do.
            var rowsPacked = packedA
            rowsPacked?.first_row += start
            withPackedMatrix(rowsPacked) { packed in
                product(end - start, n, k, a + start * lda, lda, packed, b, ldb, bias.map { $0 + start }, low, high,
                        c + start * ldc, ldc)
            }
        }
    }
    if parts == 1 {
        block(0)
    } else {
        parallelFor(iterations: parts, block)
    }
}

extension FusedActivation {
    /// The activation as a clamp to [low, high], as the C products apply it.
    var clampBounds: (low: Float, high: Float) {
        switch self {
        case .none: (-.infinity, .infinity)
        case .relu: (0, .infinity)
        case .relu6: (0, 6)
        }
    }
}

/// Whether the kernel set's C product runs this shape: it is faster than OpenBLAS from 2 rows
/// and 16 columns of C up; narrower products (matrix-vector like) stay on OpenBLAS, as do all
/// under the generic set. `package`: the EngineBench module reports it.
@inline(__always)
package func kernelGemm(m: Int, n: Int) -> Bool {
    n >= 16 && m >= 2 && kernels.c != nil
}

/// Start of part `part` of `parts` over `0..<extent`, at a multiple of `unit` (the last part
/// ends at `extent`).
@inline(__always)
func gemmSplit(_ extent: Int, _ part: Int, _ parts: Int, unit: Int) -> Int {
    part >= parts ? extent : Swift.min(extent, (extent * part / parts + unit / 2) / unit * unit)
}

/// Row-major `C = alpha * op(A) * op(B) + beta * C` on the calling thread: the kernel set's C
/// product where `kernelGemm` picks it, else OpenBLAS.
@inline(__always)
func blasGemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
              _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
              _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    if kernelGemm(m: m, n: n) {
        kernels.c!.sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    } else {
        cblasGemm(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

/// Row-major `C = alpha * op(A) * op(B) + beta * C` through OpenBLAS on the calling thread.
@inline(__always)
func cblasGemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
               _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
               _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Splits a row into its even and odd columns, so that stride-2 windows read contiguously:
/// input column 2*ox + d is `even[ox + d>>1]` for even d and `odd[ox + d>>1]` for odd d.
/// The kernel set's vector split where it has one.
@inline(__always)
func deinterleave(_ row: UnsafePointer<Float>, width: Int, even: UnsafeMutablePointer<Float>, odd: UnsafeMutablePointer<Float>) {
    if let split = kernels.c?.deinterleave {
        split(row, width, even, odd)
        return
    }
    for j in 0..<(width / 2) {
        even[j] = row[2 * j]
        odd[j] = row[2 * j + 1]
    }
    if width % 2 == 1 { even[width / 2] = row[width - 1] }
}

/// Floats of scratch `depthwisePlaneForward` needs for one plane of geometry `g`.
func depthwiseScratchSize(_ g: WindowGeometry) -> Int {
    (g.height + 2 * g.padding) * g.stride * depthwiseRowLength(g)
}

/// Length of one de-interleaved padded row: every output column's taps, and whole vectors.
@inline(__always)
func depthwiseRowLength(_ g: WindowGeometry) -> Int {
    (g.outputWidth + 7) / 8 * 8 + (g.kernel - 1) / g.stride + 8
}

/// Copies an input plane into `scratch` with its zero padding, each row split into its `stride`
/// phases: padded row r, phase q, position j holds input (r - p, q + s*j - p), zero outside.
@inline(__always)
func fillPhaseRows(_ input: UnsafePointer<Float>, _ g: WindowGeometry, _ scratch: UnsafeMutablePointer<Float>) {
    let (s, p, H, W) = (g.stride, g.padding, g.height, g.width)
    let rowLength = depthwiseRowLength(g)
    for r in 0..<(H + 2 * p) {
        let iy = r - p
        for q in 0..<s {
            let row = scratch + (r * s + q) * rowLength
            guard iy >= 0 && iy < H else {
                row.update(repeating: 0, count: rowLength)
                continue
            }
            let (first, end) = phaseRange(g, phase: q)
            row.update(repeating: 0, count: first)
            let source = input + iy * W + q - p
            if s == 1 {
                (row + first).update(from: source + first, count: end - first)
            } else {
                for j in first..<end { row[j] = source[s * j] }
            }
            (row + end).update(repeating: 0, count: rowLength - end)
        }
    }
}

/// Positions j of phase q whose input column q + s*j - p lies inside [0, W).
@inline(__always)
func phaseRange(_ g: WindowGeometry, phase q: Int) -> (first: Int, end: Int) {
    let (s, p) = (g.stride, g.padding)
    let first = Swift.max(0, (p - q + s - 1) / s)
    return (first, Swift.min(depthwiseRowLength(g), Swift.max(first, (g.width - 1 + p - q) / s + 1)))
}

/// Each tap's offset from an output row's first phase row, so inner loops do no division
/// (the caller deallocates).
@inline(__always)
func phaseTapOffsets(_ g: WindowGeometry) -> UnsafeMutablePointer<Int> {
    let (k, s, rowLength) = (g.kernel, g.stride, depthwiseRowLength(g))
    let taps = UnsafeMutablePointer<Int>.allocate(capacity: k * k)
    for ky in 0..<k {
        for kx in 0..<k { taps[ky * k + kx] = (ky * s + kx % s) * rowLength + kx / s }
    }
    return taps
}

/// Depthwise forward for one output channel plane: `out (Ho, Wo) = act(bias + sum_k w[k] * window(in))`.
/// The plane is first copied into `scratch` with its zero padding, each row split into its
/// `stride` phases (columns q, q+s, q+2s, ...), so that every kernel tap of eight adjacent
/// outputs is one contiguous vector load; each group of outputs then sums all its taps in
/// registers and is stored once, already activated.
@inline(__always)
func depthwisePlaneForward(_ input: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, bias: Float,
                           _ g: WindowGeometry, _ output: UnsafeMutablePointer<Float>,
                           activation: FusedActivation, scratch: UnsafeMutablePointer<Float>) {
    let (k, s, Ho, Wo) = (g.kernel, g.stride, g.outputHeight, g.outputWidth)
    let rowLength = depthwiseRowLength(g)
    fillPhaseRows(input, g, scratch)
    let kk = k * k
    let taps = phaseTapOffsets(g)
    defer { taps.deallocate() }
    let (low, high): (Float, Float) = switch activation {
    case .none: (-.infinity, .infinity)
    case .relu: (0, .infinity)
    case .relu6: (0, 6)
    }
    let (lowVector, highVector, biasVector) = (SIMD8<Float>(repeating: low), SIMD8<Float>(repeating: high), SIMD8<Float>(repeating: bias))
    for oy in 0..<Ho {
        let target = output + oy * Wo
        var ox = 0
        while ox < Wo {
            var sum0 = biasVector, sum1 = biasVector
            let base = scratch + oy * s * s * rowLength + ox
            for t in 0..<kk {
                let w = SIMD8<Float>(repeating: weights[t])
                let source = base + taps[t]
                sum0 += w * load8(source)
                sum1 += w * load8(source + 8)
            }
            sum0 = sum0.replacing(with: lowVector, where: sum0 .< lowVector).replacing(with: highVector, where: sum0 .> highVector)
            sum1 = sum1.replacing(with: lowVector, where: sum1 .< lowVector).replacing(with: highVector, where: sum1 .> highVector)
            if ox + 16 <= Wo {
                store8(sum0, target + ox)
                store8(sum1, target + ox + 8)
            } else {
                for i in 0..<Swift.min(8, Wo - ox) { target[ox + i] = sum0[i] }
                for i in 0..<Swift.max(0, Wo - ox - 8) { target[ox + 8 + i] = sum1[i] }
            }
            ox += 16
        }
    }
}

/// Floats of scratch `depthwisePlaneBackward` needs for one plane of geometry `g`.
func depthwiseBackwardScratchSize(_ g: WindowGeometry) -> Int {
    2 * depthwiseScratchSize(g) + (g.outputWidth + 15) / 16 * 16 + 8 * g.kernel * g.kernel
}

/// Depthwise backward for one output channel plane, in the forward's phase-row layout: for
/// sixteen outputs at a time, each tap adds `w * dy` into the padded input gradient and
/// `dy * x` into its weight-gradient vector; the padded gradient is then added back into
/// `inputGradient` and the vectors summed into `weightGradient`.
@inline(__always)
func depthwisePlaneBackward(_ input: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                            _ outputGradient: UnsafePointer<Float>, _ g: WindowGeometry,
                            inputGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>,
                            scratch: UnsafeMutablePointer<Float>) {
    let (k, s, p, H, W, Ho, Wo) = (g.kernel, g.stride, g.padding, g.height, g.width, g.outputHeight, g.outputWidth)
    let (kk, rowLength, size, paddedWidth) = (k * k, depthwiseRowLength(g), depthwiseScratchSize(g), (Wo + 15) / 16 * 16)
    let (x, dxPadded) = (scratch, scratch + size)
    let (dyRow, sums) = (dxPadded + size, dxPadded + size + paddedWidth)
    fillPhaseRows(input, g, x)
    dxPadded.update(repeating: 0, count: size)
    sums.update(repeating: 0, count: 8 * kk)
    let taps = phaseTapOffsets(g)
    defer { taps.deallocate() }
    for oy in 0..<Ho {
        // The row's gradient padded with zeros to whole vectors: the extra lanes add nothing.
        dyRow.update(from: outputGradient + oy * Wo, count: Wo)
        (dyRow + Wo).update(repeating: 0, count: paddedWidth - Wo)
        let base = oy * s * s * rowLength
        var ox = 0
        while ox < Wo {
            let (g0, g1) = (load8(dyRow + ox), load8(dyRow + ox + 8))
            for t in 0..<kk {
                let offset = base + ox + taps[t]
                let w = SIMD8<Float>(repeating: weights[t])
                store8(load8(sums + 8 * t) + g0 * load8(x + offset) + g1 * load8(x + offset + 8), sums + 8 * t)
                store8(load8(dxPadded + offset) + w * g0, dxPadded + offset)
                store8(load8(dxPadded + offset + 8) + w * g1, dxPadded + offset + 8)
            }
            ox += 16
        }
    }
    for t in 0..<kk { weightGradient[t] += load8(sums + 8 * t).sum() }
    for r in p..<(p + H) {
        let iy = r - p
        for q in 0..<s {
            let row = dxPadded + (r * s + q) * rowLength
            let (first, end) = phaseRange(g, phase: q)
            let target = inputGradient + iy * W + q - p
            if s == 1 {
                for j in first..<end { target[j] += row[j] }
            } else {
                for j in first..<end { target[s * j] += row[j] }
            }
        }
    }
}
