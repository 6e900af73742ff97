/// `torch.nn.MaxPool2d(kernelSize, stride, padding)` (no dilation, floor mode): padding acts as
/// -infinity. Backward routes each gradient to the first maximum of its window (PyTorch's rule).
public final class MaxPool2d: Layer {
    public var mode: LayerMode = .training
    public let kernelSize: Int, stride: Int, padding: Int
    private var cachedInputShape: [Int] = []
    private var cachedArgmax: [Int32]?

    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        precondition(kernelSize >= 1 && padding >= 0 && 2 * padding <= kernelSize, "MaxPool2d: kernel \(kernelSize) padding \(padding)")
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }

    /// input (N, C, H, W) -> output (N, C, Ho, Wo)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4, "MaxPool2d needs NCHW, got \(input.shape)")
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let g = WindowGeometry(height: H, width: W, kernel: kernelSize, stride: stride, padding: padding)
        let (k, s, p, Ho, Wo) = (kernelSize, stride, padding, g.outputHeight, g.outputWidth)
        let keep = mode.cachesForBackward
        var output = Tensor(unspecified: [N, C, Ho, Wo])
        var argmax = [Int32](repeating: 0, count: keep ? output.count : 0)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                argmax.withUnsafeMutableBufferPointer { indices in
                    parallelRanges(count: N * C) { range in
                        if !keep {
                            Self.maximumPlanes(x.baseAddress!, y.baseAddress!, planes: range, g: g)
                            return
                        }
                        for planeIndex in range {
                            let inBase = planeIndex * H * W, outBase = planeIndex * Ho * Wo
                            for oy in 0..<Ho {
                                let y0 = Swift.max(oy * s - p, 0), y1 = Swift.min(oy * s - p + k, H)
                                for ox in 0..<Wo {
                                    let x0 = Swift.max(ox * s - p, 0), x1 = Swift.min(ox * s - p + k, W)
                                    var best = -Float.infinity, bestIndex = y0 * W + x0
                                    for iy in y0..<y1 {
                                        for ix in x0..<x1 where x[inBase + iy * W + ix] > best || x[inBase + iy * W + ix].isNaN {
                                            best = x[inBase + iy * W + ix]
                                            bestIndex = iy * W + ix
                                        }
                                    }
                                    y[outBase + oy * Wo + ox] = best
                                    if keep { indices[outBase + oy * Wo + ox] = Int32(bestIndex) }
                                }
                            }
                        }
                    }
                }
            }
        }
        cachedInputShape = input.shape
        cachedArgmax = keep ? argmax : nil
        return output
    }

    /// Inference (no argmax): per output row, the window rows' maximum eight columns at a
    /// time into a row padded with -infinity; that row split into its stride phases (columns
    /// q, q+s, ...), so that each window column of eight adjacent outputs is one contiguous
    /// vector, and the outputs the maximum of their k vectors. NaN propagates, as in the
    /// indexed path.
    private static func maximumPlanes(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Range<Int>, g: WindowGeometry) {
        let (k, s, p, H, W, Ho, Wo) = (g.kernel, g.stride, g.padding, g.height, g.width, g.outputHeight, g.outputWidth)
        let paddedLength = W + 2 * p + k
        let phaseLength = (Wo + 7) / 8 * 8 + (k - 1) / s
        withUnsafeTemporaryAllocation(of: Float.self, capacity: paddedLength + s * phaseLength) { buffer in
            let padded = buffer.baseAddress!, row = padded + p
            let phases = s == 1 ? padded : padded + paddedLength
            buffer.update(repeating: -.infinity)
            for planeIndex in planes {
                let input = x + planeIndex * H * W, output = y + planeIndex * Ho * Wo
                for oy in 0..<Ho {
                    let y0 = Swift.max(oy * s - p, 0), y1 = Swift.min(oy * s - p + k, H)
                    row.update(from: input + y0 * W, count: W)
                    for iy in (y0 + 1)..<y1 {
                        let source = input + iy * W
                        var i = 0
                        while i + 8 <= W {
                            store8(nanMaximum(load8(row + i), load8(source + i)), row + i)
                            i += 8
                        }
                        while i < W { if source[i] > row[i] || source[i].isNaN { row[i] = source[i] }; i += 1 }
                    }
                    if s > 1 {
                        for q in 0..<s {
                            let phase = phases + q * phaseLength
                            for j in 0..<Swift.min(phaseLength, (paddedLength - q + s - 1) / s) { phase[j] = padded[q + s * j] }
                        }
                    }
                    let target = output + oy * Wo
                    var ox = 0
                    while ox < Wo {
                        var best = load8(phases + ox)
                        for kx in 1..<k { best = nanMaximum(best, load8(phases + (kx % s) * phaseLength + ox + kx / s)) }
                        if ox + 8 <= Wo {
                            store8(best, target + ox)
                        } else {
                            for i in 0..<(Wo - ox) { target[ox + i] = best[i] }
                        }
                        ox += 8
                    }
                }
            }
        }
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let argmax = requireCache(cachedArgmax, "MaxPool2d")
        cachedArgmax = nil
        precondition(outputGradient.count == argmax.count, "MaxPool2d.backward: gradient \(outputGradient.shape)")
        let (N, C, H, W) = (cachedInputShape[0], cachedInputShape[1], cachedInputShape[2], cachedInputShape[3])
        let outPlane = outputGradient.count / Swift.max(1, N * C)
        var inputGradient = Tensor(zeros: cachedInputShape)
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                parallelRanges(count: N * C) { range in
                    for planeIndex in range {
                        for i in 0..<outPlane {
                            dx[planeIndex * H * W + Int(argmax[planeIndex * outPlane + i])] += dy[planeIndex * outPlane + i]
                        }
                    }
                }
            }
        }
        return inputGradient
    }
}

/// Lanes of `candidate` where it is larger than `best` or NaN, else `best`: a window maximum
/// that propagates NaN.
@inline(__always)
private func nanMaximum(_ best: SIMD8<Float>, _ candidate: SIMD8<Float>) -> SIMD8<Float> {
    best.replacing(with: candidate, where: (candidate .> best) .| (candidate .!= candidate))
}

/// `torch.nn.AvgPool2d(kernelSize, stride, padding)` with PyTorch's defaults
/// (count_include_pad = true, floor mode): every window divides by kernelSize^2.
public final class AvgPool2d: Layer {
    public var mode: LayerMode = .training
    public let kernelSize: Int, stride: Int, padding: Int
    private var cachedInputShape: [Int]?

    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        precondition(kernelSize >= 1 && padding >= 0 && 2 * padding <= kernelSize, "AvgPool2d: kernel \(kernelSize) padding \(padding)")
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }

    /// input (N, C, H, W) -> output (N, C, Ho, Wo)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4, "AvgPool2d needs NCHW, got \(input.shape)")
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let g = WindowGeometry(height: H, width: W, kernel: kernelSize, stride: stride, padding: padding)
        let (k, s, p, Ho, Wo) = (kernelSize, stride, padding, g.outputHeight, g.outputWidth)
        let scale = 1 / Float(k * k)
        var output = Tensor(unspecified: [N, C, Ho, Wo])
        forEachPlane(of: input, into: &output) { x, y in
            for oy in 0..<Ho {
                let y0 = Swift.max(oy * s - p, 0), y1 = Swift.min(oy * s - p + k, H)
                for ox in 0..<Wo {
                    let x0 = Swift.max(ox * s - p, 0), x1 = Swift.min(ox * s - p + k, W)
                    var sum: Float = 0
                    for iy in y0..<y1 { for ix in x0..<x1 { sum += x[iy * W + ix] } }
                    y[oy * Wo + ox] = sum * scale
                }
            }
        }
        cachedInputShape = mode.cachesForBackward ? input.shape : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let shape = requireCache(cachedInputShape, "AvgPool2d")
        cachedInputShape = nil
        let (N, C, H, W) = (shape[0], shape[1], shape[2], shape[3])
        let g = WindowGeometry(height: H, width: W, kernel: kernelSize, stride: stride, padding: padding)
        let (k, s, p, Ho, Wo) = (kernelSize, stride, padding, g.outputHeight, g.outputWidth)
        precondition(outputGradient.shape == [N, C, Ho, Wo], "AvgPool2d.backward: gradient \(outputGradient.shape)")
        let scale = 1 / Float(k * k)
        var inputGradient = Tensor(zeros: shape)
        forEachPlane(of: outputGradient, into: &inputGradient) { dy, dx in
            for oy in 0..<Ho {
                let y0 = Swift.max(oy * s - p, 0), y1 = Swift.min(oy * s - p + k, H)
                for ox in 0..<Wo {
                    let x0 = Swift.max(ox * s - p, 0), x1 = Swift.min(ox * s - p + k, W)
                    let g = dy[oy * Wo + ox] * scale
                    for iy in y0..<y1 { for ix in x0..<x1 { dx[iy * W + ix] += g } }
                }
            }
        }
        return inputGradient
    }
}

/// Mean over each channel's plane, as `torch.nn.AdaptiveAvgPool2d(1)`: (N, C, H, W) -> (N, C, 1, 1).
public final class GlobalAveragePool: Layer {
    public var mode: LayerMode = .training
    private var cachedInputShape: [Int]?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4, "GlobalAveragePool needs NCHW, got \(input.shape)")
        let (N, C) = (input.shape[0], input.shape[1])
        let plane = input.shape[2] * input.shape[3]
        var output = Tensor(zeros: [N, C, 1, 1])
        input.scalars.withUnsafeBufferPointer { x in
            for i in 0..<(N * C) {
                var sum: Float = 0
                for j in (i * plane)..<((i + 1) * plane) { sum += x[j] }
                output.scalars[i] = sum / Float(plane)
            }
        }
        cachedInputShape = mode.cachesForBackward ? input.shape : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let shape = requireCache(cachedInputShape, "GlobalAveragePool")
        cachedInputShape = nil
        let plane = shape[2] * shape[3]
        precondition(outputGradient.count == shape[0] * shape[1], "GlobalAveragePool.backward: gradient \(outputGradient.shape)")
        var inputGradient = Tensor(zeros: shape)
        for i in 0..<outputGradient.count {
            let g = outputGradient.scalars[i] / Float(plane)
            for j in (i * plane)..<((i + 1) * plane) { inputGradient.scalars[j] = g }
        }
        return inputGradient
    }
}
