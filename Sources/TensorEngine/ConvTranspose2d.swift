/// 2-D transposed convolution as `torch.nn.ConvTranspose2d` (groups 1, no dilation), square
/// kernel, equal stride, symmetric padding and output_padding:
/// Ho = (H - 1) * stride - 2 * padding + kernelSize + outputPadding.
///
/// Weight (inputChannels, outputChannels, kernelSize, kernelSize) as PyTorch, bias
/// (outputChannels). Initialisation as PyTorch: uniform in +-1/sqrt(fan_in) where fan_in is
/// computed from the weight's dimension 1, i.e. outputChannels * kernelSize^2 (PyTorch's rule).
/// Forward is the adjoint of a convolution: columns = W^T x, folded back with col2im.
public final class ConvTranspose2d: Layer {
    public var mode: LayerMode = .training
    public let inputChannels: Int, outputChannels: Int
    public let kernelSize: Int, stride: Int, padding: Int, outputPadding: Int
    public let weight: Parameter
    public let bias: Parameter?
    private var cachedInput: Tensor?
    /// The precision of the inference product; nil follows the engine's (as Conv2d's).
    public var inferencePrecision: Precision?
    /// w^T packed for the kernel set's product, kept in `.inference` while the weights are unchanged.
    private var packedWeights: PackedWeights?

    public convenience init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, bias: Bool = true, generator: SeededGenerator) {
        let bound = 1 / Float(outputChannels * kernelSize * kernelSize).squareRoot()
        let weight = generator.uniformTensor(shape: [inputChannels, outputChannels, kernelSize, kernelSize], bound: bound)
        let biasValue = bias ? generator.uniformTensor(shape: [outputChannels], bound: bound) : nil
        self.init(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
                  padding: padding, outputPadding: outputPadding, weight: weight, bias: biasValue)
    }

    public init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, weight: Tensor, bias: Tensor?) {
        precondition(kernelSize >= 1 && stride >= 1 && padding >= 0 && outputPadding >= 0 && outputPadding < stride,
                     "ConvTranspose2d: kernel \(kernelSize) stride \(stride) padding \(padding) output padding \(outputPadding)")
        precondition(weight.shape == [inputChannels, outputChannels, kernelSize, kernelSize],
                     "ConvTranspose2d weight shape \(weight.shape), expected \([inputChannels, outputChannels, kernelSize, kernelSize])")
        precondition(bias == nil || bias!.shape == [outputChannels], "ConvTranspose2d bias shape \(bias!.shape), expected [\(outputChannels)]")
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
        self.weight = Parameter(name: "weight", value: weight)
        self.bias = bias.map { Parameter(name: "bias", value: $0) }
    }

    public var ownParameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    /// The convolution this layer is the adjoint of: over the OUTPUT plane, giving the input plane.
    private func geometry(inputHeight: Int, inputWidth: Int) -> WindowGeometry {
        let outputHeight = (inputHeight - 1) * stride - 2 * padding + kernelSize + outputPadding
        let outputWidth = (inputWidth - 1) * stride - 2 * padding + kernelSize + outputPadding
        precondition(outputHeight > 0 && outputWidth > 0, "ConvTranspose2d: empty output for input \(inputHeight)x\(inputWidth)")
        return WindowGeometry(height: outputHeight, width: outputWidth, kernel: kernelSize, stride: stride, padding: padding,
                              outputHeight: inputHeight, outputWidth: inputWidth)
    }

    /// input (N, inputChannels, H, W) -> output (N, outputChannels, Ho, Wo)
    public func forward(_ input: Tensor) -> Tensor {
        let output = profiledConvolution(input, activation: .none)
        cachedInput = mode.cachesForBackward ? input : nil
        return output
    }

    /// The transposed convolution followed by `activation` (an S2 stage's ReLU), applied as the
    /// outputs are written. Caches nothing, so the layer must be in `.inference` mode.
    public func inferenceForward(_ input: Tensor, activation: FusedActivation) -> Tensor {
        precondition(mode == .inference, "ConvTranspose2d.inferenceForward needs .inference mode (nothing is cached for backward), mode is \(mode)")
        cachedInput = nil
        return profiledConvolution(input, activation: activation)
    }

    private func profiledConvolution(_ input: Tensor, activation: FusedActivation) -> Tensor {
        guard LayerProfile.enabled else { return transposedConvolution(input, activation: activation) }
        let output = LayerProfile.measure("conv-transpose \(kernelSize)x\(kernelSize)/\(stride) \(inputChannels)->\(outputChannels) at \(input.shape.dropFirst(2).map(String.init).joined(separator: "x"))") {
            transposedConvolution(input, activation: activation)
        }
        // Every input position meets every weight once.
        LayerProfile.addFlops(2 * Double(input.count * outputChannels * kernelSize * kernelSize))
        return output
    }

    private func transposedConvolution(_ input: Tensor, activation: FusedActivation) -> Tensor {
        precondition(input.rank == 4 && input.shape[1] == inputChannels,
                     "ConvTranspose2d(\(inputChannels)->\(outputChannels)) got input \(input.shape)")
        let N = input.shape[0]
        let g = geometry(inputHeight: input.shape[2], inputWidth: input.shape[3])
        let (C, O, kk, L, plane) = (inputChannels, outputChannels, kernelSize * kernelSize, g.outputPlane, g.height * g.width)
        // Kernel = stride without padding (S2's upsampling): each output takes exactly one
        // column entry, so the columns are scattered with the bias instead of summed into zeros.
        let tiled = kernelSize == stride && padding == 0 && outputPadding == 0
        var output = tiled ? Tensor(unspecified: [N, O, g.height, g.width]) : Tensor(zeros: [N, O, g.height, g.width])
        let packed = mode == .inference && kernelGemm(m: O * kk, n: L) ? frozenPackedWeights() : nil
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    ScratchPool.withBuffer(count: O * kk * L) { columns in
                        for n in 0..<N {
                            // columns (O*k*k, L) = w^T (O*k*k, C) * x (C, L); frozen weights packed once
                            // (in the layer's precision), so A is not read.
                            if let packed {
                                sgemmWithEpilogue(m: O * kk, n: L, k: C, a: w.baseAddress!, lda: C, packedA: (packed.matrix(group: 0), packed.table),
                                                  b: x.baseAddress! + n * C * L, ldb: L, bias: nil, activation: .none, c: columns, ldc: L)
                            } else {
                                sgemm(transposeA: true, transposeB: false, m: O * kk, n: L, k: C, a: w.baseAddress!, lda: O * kk,
                                      b: x.baseAddress! + n * C * L, ldb: L, beta: 0, c: columns, ldc: L)
                            }
                            let target = y.baseAddress! + n * O * plane
                            parallelRanges(count: O) { range in
                                for o in range {
                                    if tiled {
                                        scatterTiles(columns + o * kk * L, g, target + o * plane, bias: bias?.value.scalars[o] ?? 0,
                                                     activation: activation)
                                    } else {
                                        col2imPlane(columns + o * kk * L, rowStride: L, g, target + o * plane, rows: 0..<g.outputHeight)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if !tiled {
            if let bias { addBias(bias.value, to: &output) }
            if activation != .none {
                let count = output.count
                output.scalars.withUnsafeMutableBufferPointer { addAndActivate($0.baseAddress!, count: count, adding: 0, activation: activation) }
            }
        }
        return output
    }

    /// w^T (O*k*k, C) packed for the product; the weight is stored (C, O, k, k).
    private func frozenPackedWeights() -> PackedWeights {
        let precision = inferencePrecision ?? kernels.precision
        frozenWeightsLock.lock()
        defer { frozenWeightsLock.unlock() }
        if let packedWeights, packedWeights.matches(version: weight.version, precision: precision) { return packedWeights }
        let (C, rows) = (inputChannels, outputChannels * kernelSize * kernelSize)
        var transposed = [Float](repeating: 0, count: rows * C)
        weight.value.scalars.withUnsafeBufferPointer { w in
            for c in 0..<C {
                for row in 0..<rows { transposed[row * C + c] = w[c * rows + row] }
            }
        }
        let packed = transposed.withUnsafeBufferPointer {
            PackedWeights($0.baseAddress!, groups: 1, rows: rows, columns: C, version: weight.version, precision: precision)
        }
        packedWeights = packed
        return packed
    }

    /// One output plane from its k*k column rows when kernel = stride and there is no padding:
    /// output (iy*k + ky, ix*k + kx) = activation(column (ky*k + kx) at input position (iy, ix) + bias).
    private func scatterTiles(_ columns: UnsafePointer<Float>, _ g: WindowGeometry, _ plane: UnsafeMutablePointer<Float>, bias: Float,
                              activation: FusedActivation) {
        let (k, H, W) = (kernelSize, g.outputHeight, g.outputWidth)
        let (low, high) = activation.bounds
        for iy in 0..<H {
            for ky in 0..<k {
                let target = plane + (iy * k + ky) * g.width
                if k == 2 {
                    // S2's case: the two column rows interleaved, each output row written in order.
                    let (even, odd) = (columns + 2 * ky * H * W + iy * W, columns + (2 * ky + 1) * H * W + iy * W)
                    for ix in 0..<W {
                        target[2 * ix] = Swift.min(Swift.max(even[ix] + bias, low), high)
                        target[2 * ix + 1] = Swift.min(Swift.max(odd[ix] + bias, low), high)
                    }
                    continue
                }
                for kx in 0..<k {
                    let source = columns + (ky * k + kx) * H * W + iy * W
                    for ix in 0..<W { target[ix * k + kx] = Swift.min(Swift.max(source[ix] + bias, low), high) }
                }
            }
        }
    }

    /// outputGradient (N, outputChannels, Ho, Wo) -> input gradient (N, inputChannels, H, W)
    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = requireCache(cachedInput, "ConvTranspose2d")
        cachedInput = nil
        let N = input.shape[0]
        let g = geometry(inputHeight: input.shape[2], inputWidth: input.shape[3])
        let (C, O, kk, L, plane) = (inputChannels, outputChannels, kernelSize * kernelSize, g.outputPlane, g.height * g.width)
        precondition(outputGradient.shape == [N, O, g.height, g.width],
                     "ConvTranspose2d.backward: gradient \(outputGradient.shape) for output \([N, O, g.height, g.width])")
        var inputGradient = Tensor(zeros: input.shape)
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                        weight.withGradient { dw in
                            ScratchPool.withBuffer(count: O * kk * L) { columns in
                                for n in 0..<N {
                                    let source = dy.baseAddress! + n * O * plane
                                    parallelRanges(count: O) { range in
                                        for o in range { im2colPlane(source + o * plane, g, columns + o * kk * L, rowStride: L, rows: 0..<g.outputHeight) }
                                    }
                                    // dx (C, L) = w (C, O*k*k) * columns (O*k*k, L)
                                    sgemm(transposeA: false, transposeB: false, m: C, n: L, k: O * kk, a: w.baseAddress!, lda: O * kk,
                                          b: columns, ldb: L, beta: 0, c: dx.baseAddress! + n * C * L, ldc: L)
                                    // dw (C, O*k*k) += x (C, L) * columns^T (L, O*k*k)
                                    sgemm(transposeA: false, transposeB: true, m: C, n: O * kk, k: L, a: x.baseAddress! + n * C * L, lda: L,
                                          b: columns, ldb: L, beta: 1, c: dw.baseAddress!, ldc: O * kk)
                                }
                            }
                        }
                    }
                }
            }
        }
        if let bias { accumulateBiasGradient(outputGradient, into: bias) }
        return inputGradient
    }
}
