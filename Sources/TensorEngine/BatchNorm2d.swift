/// Batch normalisation over (N, H, W) per channel, as `torch.nn.BatchNorm2d(channels, eps,
/// momentum)` with affine parameters and tracked running statistics.
///
/// `.training`: normalises with the batch mean and the BIASED batch variance, and updates
/// running_mean/running_var with `momentum` using the UNBIASED variance (n/(n-1)), as PyTorch.
/// `.evaluation`/`.inference`: normalises with the running statistics.
/// Parameters "weight" (gamma, ones) and "bias" (beta, zeros); buffers "running_mean",
/// "running_var", "num_batches_tracked" (a scalar, shape []).
///
/// `forward(_:activation:)` applies a following ReLU/ReLU6 in the same pass, and its backward
/// passes the gradient through that activation first (from the recomputed pre-activation), so
/// a Conv-BN-ReLU6 unit neither writes nor reads the pre-activation tensor.
public final class BatchNorm2d: Layer {
    public var mode: LayerMode = .training
    public let channels: Int
    public let epsilon: Float
    public let momentum: Float
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Buffer
    public let runningVariance: Buffer
    public let batchesTracked: Buffer

    // Caches for backward: the input itself (shared storage, no copy; backward recomputes the
    // normalised values from it instead of forward writing them out), the mean, 1/std and
    // gamma/std used (C), whether they were batch statistics, and the fused activation.
    private var cachedInput: Tensor?
    private var cachedMean: [Float] = []
    private var cachedReciprocalStd: [Float] = []
    private var cachedScale: [Float] = []
    private var cachedActivation = FusedActivation.none
    private var cachedUsedBatchStatistics = false

    public init(channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1) {
        precondition(channels > 0, "BatchNorm2d needs channels > 0")
        self.channels = channels
        self.epsilon = epsilon
        self.momentum = momentum
        weight = Parameter(name: "weight", value: Tensor(shape: [channels], repeating: 1))
        bias = Parameter(name: "bias", value: Tensor(zeros: [channels]))
        runningMean = Buffer(name: "running_mean", value: Tensor(zeros: [channels]))
        runningVariance = Buffer(name: "running_var", value: Tensor(shape: [channels], repeating: 1))
        batchesTracked = Buffer(name: "num_batches_tracked", value: Tensor(zeros: []))
    }

    public var ownParameters: [Parameter] { [weight, bias] }
    public var ownBuffers: [Buffer] { [runningMean, runningVariance, batchesTracked] }

    /// Per-channel scale gamma/sqrt(running_var + eps) and shift beta - running_mean * scale.
    public func inferenceScaleAndShift() -> (scale: [Float], shift: [Float]) {
        var scale = [Float](repeating: 0, count: channels), shift = scale
        for c in 0..<channels {
            scale[c] = weight.value.scalars[c] / (runningVariance.value.scalars[c] + epsilon).squareRoot()
            shift[c] = bias.value.scalars[c] - runningMean.value.scalars[c] * scale[c]
        }
        return (scale, shift)
    }

    /// input (N, C, H, W) -> output (N, C, H, W)
    public func forward(_ input: Tensor) -> Tensor {
        forward(input, activation: .none)
    }

    /// input (N, C, H, W) -> activation(BatchNorm(input)) (N, C, H, W)
    public func forward(_ input: Tensor, activation: FusedActivation) -> Tensor {
        LayerProfile.measure("batchnorm \(channels) at \(input.shape.dropFirst(2).map(String.init).joined(separator: "x")) n\(input.shape.first ?? 0)") {
            normalize(input, activation: activation)
        }
    }

    private func normalize(_ input: Tensor, activation: FusedActivation) -> Tensor {
        precondition(input.rank == 4 && input.shape[1] == channels, "BatchNorm2d(\(channels)) got input \(input.shape)")
        let (N, C) = (input.shape[0], channels)
        let plane = input.shape[2] * input.shape[3]
        let useBatch = mode == .training
        let keep = mode.cachesForBackward
        let count = N * plane
        precondition(!useBatch || count > 1, "BatchNorm2d in training mode needs more than one value per channel, got input \(input.shape)")

        var mean = [Float](repeating: 0, count: C), reciprocalStd = mean, batchVariance = mean
        if useBatch {
            if let c = kernels.c {
                BatchNormAcceleration.statistics(c, input, mean: &mean, variance: &batchVariance)
            } else {
                batchStatistics(input, mean: &mean, variance: &batchVariance)
            }
            for c in 0..<C {
                reciprocalStd[c] = 1 / (batchVariance[c] + epsilon).squareRoot()
                let unbiased = batchVariance[c] * Float(count) / Float(count - 1)
                runningMean.value.scalars[c] = (1 - momentum) * runningMean.value.scalars[c] + momentum * mean[c]
                runningVariance.value.scalars[c] = (1 - momentum) * runningVariance.value.scalars[c] + momentum * unbiased
            }
            batchesTracked.value.scalars[0] += 1
        } else {
            for c in 0..<C {
                mean[c] = runningMean.value.scalars[c]
                reciprocalStd[c] = 1 / (runningVariance.value.scalars[c] + epsilon).squareRoot()
            }
        }

        // y = activation((x - mean) * (gamma / std) + beta)
        var scale = reciprocalStd
        for c in 0..<C { scale[c] *= weight.value.scalars[c] }
        var output = Tensor(unspecified: input.shape)
        if let c = kernels.c {
            BatchNormAcceleration.normalize(c, input, mean: mean, scale: scale, shift: bias.value.scalars, activation: activation, into: &output)
        } else {
            let (low, high) = activation.bounds
            input.scalars.withUnsafeBufferPointer { x in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    bias.value.scalars.withUnsafeBufferPointer { beta in
                        parallelRanges(count: N * C) { range in
                            for task in range {
                                let c = task % C, start = task * plane
                                let (m, a, b) = (mean[c], scale[c], beta[c])
                                for i in start..<(start + plane) { y[i] = clamp((x[i] - m) * a + b, low, high) }
                            }
                        }
                    }
                }
            }
        }
        if keep {
            cachedInput = input
            cachedMean = mean
            cachedReciprocalStd = reciprocalStd
            cachedScale = scale
            cachedActivation = activation
            cachedUsedBatchStatistics = useBatch
        } else {
            cachedInput = nil
        }
        return output
    }

    /// Per-channel mean and biased variance of (N, C, H, W): two passes (mean, then squared
    /// deviations), per-plane partial sums in double.
    private func batchStatistics(_ input: Tensor, mean: inout [Float], variance: inout [Float]) {
        let (N, C) = (input.shape[0], channels)
        let plane = input.shape[2] * input.shape[3]
        let count = Double(N * plane)
        input.scalars.withUnsafeBufferPointer { x in
            mean.withUnsafeMutableBufferPointer { meanOut in
                variance.withUnsafeMutableBufferPointer { varianceOut in
                    parallelRanges(count: C) { range in
                        for c in range {
                            var sum = 0.0
                            for n in 0..<N { sum += Double(vectorSum(x.baseAddress! + (n * C + c) * plane, count: plane)) }
                            let m = Float(sum / count)
                            var squares = 0.0
                            for n in 0..<N {
                                squares += Double(vectorSquaredDeviation(x.baseAddress! + (n * C + c) * plane, center: m, count: plane))
                            }
                            meanOut[c] = m
                            varianceOut[c] = Float(squares / count)
                        }
                    }
                }
            }
        }
    }

    /// dy through the fused activation: dy where the recomputed pre-activation
    /// (x - mean) * scale + beta is inside the activation's open interval, else 0.
    private func activationGradient(_ outputGradient: Tensor, input: Tensor, mean: [Float], scale: [Float],
                                    activation: FusedActivation) -> Tensor {
        let (C, plane) = (channels, input.shape[2] * input.shape[3])
        let (low, high) = activation.bounds
        var result = Tensor(unspecified: input.shape)
        input.scalars.withUnsafeBufferPointer { x in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                result.scalars.withUnsafeMutableBufferPointer { dz in
                    bias.value.scalars.withUnsafeBufferPointer { beta in
                        parallelRanges(count: input.shape[0] * C) { range in
                            for task in range {
                                let c = task % C, start = task * plane
                                let (m, a, b) = (mean[c], scale[c], beta[c])
                                for i in start..<(start + plane) {
                                    let z = (x[i] - m) * a + b
                                    dz[i] = z > low && z < high ? dy[i] : 0
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    /// outputGradient (N, C, H, W) -> input gradient (N, C, H, W)
    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = requireCache(cachedInput, "BatchNorm2d")
        cachedInput = nil
        precondition(outputGradient.shape == input.shape, "BatchNorm2d.backward: gradient \(outputGradient.shape) for \(input.shape)")
        let (N, C) = (input.shape[0], channels)
        let plane = input.shape[2] * input.shape[3]
        let count = Float(N * plane)
        let (mean, reciprocalStd, scale, activation) = (cachedMean, cachedReciprocalStd, cachedScale, cachedActivation)
        let batchStatistics = cachedUsedBatchStatistics
        var inputGradient = Tensor(unspecified: input.shape)
        var sumGradient = [Float](repeating: 0, count: C), sumGradientNormalized = sumGradient
        if let c = kernels.c {
            BatchNormAcceleration.backward(c, input, outputGradient, mean: mean, reciprocalStd: reciprocalStd, scale: scale,
                                           shift: bias.value.scalars, activation: activation, batchStatistics: batchStatistics,
                                           inputGradient: &inputGradient, sumGradient: &sumGradient, sumGradientNormalized: &sumGradientNormalized)
        } else {
            let outputGradient = activation == .none ? outputGradient
                : activationGradient(outputGradient, input: input, mean: mean, scale: scale, activation: activation)
            input.scalars.withUnsafeBufferPointer { x in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                        sumGradient.withUnsafeMutableBufferPointer { sumDy in
                            sumGradientNormalized.withUnsafeMutableBufferPointer { sumDyXhat in
                                parallelRanges(count: C) { range in
                                    for c in range {
                                        let (m, r) = (mean[c], reciprocalStd[c])
                                        var s: Float = 0, sd: Float = 0
                                        for n in 0..<N {
                                            let start = (n * C + c) * plane
                                            s += vectorSum(dy.baseAddress! + start, count: plane)
                                            sd += vectorDotDeviation(dy.baseAddress! + start, x.baseAddress! + start, center: m, count: plane)
                                        }
                                        let sx = sd * r
                                        sumDy[c] = s
                                        sumDyXhat[c] = sx
                                        let scale = scale[c]  // gamma / std
                                        // Batch statistics: dx = g*r*(dy - mean(dy) - xhat*mean(dy*xhat)); running: dx = g*r*dy.
                                        let meanDy = batchStatistics ? s / count : 0, meanDyXhat = batchStatistics ? sx / count : 0
                                        for n in 0..<N {
                                            let start = (n * C + c) * plane
                                            for i in start..<(start + plane) {
                                                dx[i] = scale * (dy[i] - meanDy - (x[i] - m) * r * meanDyXhat)
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
        weight.withGradient { dgamma in for c in 0..<C { dgamma[c] += sumGradientNormalized[c] } }
        bias.withGradient { dbeta in for c in 0..<C { dbeta[c] += sumGradient[c] } }
        return inputGradient
    }
}

/// min(max(v, low), high); NaN stays NaN.
@inline(__always)
private func clamp(_ v: Float, _ low: Float, _ high: Float) -> Float { Swift.min(Swift.max(v, low), high) }
