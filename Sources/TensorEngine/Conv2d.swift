// Over 400 lines: the layer and its depthwise, pointwise and im2col kernels share the cached
// input, packed weights and bias that stay private to the class.
import CKernels

/// 2-D convolution as `torch.nn.Conv2d` with a square kernel, equal stride and symmetric zero
/// padding in both directions, any groups (depthwise included), no dilation.
///
/// Weight (outputChannels, inputChannels/groups, kernelSize, kernelSize), bias (outputChannels).
/// Initialisation as PyTorch's default: weight and bias uniform in +-1/sqrt(fan_in).
/// Kernels: 1x1 stride-1 convolutions go straight to sgemm (strided 1x1 after copying out the
/// rows and columns they read); depthwise ones (one input channel
/// per group) run a direct vectorised loop over zero-padded, stride-phase-split rows (the C
/// kernels of the engine's kernel set where it has them, see DepthwiseAcceleration); strides 1
/// and 2 on a C kernel set's product pack its panels straight from the input planes; the rest
/// unfold (im2col) several batch items into one matrix and multiply it with one sgemm per group.
/// The bias (and, through `inferenceForward`, the activation) is applied per output tile.
public final class Conv2d: Layer {
    public var mode: LayerMode = .training
    public let inputChannels: Int, outputChannels: Int
    public let kernelSize: Int, stride: Int, padding: Int, groups: Int
    public let weight: Parameter
    public let bias: Parameter?
    private var cachedInput: Tensor?
    /// The weights packed for the kernel set's product, kept in `.inference` while they are unchanged.
    private var packedWeights: PackedWeights?
    /// The precision of this layer's inference products; nil follows the engine's
    /// (`Engine.precision`). Set it for a whole network with `setInferencePrecision(_:)`.
    public var inferencePrecision: Precision?
    /// The weights transformed for Winograd (WinogradConvolution.swift), kept as packedWeights is.
    var winogradWeights: WinogradWeights?

    public convenience init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, groups: Int = 1, bias: Bool = true, generator: SeededGenerator) {
        let fanIn = inputChannels / groups * kernelSize * kernelSize
        let bound = 1 / Float(fanIn).squareRoot()
        let weight = generator.uniformTensor(shape: [outputChannels, inputChannels / groups, kernelSize, kernelSize], bound: bound)
        let biasValue = bias ? generator.uniformTensor(shape: [outputChannels], bound: bound) : nil
        self.init(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
                  padding: padding, groups: groups, weight: weight, bias: biasValue)
    }

    /// A convolution with given weights (e.g. loaded, or folded from BatchNorm).
    public init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, groups: Int = 1, weight: Tensor, bias: Tensor?) {
        precondition(groups >= 1 && inputChannels % groups == 0 && outputChannels % groups == 0,
                     "Conv2d: channels \(inputChannels)->\(outputChannels) not divisible by groups \(groups)")
        precondition(kernelSize >= 1 && stride >= 1 && padding >= 0, "Conv2d: kernel \(kernelSize) stride \(stride) padding \(padding)")
        precondition(weight.shape == [outputChannels, inputChannels / groups, kernelSize, kernelSize],
                     "Conv2d weight shape \(weight.shape), expected \([outputChannels, inputChannels / groups, kernelSize, kernelSize])")
        precondition(bias == nil || bias!.shape == [outputChannels], "Conv2d bias shape \(bias!.shape), expected [\(outputChannels)]")
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.weight = Parameter(name: "weight", value: weight)
        self.bias = bias.map { Parameter(name: "bias", value: $0) }
    }

    public var ownParameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    var isDepthwise: Bool { inputChannels == groups }
    private var isPointwise: Bool { kernelSize == 1 && stride == 1 && padding == 0 }

    /// input (N, inputChannels, H, W) -> output (N, outputChannels, Ho, Wo)
    public func forward(_ input: Tensor) -> Tensor {
        let output = profiledCompute(input, activation: .none)
        cachedInput = mode.cachesForBackward ? input : nil
        return output
    }

    /// The convolution followed by `activation`, in one pass over the output: the bias and the
    /// activation are applied while each output plane is in cache, instead of two more passes
    /// and a second tensor. Caches nothing, so the layer must be in `.inference` mode.
    public func inferenceForward(_ input: Tensor, activation: FusedActivation) -> Tensor {
        precondition(mode == .inference, "Conv2d.inferenceForward needs .inference mode (nothing is cached for backward), mode is \(mode)")
        // Only read once it is nil: items of a batch may run this layer on several workers at once.
        if cachedInput != nil { cachedInput = nil }
        return profiledCompute(input, activation: activation)
    }

    private func compute(_ input: Tensor, activation: FusedActivation) -> Tensor {
        precondition(input.rank == 4 && input.shape[1] == inputChannels,
                     "Conv2d(\(inputChannels)->\(outputChannels)) got input \(input.shape)")
        let (N, H, W) = (input.shape[0], input.shape[2], input.shape[3])
        let g = WindowGeometry(height: H, width: W, kernel: kernelSize, stride: stride, padding: padding)
        precondition(g.outputHeight > 0 && g.outputWidth > 0, "Conv2d: input \(H)x\(W) too small for kernel \(kernelSize)")
        var output = Tensor(unspecified: [N, outputChannels, g.outputHeight, g.outputWidth])
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    if isDepthwise {
                        depthwiseForward(x.baseAddress!, w.baseAddress!, y.baseAddress!, N: N, g: g, activation: activation)
                    } else {
                        withBiasPointer { b in
                            if isPointwise {
                                pointwiseForward(x.baseAddress!, w.baseAddress!, y.baseAddress!, N: N, L: H * W, bias: b, activation: activation)
                            } else if Winograd.applies(inputChannels: inputChannels, outputChannels: outputChannels, groups: groups, mode: mode,
                                                               precision: inferencePrecision ?? kernels.precision, g) {
                                winogradForward(x.baseAddress!, y.baseAddress!, N: N, g: g, bias: b, activation: activation,
                                                weights: frozenWinogradWeights())
                            } else {
                                unfoldedForward(x.baseAddress!, w.baseAddress!, y.baseAddress!, N: N, g: g, bias: b, activation: activation)
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    /// `compute`, timed under RSTPM_PROFILE by shape and route (see LayerProfile).
    private func profiledCompute(_ input: Tensor, activation: FusedActivation) -> Tensor {
        guard LayerProfile.enabled else { return compute(input, activation: activation) }
        let output = LayerProfile.measure("conv \(isDepthwise ? "depthwise " : "")\(kernelSize)x\(kernelSize)/\(stride) \(inputChannels)->\(outputChannels) "
                                          + "at \(input.shape[2])x\(input.shape[3]) n\(input.shape[0])") { compute(input, activation: activation) }
        LayerProfile.addFlops(2 * Double(output.count * inputChannels / groups * kernelSize * kernelSize))
        return output
    }

    func withBiasPointer<Result>(_ body: (UnsafePointer<Float>?) -> Result) -> Result {
        guard let bias else { return body(nil) }
        return bias.value.scalars.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// outputGradient (N, outputChannels, Ho, Wo) -> input gradient (N, inputChannels, H, W)
    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = requireCache(cachedInput, "Conv2d")
        cachedInput = nil
        let (N, H, W) = (input.shape[0], input.shape[2], input.shape[3])
        let g = WindowGeometry(height: H, width: W, kernel: kernelSize, stride: stride, padding: padding)
        precondition(outputGradient.shape == [N, outputChannels, g.outputHeight, g.outputWidth],
                     "Conv2d.backward: gradient \(outputGradient.shape) for output \([N, outputChannels, g.outputHeight, g.outputWidth])")
        // The C depthwise backward writes every input-gradient value; the Swift loops add.
        var inputGradient = isDepthwise && DepthwiseAcceleration.handles(g) ? Tensor(unspecified: input.shape) : Tensor(zeros: input.shape)
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                        weight.withGradient { dw in
                            if isDepthwise {
                                depthwiseBackward(x.baseAddress!, w.baseAddress!, dy.baseAddress!, dx.baseAddress!, dw.baseAddress!, N: N, g: g)
                            } else if isPointwise {
                                pointwiseBackward(x.baseAddress!, w.baseAddress!, dy.baseAddress!, dx.baseAddress!, dw.baseAddress!, N: N, L: H * W)
                            } else {
                                unfoldedBackward(x.baseAddress!, w.baseAddress!, dy.baseAddress!, dx.baseAddress!, dw.baseAddress!, N: N, g: g)
                            }
                        }
                    }
                }
            }
        }
        if let bias { accumulateBiasGradient(outputGradient, into: bias) }
        return inputGradient
    }

    /// This convolution followed by `batchNorm` in running-statistics mode, as one convolution:
    /// w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta.
    public func folding(_ batchNorm: BatchNorm2d) -> Conv2d {
        precondition(batchNorm.channels == outputChannels, "folding BatchNorm2d(\(batchNorm.channels)) into Conv2d(->\(outputChannels))")
        let (scale, shift) = batchNorm.inferenceScaleAndShift()
        var foldedWeight = weight.value
        let perChannel = foldedWeight.count / outputChannels
        var foldedBias = [Float](repeating: 0, count: outputChannels)
        for o in 0..<outputChannels {
            for i in 0..<perChannel { foldedWeight.scalars[o * perChannel + i] *= scale[o] }
            foldedBias[o] = (bias?.value.scalars[o] ?? 0) * scale[o] + shift[o]
        }
        let folded = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
                            padding: padding, groups: groups, weight: foldedWeight, bias: Tensor(shape: [outputChannels], scalars: foldedBias))
        folded.mode = mode
        return folded
    }

    // MARK: kernels

    /// Depthwise: output channel o reads input channel o / multiplier; one plane per task.
    private func depthwiseForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, N: Int, g: WindowGeometry,
                                  activation: FusedActivation) {
        let (C, O, kk, plane, outPlane) = (inputChannels, outputChannels, kernelSize * kernelSize, g.height * g.width, g.outputPlane)
        let multiplier = O / C
        if DepthwiseAcceleration.handles(g) {
            withBiasPointer { b in
                DepthwiseAcceleration.forward(x, w, bias: b, y, N: N, channels: C, multiplier: multiplier, g: g, activation: activation)
            }
            return
        }
        let biasValues = bias?.value.scalars
        parallelRanges(count: N * O) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: depthwiseScratchSize(g)) { scratch in
                for task in range {
                    let (n, o) = (task / O, task % O)
                    depthwisePlaneForward(x + (n * C + o / multiplier) * plane, w + o * kk, bias: biasValues?[o] ?? 0, g, y + task * outPlane,
                                          activation: activation, scratch: scratch.baseAddress!)
                }
            }
        }
    }

    private func depthwiseBackward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                   _ dx: UnsafeMutablePointer<Float>, _ dw: UnsafeMutablePointer<Float>, N: Int, g: WindowGeometry) {
        let (C, O, kk, plane, outPlane) = (inputChannels, outputChannels, kernelSize * kernelSize, g.height * g.width, g.outputPlane)
        let multiplier = O / C
        if DepthwiseAcceleration.handles(g) {
            DepthwiseAcceleration.backward(x, w, dy, dx, dw, N: N, channels: C, multiplier: multiplier, g: g)
            return
        }
        // Split by input channel: each task owns its dx planes and its weights' gradients.
        parallelRanges(count: C) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: depthwiseBackwardScratchSize(g)) { scratch in
                for c in range {
                    for o in (c * multiplier)..<((c + 1) * multiplier) {
                        for n in 0..<N {
                            depthwisePlaneBackward(x + (n * C + c) * plane, w + o * kk, dy + (n * O + o) * outPlane, g,
                                                   inputGradient: dx + (n * C + c) * plane, weightGradient: dw + o * kk, scratch: scratch.baseAddress!)
                        }
                    }
                }
            }
        }
    }

    /// 1x1 stride 1: per item and group, y (Og, L) = act(bias + w (Og, Cg) * x (Cg, L)).
    private func pointwiseForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, N: Int, L: Int,
                                  bias: UnsafePointer<Float>?, activation: FusedActivation) {
        let (Cg, Og) = (inputChannels / groups, outputChannels / groups)
        let packed = kernelGemm(m: Og, n: L) ? frozenPackedWeights(rows: Og, columns: Cg) : nil
        for n in 0..<N {
            for group in 0..<groups {
                sgemmWithEpilogue(m: Og, n: L, k: Cg, a: w + group * Og * Cg, lda: Cg, packedA: packed.map { ($0.matrix(group: group), $0.table) },
                                  b: x + (n * inputChannels + group * Cg) * L, ldb: L,
                                  bias: bias.map { $0 + group * Og }, activation: activation, c: y + (n * outputChannels + group * Og) * L, ldc: L)
            }
        }
    }

    private func pointwiseBackward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                   _ dx: UnsafeMutablePointer<Float>, _ dw: UnsafeMutablePointer<Float>, N: Int, L: Int) {
        let (Cg, Og) = (inputChannels / groups, outputChannels / groups)
        for n in 0..<N {
            for group in 0..<groups {
                let xg = x + (n * inputChannels + group * Cg) * L, dyg = dy + (n * outputChannels + group * Og) * L
                // dw (Og, Cg) += dy (Og, L) * x^T (L, Cg)
                sgemm(transposeA: false, transposeB: true, m: Og, n: Cg, k: L, a: dyg, lda: L, b: xg, ldb: L,
                      beta: 1, c: dw + group * Og * Cg, ldc: Cg)
                // dx (Cg, L) = w^T (Cg, Og) * dy (Og, L)
                sgemm(transposeA: true, transposeB: false, m: Cg, n: L, k: Og, a: w + group * Og * Cg, lda: Cg, b: dyg, ldb: L,
                      beta: 0, c: dx + (n * inputChannels + group * Cg) * L, ldc: L)
            }
        }
    }

    /// A slice of the unfolded input that one sgemm per group handles: several whole batch items
    /// (small planes: enough columns to keep both cores busy) or some output rows of one item
    /// (large planes: bounds the scratch memory).
    private struct ColumnBlock {
        let firstItem: Int, items: Int
        let rows: Range<Int>
        func width(_ g: WindowGeometry) -> Int { items * rows.count * g.outputWidth }
    }

    private static let targetColumns = 2048
    private static let maximumColumnFloats = 1 << 20

    private func columnBlocks(N: Int, g: WindowGeometry) -> [ColumnBlock] {
        let (rowFloats, L) = (inputChannels * kernelSize * kernelSize, g.outputPlane)
        let items = min(N, max(1, Self.targetColumns / L), max(1, Self.maximumColumnFloats / (rowFloats * L)))
        if items > 1 {
            return Swift.stride(from: 0, to: N, by: items).map { ColumnBlock(firstItem: $0, items: min(items, N - $0), rows: 0..<g.outputHeight) }
        }
        let rowsPerBlock = max(1, min(g.outputHeight, Self.maximumColumnFloats / (rowFloats * g.outputWidth)))
        return (0..<N).flatMap { n in
            Swift.stride(from: 0, to: g.outputHeight, by: rowsPerBlock).map {
                ColumnBlock(firstItem: n, items: 1, rows: $0..<min($0 + rowsPerBlock, g.outputHeight))
            }
        }
    }

    /// Unfolds a block into columns (C*k*k, width): item i's windows start at column i*rows*Wo.
    private func unfold(_ x: UnsafePointer<Float>, _ block: ColumnBlock, g: WindowGeometry, into columns: UnsafeMutablePointer<Float>) {
        let (C, kk, plane) = (inputChannels, kernelSize * kernelSize, g.height * g.width)
        let (rowStride, itemWidth) = (block.width(g), block.rows.count * g.outputWidth)
        parallelRanges(count: block.items * C) { range in
            for task in range {
                let (i, c) = (task / C, task % C)
                im2colPlane(x + ((block.firstItem + i) * C + c) * plane, g, columns + c * kk * rowStride + i * itemWidth,
                            rowStride: rowStride, rows: block.rows)
            }
        }
    }

    private func scratchSize(_ blocks: [ColumnBlock], g: WindowGeometry) -> Int {
        let width = blocks.map { $0.width(g) }.max() ?? 0
        return inputChannels * kernelSize * kernelSize * width + (blocks.contains { $0.items > 1 } ? outputChannels * width : 0)
    }

    private func unfoldedForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, N: Int, g: WindowGeometry,
                                 bias: UnsafePointer<Float>?, activation: FusedActivation) {
        let (C, O, kk, L) = (inputChannels, outputChannels, kernelSize * kernelSize, g.outputPlane)
        let (K, Og) = (C / groups * kk, O / groups)
        if kernelSize == 1 && padding == 0 && kernelGemm(m: Og, n: L) {
            subsampledPointwiseForward(x, w, y, N: N, g: g, bias: bias, activation: activation)
            return
        }
        if stride <= 2 && kernelSize <= 7 && kernelGemm(m: Og, n: L) {
            implicitForward(x, w, y, N: N, g: g, bias: bias, activation: activation)
            return
        }
        let blocks = columnBlocks(N: N, g: g)
        ScratchPool.withBuffer(count: scratchSize(blocks, g: g)) { scratch in
            for block in blocks {
                let width = block.width(g)
                let columns = scratch, gathered = scratch + C * kk * width
                unfold(x, block, g: g, into: columns)
                // One item: straight into its output rows. Several: into (O, width), then scattered.
                let (target, ldc) = block.items == 1 ? (y + block.firstItem * O * L + block.rows.lowerBound * g.outputWidth, L) : (gathered, width)
                for group in 0..<groups {
                    sgemmWithEpilogue(m: Og, n: width, k: K, a: w + group * Og * K, lda: K, b: columns + group * K * width, ldb: width,
                                      bias: bias.map { $0 + group * Og }, activation: activation, c: target + group * Og * ldc, ldc: ldc)
                }
                if block.items > 1 {
                    for i in 0..<block.items {
                        for o in 0..<O {
                            (y + ((block.firstItem + i) * O + o) * L).update(from: gathered + o * width + i * L, count: L)
                        }
                    }
                }
            }
        }
    }

    /// 1x1 with a stride (ResNet's downsampling shortcuts): the outputs read only every stride-th
    /// row and column, so those are copied out (a quarter of the input at stride 2) and multiplied
    /// as a stride-1 1x1 convolution, instead of splitting all of the input into stride phases.
    private func subsampledPointwiseForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, N: Int,
                                            g: WindowGeometry, bias: UnsafePointer<Float>?, activation: FusedActivation) {
        let (planes, plane) = (N * inputChannels, g.outputPlane)
        ScratchPool.withBuffer(count: planes * plane) { sampled in
            parallelRanges(count: planes) { range in
                for index in range {
                    let (source, target) = (x + index * g.height * g.width, sampled + index * plane)
                    for oy in 0..<g.outputHeight {
                        let row = source + oy * stride * g.width, out = target + oy * g.outputWidth
                        for ox in 0..<g.outputWidth { out[ox] = row[ox * stride] }
                    }
                }
            }
            pointwiseForward(sampled, w, y, N: N, L: plane, bias: bias, activation: activation)
        }
    }

    /// In `.inference`, each group's weights (rows, columns) packed for the kernel set's product,
    /// packed again only when the weights (or the kernel set or precision, whose layout it is) change; nil (and nothing kept) in the other modes,
    /// where the weights change every step.
    func frozenPackedWeights(rows: Int, columns: Int) -> PackedWeights? {
        guard mode == .inference else {
            packedWeights = nil
            return nil
        }
        let precision = inferencePrecision ?? kernels.precision
        frozenWeightsLock.lock()
        defer { frozenWeightsLock.unlock() }
        if let packedWeights, packedWeights.matches(version: weight.version, precision: precision) { return packedWeights }
        let packed = weight.value.scalars.withUnsafeBufferPointer {
            PackedWeights($0.baseAddress!, groups: groups, rows: rows, columns: columns, version: weight.version, precision: precision)
        }
        packedWeights = packed
        return packed
    }

    /// Strides 1 and 2 on a C kernel set: the product packs its panels straight from the
    /// input planes (no im2col buffer written and read back; at stride 2 the planes are first
    /// split into even and odd columns, one pass instead of kernel^2). Tasks are (item, group,
    /// column part), the columns split only as far as needed to give every worker one.
    private func implicitForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, N: Int, g: WindowGeometry,
                                 bias: UnsafePointer<Float>?, activation: FusedActivation) {
        guard stride == 2 else {
            implicitForward(planes: x, phasePlane: g.height * g.width, w, y, N: N, g: g, bias: bias, activation: activation)
            return
        }
        let (rows, phaseWidth) = (N * inputChannels * g.height, (g.width + 1) / 2)
        ScratchPool.withBuffer(count: rows * 2 * phaseWidth) { phases in
            parallelRanges(count: rows) { range in
                for row in range {
                    let even = phases + row * 2 * phaseWidth
                    deinterleave(x + row * g.width, width: g.width, even: even, odd: even + phaseWidth)
                }
            }
            implicitForward(planes: phases, phasePlane: g.height * 2 * phaseWidth, w, y, N: N, g: g, bias: bias, activation: activation)
        }
    }

    /// implicitForward on planes already in rstpm_convolution_input's stride-phase layout,
    /// `phasePlane` floats apart.
    private func implicitForward(planes x: UnsafePointer<Float>, phasePlane plane: Int, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                 N: Int, g: WindowGeometry, bias: UnsafePointer<Float>?, activation: FusedActivation) {
        let (C, O, kk, L) = (inputChannels, outputChannels, kernelSize * kernelSize, g.outputPlane)
        let (Cg, Og) = (C / groups, O / groups)
        let K = Cg * kk
        let (low, high) = activation.clampBounds
        let products = N * groups
        let parts = Swift.max(1, Swift.min(L / (2 * kernels.gemmColumns), (Engine.threadCount + products - 1) / products))
        let packed = frozenPackedWeights(rows: Og, columns: K)
        // Packed weights are multiplied by the table that packed them (bf16 where chosen).
        let (product, unit) = ((packed?.table ?? kernels.c)!.convolution_bias_clamp!, kernels.gemmColumns)
        parallelRanges(count: products * parts) { range in
            for task in range {
                let (item, part) = (task / parts, task % parts)
                let (n, group) = (item / groups, item % groups)
                let (j0, j1) = (gemmSplit(L, part, parts, unit: unit), gemmSplit(L, part + 1, parts, unit: unit))
                var input = rstpm_convolution_input(planes: x + (n * C + group * Cg) * plane, height: g.height, width: g.width,
                                                    kernel: kernelSize, stride: stride, padding: padding, output_width: g.outputWidth)
                withPackedMatrix(packed?.matrix(group: group)) { packedMatrix in
                    product(Og, j1 - j0, K, w + group * Og * K, K, packedMatrix, &input, j0, bias.map { $0 + group * Og },
                            low, high, y + (n * O + group * Og) * L + j0, L)
                }
            }
        }
    }

    /// Stride 1 on a C kernel set: the input gradient is itself a stride-1 convolution, of
    /// dy with each group's weights transposed (input and output channels swapped) and flipped,
    /// padding kernel - 1 - padding; it runs as implicitForward does, with no columns gradient
    /// and no col2im.
    private func convolveInputGradient(_ w: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                       N: Int, g: WindowGeometry) {
        let (C, O, kk, plane, outputPlane) = (inputChannels, outputChannels, kernelSize * kernelSize, g.height * g.width, g.outputPlane)
        let (Cg, Og) = (C / groups, O / groups)
        // flipped[group][c][o][tap] = w[group * Og + o][c][kk - 1 - tap]
        var flipped = [Float](repeating: 0, count: O * Cg * kk)
        for group in 0..<groups {
            for c in 0..<Cg {
                for o in 0..<Og {
                    for tap in 0..<kk {
                        flipped[((group * Cg + c) * Og + o) * kk + tap] = w[((group * Og + o) * Cg + c) * kk + kk - 1 - tap]
                    }
                }
            }
        }
        let products = N * groups
        let parts = Swift.max(1, Swift.min(plane / (2 * kernels.gemmColumns), (Engine.threadCount + products - 1) / products))
        let (product, unit) = (kernels.c!.convolution_bias_clamp!, kernels.gemmColumns)
        flipped.withUnsafeBufferPointer { weights in
            parallelRanges(count: products * parts) { range in
                for task in range {
                    let (item, part) = (task / parts, task % parts)
                    let (n, group) = (item / groups, item % groups)
                    let (j0, j1) = (gemmSplit(plane, part, parts, unit: unit), gemmSplit(plane, part + 1, parts, unit: unit))
                    var input = rstpm_convolution_input(planes: dy + (n * O + group * Og) * outputPlane, height: g.outputHeight,
                                                        width: g.outputWidth, kernel: kernelSize, stride: 1, padding: kernelSize - 1 - padding,
                                                        output_width: g.width)
                    product(Cg, j1 - j0, Og * kk, weights.baseAddress! + group * Cg * Og * kk, Og * kk, nil, &input, j0,
                            nil, -.infinity, .infinity, dx + (n * C + group * Cg) * plane + j0, plane)
                }
            }
        }
    }

    private func unfoldedBackward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                  _ dx: UnsafeMutablePointer<Float>, _ dw: UnsafeMutablePointer<Float>, N: Int, g: WindowGeometry) {
        let (C, O, kk, L, plane) = (inputChannels, outputChannels, kernelSize * kernelSize, g.outputPlane, g.height * g.width)
        let (K, Og) = (C / groups * kk, O / groups)
        let convolvedInputGradient = stride == 1 && kernelSize <= 7 && padding < kernelSize && kernelGemm(m: C / groups, n: plane)
        if convolvedInputGradient { convolveInputGradient(w, dy, dx, N: N, g: g) }
        let blocks = columnBlocks(N: N, g: g)
        ScratchPool.withBuffer(count: scratchSize(blocks, g: g)) { scratch in
            for block in blocks {
                let width = block.width(g), itemWidth = block.rows.count * g.outputWidth
                let columns = scratch, gathered = scratch + C * kk * width
                unfold(x, block, g: g, into: columns)
                // The block's output gradient as an (O, width) matrix with leading dimension ld.
                let dyBlock: UnsafePointer<Float>, ld: Int
                if block.items == 1 {
                    (dyBlock, ld) = (dy + block.firstItem * O * L + block.rows.lowerBound * g.outputWidth, L)
                } else {
                    for i in 0..<block.items {
                        for o in 0..<O {
                            (gathered + o * width + i * L).update(from: dy + ((block.firstItem + i) * O + o) * L, count: L)
                        }
                    }
                    (dyBlock, ld) = (UnsafePointer(gathered), width)
                }
                for group in 0..<groups {
                    let columnsGroup = columns + group * K * width, dyGroup = dyBlock + group * Og * ld
                    // dw (Og, K) += dy (Og, width) * columns^T (width, K)
                    sgemm(transposeA: false, transposeB: true, m: Og, n: K, k: width, a: dyGroup, lda: ld,
                          b: columnsGroup, ldb: width, beta: 1, c: dw + group * Og * K, ldc: K)
                    if convolvedInputGradient { continue }
                    // dcolumns (K, width) = w^T (K, Og) * dy (Og, width), written over the used columns
                    sgemm(transposeA: true, transposeB: false, m: K, n: width, k: Og, a: w + group * Og * K, lda: K,
                          b: dyGroup, ldb: ld, beta: 0, c: columnsGroup, ldc: width)
                }
                if convolvedInputGradient { continue }
                parallelRanges(count: block.items * C) { range in
                    for task in range {
                        let (i, c) = (task / C, task % C)
                        col2imPlane(columns + c * kk * width + i * itemWidth, rowStride: width, g,
                                    dx + ((block.firstItem + i) * C + c) * plane, rows: block.rows)
                    }
                }
            }
        }
    }
}

/// Adds `bias[c]` to every element of channel c of an NCHW tensor.
func addBias(_ bias: Tensor, to output: inout Tensor) {
    let (N, C) = (output.shape[0], output.shape[1])
    let plane = output.count / max(1, N * C)
    bias.scalars.withUnsafeBufferPointer { b in
        output.scalars.withUnsafeMutableBufferPointer { y in
            for n in 0..<N {
                for c in 0..<C {
                    let value = b[c], start = (n * C + c) * plane
                    for i in start..<(start + plane) { y[i] += value }
                }
            }
        }
    }
}

/// bias.gradient[c] += sum over batch and positions of the NCHW gradient's channel c.
func accumulateBiasGradient(_ outputGradient: Tensor, into bias: Parameter) {
    let (N, C) = (outputGradient.shape[0], outputGradient.shape[1])
    let plane = outputGradient.count / max(1, N * C)
    outputGradient.scalars.withUnsafeBufferPointer { dy in
        bias.withGradient { db in
            for c in 0..<C {
                var sum: Float = 0
                for n in 0..<N {
                    let start = (n * C + c) * plane
                    for i in start..<(start + plane) { sum += dy[i] }
                }
                db[c] += sum
            }
        }
    }
}

extension Layer {
    /// Runs the inference products of every convolution in this tree in `precision` (nil: the
    /// engine's), e.g. one model in bf16 while another in the same process stays f32. The
    /// weights are packed again on the next `.inference` forward; `precision` must run on the
    /// engine's kernel set (`Precision.problem(on:)`).
    public func setInferencePrecision(_ precision: Precision?) {
        (self as? Conv2d)?.inferencePrecision = precision
        (self as? ConvTranspose2d)?.inferencePrecision = precision
        for child in children { child.layer.setInferencePrecision(precision) }
    }
}
