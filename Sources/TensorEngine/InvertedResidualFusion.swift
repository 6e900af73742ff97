import CKernels
import Foundation

/// EfficientNet-Lite's inverted residual block in inference (expansion + ReLU6, depthwise kxk +
/// ReLU6, 1x1 projection, optional identity skip, BatchNorms folded), run band of output rows by
/// band of output rows on each worker: the expanded rows of a band go from the expansion's
/// product through the depthwise kernel into the projection while they are in the core's L2
/// cache. Layer by layer, the expanded tensor (up to 6x the block's input, 6 MB at 128x128) is
/// written to memory and read back twice; that traffic, not arithmetic, is what the early, wide
/// blocks cost. The expanded rows a band shares with the next stay in the buffer (moved to its
/// top), so no row is expanded twice except at the workers' boundary.
///
/// The expansion is a block's 1x1 convolution, or any convolution of stride 1 or 2 (the
/// network's stem, which then plays the expansion for Lite's first block, which has none).
///
/// Each product and the depthwise kernel are the layers' own (same precision, packed weights
/// and summation order), so the result equals the layer-by-layer one bit for bit.
/// RSTPM_FUSED_BLOCKS=0 runs the layers one by one (for comparisons).
public enum InvertedResidualFusion {
    /// RSTPM_FUSED_BLOCKS=0 turns it off, anything else (or unset) leaves it on.
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["RSTPM_FUSED_BLOCKS"] != "0"

    /// Floats of expanded rows one worker keeps: half of the 1 MiB L2 of the cores it was
    /// measured on, leaving room for the products' packed panels and the depthwise ring.
    static let expandedFloatBudget = 128 * 1024

    /// Blocks without an expansion are not fused on their own: they have no expanded tensor to
    /// keep in cache, and banding them measured 8% slower than the layers.
    ///
    /// Smallest output plane that is fused: below it the whole expanded tensor stays in cache
    /// anyway, and splitting a few rows over the workers would expand the boundary rows twice.
    static let minimumOutputSide = 32

    /// The block's output for `input` (N, Cin, H, W), or nil where the fused path does not
    /// apply (then run the layers one by one): layers not in `.inference`, a kernel set without
    /// C kernels, or a shape outside the ones above. `expansionActivation` follows the
    /// expansion (ReLU6 in the blocks; the stem's own activation).
    public static func forward(_ input: Tensor, expansion: Conv2d, expansionActivation: FusedActivation = .relu6, depthwise: Conv2d,
                               projection: Conv2d, addsInput: Bool) -> Tensor? {
        guard let g = Geometry(input, expansion: expansion, depthwise: depthwise, projection: projection) else { return nil }
        let run = { compute(input, g, expansion: expansion, expansionActivation: expansionActivation, depthwise: depthwise, projection: projection,
                            addsInput: addsInput) }
        guard LayerProfile.enabled else { return run() }
        let (e, w) = (g.expansion, g.window)
        let output = LayerProfile.measure("fused \(e.kernel)x\(e.kernel)/\(e.stride) \(g.inputChannels)->\(g.expanded), depthwise \(w.kernel)x\(w.kernel)/\(w.stride), "
                                          + "1x1 ->\(g.outputChannels) at \(w.height)x\(w.width) n\(input.shape[0])", run)
        let expansionMACs = g.expanded * g.inputChannels * e.kernel * e.kernel * e.outputPlane
        let perOutput = g.expanded * w.kernel * w.kernel + g.outputChannels * g.expanded
        LayerProfile.addFlops(2 * Double(input.shape[0] * (expansionMACs + perOutput * w.outputPlane)))
        return output
    }

    struct Geometry {
        let inputChannels: Int, expanded: Int, outputChannels: Int
        /// The expansion on the input planes, and the depthwise convolution on its output.
        let expansion: WindowGeometry, window: WindowGeometry
        /// Output rows per band, and the expanded rows a band reads at most.
        let bandRows: Int, bufferRows: Int

        var pointwiseExpansion: Bool { expansion.kernel == 1 && expansion.stride == 1 && expansion.padding == 0 }

        init?(_ input: Tensor, expansion: Conv2d, depthwise: Conv2d, projection: Conv2d) {
            guard enabled, input.rank == 4, let c = kernels.c, c.depthwise_forward_rows != nil else { return nil }
            let (Cin, E) = (input.shape[1], depthwise.inputChannels)
            let expansionWindow = WindowGeometry(height: input.shape[2], width: input.shape[3], kernel: expansion.kernelSize,
                                                 stride: expansion.stride, padding: expansion.padding)
            let (H, W) = (expansionWindow.outputHeight, expansionWindow.outputWidth)
            let window = WindowGeometry(height: H, width: W, kernel: depthwise.kernelSize, stride: depthwise.stride, padding: depthwise.padding)
            let pointwise = { (conv: Conv2d) in
                conv.mode == .inference && conv.kernelSize == 1 && conv.stride == 1 && conv.padding == 0 && conv.groups == 1
            }
            // The products take kernels up to 7 at strides 1 and 2 (rstpm_convolution_input).
            guard depthwise.mode == .inference, depthwise.isDepthwise, depthwise.outputChannels == E,
                  rstpm_depthwise_supported(Int32(window.kernel), Int32(window.stride), Int32(window.padding)) != 0,
                  pointwise(projection), projection.inputChannels == E,
                  expansion.mode == .inference, expansion.groups == 1, expansion.kernelSize <= 7, expansion.stride <= 2,
                  expansion.inputChannels == Cin, expansion.outputChannels == E,
                  window.outputHeight >= InvertedResidualFusion.minimumOutputSide, window.outputWidth >= InvertedResidualFusion.minimumOutputSide,
                  kernelGemm(m: E, n: W), kernelGemm(m: projection.outputChannels, n: window.outputWidth)
            else { return nil }
            (inputChannels, expanded, outputChannels) = (Cin, E, projection.outputChannels)
            (self.expansion, self.window) = (expansionWindow, window)
            // Bands of whole blocks of the depthwise kernel's register rows (4 on wide planes),
            // as many as the budget holds.
            let rowsPerBlock = 4
            let rowFloats = E * W
            var rows = rowsPerBlock
            while ((rows + rowsPerBlock - 1) * window.stride + window.kernel) * rowFloats <= InvertedResidualFusion.expandedFloatBudget { rows += rowsPerBlock }
            bandRows = rows
            bufferRows = (rows - 1) * window.stride + window.kernel
        }
    }

    private static func compute(_ input: Tensor, _ g: Geometry, expansion: Conv2d, expansionActivation: FusedActivation, depthwise: Conv2d,
                                projection: Conv2d, addsInput: Bool) -> Tensor {
        let N = input.shape[0]
        let (e, w) = (g.expansion, g.window)
        var output = Tensor(unspecified: [N, g.outputChannels, w.outputHeight, w.outputWidth])
        // Each worker takes a run of whole bands of one item.
        let parts = max(1, min(Engine.threadCount, w.outputHeight / g.bandRows))
        let partRows = ((w.outputHeight + parts - 1) / parts + 3) / 4 * 4
        let expansionPacked = expansion.frozenPackedWeights(rows: g.expanded, columns: g.inputChannels * e.kernel * e.kernel)!
        let projectionPacked = projection.frozenPackedWeights(rows: g.outputChannels, columns: g.expanded)!
        let depthwiseRows = kernels.c!.depthwise_forward_rows!
        input.scalars.withUnsafeBufferPointer { x in
            withExpansionPlanes(x.baseAddress!, N: N, g) { planes, plane in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    depthwise.weight.value.scalars.withUnsafeBufferPointer { depthwiseWeights in
                        depthwise.withBiasPointer { depthwiseBias in
                            projection.withBiasPointer { projectionBias in
                                expansion.withBiasPointer { expansionBias in
                                    parallelFor(iterations: N * parts) { task in
                                        let (n, part) = (task / parts, task % parts)
                                        let rows = (part * partRows)..<min(w.outputHeight, (part + 1) * partRows)
                                        guard !rows.isEmpty else { return }
                                        let item = Item(input: x.baseAddress! + n * g.inputChannels * e.height * e.width,
                                                        planes: planes + n * g.inputChannels * plane, plane: plane)
                                        let target = y.baseAddress! + n * g.outputChannels * w.outputPlane
                                        let bufferFloats = g.expanded * g.bufferRows * w.width
                                        ScratchPool.withBuffer(count: bufferFloats + g.expanded * g.bandRows * w.outputWidth) { scratch in
                                            var band = BandState(g, item: item, expanded: scratch, depthwiseOutput: scratch + bufferFloats)
                                            for first in stride(from: rows.lowerBound, to: rows.upperBound, by: g.bandRows) {
                                                let bandRows = first..<min(first + g.bandRows, rows.upperBound)
                                                band.expand(rowsFor: bandRows, packed: expansionPacked, bias: expansionBias, activation: expansionActivation)
                                                band.depthwise(bandRows, kernel: depthwiseRows, weights: depthwiseWeights.baseAddress!, bias: depthwiseBias)
                                                band.project(bandRows, packed: projectionPacked, bias: projectionBias, into: target, addingInput: addsInput)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    /// The expansion's input planes as its product reads them, and the floats between two
    /// planes: the input itself, or at stride 2 each row split into its even and odd columns
    /// (rstpm_convolution_input's layout).
    private static func withExpansionPlanes<Result>(_ x: UnsafePointer<Float>, N: Int, _ g: Geometry,
                                                     _ body: (UnsafePointer<Float>, Int) -> Result) -> Result {
        let e = g.expansion
        guard e.stride == 2 else { return body(x, e.height * e.width) }
        let (rows, phaseWidth) = (N * g.inputChannels * e.height, (e.width + 1) / 2)
        return ScratchPool.withBuffer(count: rows * 2 * phaseWidth) { phases in
            parallelRanges(count: rows) { range in
                for row in range {
                    let even = phases + row * 2 * phaseWidth
                    deinterleave(x + row * e.width, width: e.width, even: even, odd: even + phaseWidth)
                }
            }
            return body(phases, e.height * 2 * phaseWidth)
        }
    }

    /// One item's input (for the skip and a 1x1 expansion) and its planes as the expansion's
    /// product reads them.
    private struct Item {
        let input: UnsafePointer<Float>
        let planes: UnsafePointer<Float>, plane: Int
    }

    /// One worker's run of bands over one item: the expanded rows it holds and where they go.
    private struct BandState {
        let g: Geometry
        let item: Item
        let expanded: UnsafeMutablePointer<Float>, depthwiseOutput: UnsafeMutablePointer<Float>
        /// Rows [heldFirst, heldEnd) of the expansion's output are in `expanded` (row heldFirst at its top).
        var heldFirst = 0, heldEnd = 0

        init(_ g: Geometry, item: Item, expanded: UnsafeMutablePointer<Float>, depthwiseOutput: UnsafeMutablePointer<Float>) {
            (self.g, self.item, self.expanded, self.depthwiseOutput) = (g, item, expanded, depthwiseOutput)
        }

        private var bufferPlane: Int { g.bufferRows * g.window.width }

        /// Makes `expanded` hold the expanded rows the band's outputs read: keeps the rows it
        /// shares with the previous band (moved to the top) and expands the rest.
        mutating func expand(rowsFor outputRows: Range<Int>, packed: PackedWeights, bias: UnsafePointer<Float>?, activation: FusedActivation) {
            let w = g.window
            let needed = max(0, outputRows.lowerBound * w.stride - w.padding)..<min(w.height, (outputRows.upperBound - 1) * w.stride - w.padding + w.kernel)
            if needed.lowerBound >= heldFirst && needed.lowerBound < heldEnd {
                let (shift, kept) = (needed.lowerBound - heldFirst, heldEnd - needed.lowerBound)
                if shift > 0 {
                    for channel in 0..<g.expanded {
                        let top = expanded + channel * bufferPlane
                        top.update(from: top + shift * w.width, count: kept * w.width)
                    }
                }
            } else {
                heldEnd = needed.lowerBound
            }
            heldFirst = needed.lowerBound
            guard needed.upperBound > heldEnd else { return }
            let (low, high) = activation.clampBounds
            let (e, columns) = (g.expansion, (needed.upperBound - heldEnd) * w.width)
            let target = expanded + (heldEnd - heldFirst) * w.width
            // A is read from the packed panels (the `a` argument is then not read).
            var matrix = packed.matrix(group: 0)
            withUnsafePointer(to: &matrix) { matrix in
                if g.pointwiseExpansion {
                    packed.table.sgemm_bias_clamp!(g.expanded, columns, g.inputChannels, matrix.pointee.panels, g.inputChannels, matrix,
                                                   item.input + heldEnd * w.width, e.height * e.width, bias, low, high, target, bufferPlane)
                } else {
                    let k = g.inputChannels * e.kernel * e.kernel
                    var planes = rstpm_convolution_input(planes: item.planes, height: e.height, width: e.width, kernel: e.kernel,
                                                         stride: e.stride, padding: e.padding, output_width: e.outputWidth)
                    packed.table.convolution_bias_clamp!(g.expanded, columns, k, matrix.pointee.panels, k, matrix, &planes, heldEnd * w.width,
                                                         bias, low, high, target, bufferPlane)
                }
            }
            heldEnd = needed.upperBound
        }

        /// The depthwise convolution (+ ReLU6) of the band's output rows into `depthwiseOutput`.
        func depthwise(_ outputRows: Range<Int>, kernel: DepthwiseRowsKernel, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?) {
            let w = g.window
            var rows = rstpm_depthwise_rows(input: expanded, input_plane: bufferPlane, first_input_row: Int32(heldFirst), output: depthwiseOutput,
                                            output_plane: g.bandRows * w.outputWidth, first_output_row: Int32(outputRows.lowerBound),
                                            end_output_row: Int32(outputRows.upperBound))
            kernel(&rows, weights, bias, 0, g.expanded, Int32(w.height), Int32(w.width), Int32(w.kernel), Int32(w.stride), Int32(w.padding),
                   FusedActivation.relu6.kernelCode)
        }

        /// The projection of the band's depthwise output into its rows of `target`, plus the
        /// block's input where it has the identity skip.
        func project(_ outputRows: Range<Int>, packed: PackedWeights, bias: UnsafePointer<Float>?, into target: UnsafeMutablePointer<Float>,
                     addingInput: Bool) {
            let w = g.window
            let (offset, count) = (outputRows.lowerBound * w.outputWidth, outputRows.count * w.outputWidth)
            var matrix = packed.matrix(group: 0)
            withUnsafePointer(to: &matrix) { matrix in
                packed.table.sgemm_bias_clamp!(g.outputChannels, count, g.expanded, matrix.pointee.panels, g.expanded, matrix,
                                               depthwiseOutput, g.bandRows * w.outputWidth, bias, -.infinity, .infinity,
                                               target + offset, w.outputPlane)
            }
            guard addingInput else { return }
            // The skip exists only where the shape is kept (1x1 expansion, stride 1, Cin == Cout).
            for channel in 0..<g.outputChannels {
                let (sum, skip) = (target + channel * w.outputPlane + offset, item.input + channel * w.height * w.width + offset)
                for i in 0..<count { sum[i] += skip[i] }
            }
        }
    }

    typealias DepthwiseRowsKernel = @convention(c) (UnsafePointer<rstpm_depthwise_rows>?, UnsafePointer<Float>?, UnsafePointer<Float>?,
                                                    Int, Int, Int32, Int32, Int32, Int32, Int32, Int32) -> Void
}

extension Engine {
    /// Turns the fused inverted-residual path on or off for later engine calls, for tests and
    /// benchmarks that compare it with the layer-by-layer one in one process; call it only while
    /// no engine work runs.
    public static func useFusedBlocks(_ on: Bool) {
        InvertedResidualFusion.enabled = on
    }
}
