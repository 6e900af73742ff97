/// Batch normalisation over (N, H, W) per channel, as `torch.nn.BatchNorm2d(channels, eps,
/// momentum)` with affine parameters and tracked running statistics.
///
/// `.training`: normalises with the batch mean and the BIASED batch variance, and updates
/// running_mean/running_var with `momentum` using the UNBIASED variance (n/(n-1)), as PyTorch.
/// `.evaluation`/`.inference`: normalises with the running statistics.
/// Parameters "weight" (gamma, ones) and "bias" (beta, zeros); buffers "running_mean",
/// "running_var", "num_batches_tracked" (a scalar, shape []).
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

    // Caches for backward: normalised input (N, C, H, W), 1/std (C), and whether batch statistics were used.
    private var cachedNormalized: Tensor?
    private var cachedReciprocalStd: [Float] = []
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
        precondition(input.rank == 4 && input.shape[1] == channels, "BatchNorm2d(\(channels)) got input \(input.shape)")
        let (N, C) = (input.shape[0], channels)
        let plane = input.shape[2] * input.shape[3]
        let useBatch = mode == .training
        let keep = mode.cachesForBackward
        let count = N * plane
        precondition(!useBatch || count > 1, "BatchNorm2d in training mode needs more than one value per channel, got input \(input.shape)")

        var mean = [Float](repeating: 0, count: C), reciprocalStd = mean, batchVariance = mean
        if useBatch {
            input.scalars.withUnsafeBufferPointer { x in
                mean.withUnsafeMutableBufferPointer { meanOut in
                    batchVariance.withUnsafeMutableBufferPointer { varianceOut in
                        parallelRanges(count: C) { range in
                            for c in range {
                                // Two passes (mean, then squared deviations), per-plane partial sums in double.
                                var sum = 0.0
                                for n in 0..<N { sum += Double(vectorSum(x.baseAddress! + (n * C + c) * plane, count: plane)) }
                                let m = Float(sum / Double(count))
                                var squares = 0.0
                                for n in 0..<N {
                                    squares += Double(vectorSquaredDeviation(x.baseAddress! + (n * C + c) * plane, center: m, count: plane))
                                }
                                meanOut[c] = m
                                varianceOut[c] = Float(squares / Double(count))
                            }
                        }
                    }
                }
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

        var output = Tensor(unspecified: input.shape)
        var normalized = keep ? Tensor(unspecified: input.shape) : Tensor(zeros: [0])
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                normalized.scalars.withUnsafeMutableBufferPointer { xhat in
                    weight.value.scalars.withUnsafeBufferPointer { gamma in
                        bias.value.scalars.withUnsafeBufferPointer { beta in
                            parallelRanges(count: N * C) { range in
                                for task in range {
                                    let c = task % C, start = task * plane
                                    let (m, r, g, b) = (mean[c], reciprocalStd[c], gamma[c], beta[c])
                                    if keep {
                                        for i in start..<(start + plane) {
                                            let h = (x[i] - m) * r
                                            xhat[i] = h
                                            y[i] = h * g + b
                                        }
                                    } else {
                                        for i in start..<(start + plane) { y[i] = (x[i] - m) * r * g + b }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if keep {
            cachedNormalized = normalized
            cachedReciprocalStd = reciprocalStd
            cachedUsedBatchStatistics = useBatch
        } else {
            cachedNormalized = nil
        }
        return output
    }

    /// outputGradient (N, C, H, W) -> input gradient (N, C, H, W)
    public func backward(_ outputGradient: Tensor) -> Tensor {
        let normalized = requireCache(cachedNormalized, "BatchNorm2d")
        cachedNormalized = nil
        precondition(outputGradient.shape == normalized.shape, "BatchNorm2d.backward: gradient \(outputGradient.shape) for \(normalized.shape)")
        let (N, C) = (normalized.shape[0], channels)
        let plane = normalized.shape[2] * normalized.shape[3]
        let count = Float(N * plane)
        let reciprocalStd = cachedReciprocalStd
        let batchStatistics = cachedUsedBatchStatistics
        var inputGradient = Tensor(unspecified: normalized.shape)
        var sumGradient = [Float](repeating: 0, count: C), sumGradientNormalized = sumGradient
        normalized.scalars.withUnsafeBufferPointer { xhat in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    sumGradient.withUnsafeMutableBufferPointer { sumDy in
                        sumGradientNormalized.withUnsafeMutableBufferPointer { sumDyXhat in
                            weight.value.scalars.withUnsafeBufferPointer { gamma in
                                parallelRanges(count: C) { range in
                                    for c in range {
                                        var s: Float = 0, sx: Float = 0
                                        for n in 0..<N {
                                            let start = (n * C + c) * plane
                                            s += vectorSum(dy.baseAddress! + start, count: plane)
                                            sx += vectorDot(dy.baseAddress! + start, xhat.baseAddress! + start, count: plane)
                                        }
                                        sumDy[c] = s
                                        sumDyXhat[c] = sx
                                        let scale = gamma[c] * reciprocalStd[c]
                                        // Batch statistics: dx = g*r*(dy - mean(dy) - xhat*mean(dy*xhat)); running: dx = g*r*dy.
                                        let meanDy = batchStatistics ? s / count : 0, meanDyXhat = batchStatistics ? sx / count : 0
                                        for n in 0..<N {
                                            let start = (n * C + c) * plane
                                            for i in start..<(start + plane) { dx[i] = scale * (dy[i] - meanDy - xhat[i] * meanDyXhat) }
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
