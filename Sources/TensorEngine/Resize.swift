/// Bilinear resizing of NCHW planes to a fixed size, as
/// `F.interpolate(x, size=(outputHeight, outputWidth), mode="bilinear", align_corners=False)`
/// without antialiasing, for upsampling and downsampling alike: source coordinate
/// `max((dst + 0.5) * in/out - 0.5, 0)`, its two neighbours clamped to the plane.
public final class BilinearResize: Layer {
    public var mode: LayerMode = .training
    public let outputHeight: Int, outputWidth: Int
    private var cachedInputShape: [Int]?

    public init(outputHeight: Int, outputWidth: Int) {
        precondition(outputHeight > 0 && outputWidth > 0, "BilinearResize to \(outputHeight)x\(outputWidth)")
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
    }

    /// One axis: for every output index, the two source indices and their weights.
    private struct Taps { var low: [Int], high: [Int], lowWeight: [Float], highWeight: [Float] }

    private static func taps(input: Int, output: Int) -> Taps {
        var taps = Taps(low: [], high: [], lowWeight: [], highWeight: [])
        let scale = Float(input) / Float(output)
        for dst in 0..<output {
            let source = Swift.max(scale * (Float(dst) + 0.5) - 0.5, 0)
            let low = Swift.min(Int(source), input - 1)
            let high = low < input - 1 ? low + 1 : low
            let lambda = source - Float(low)
            taps.low.append(low)
            taps.high.append(high)
            taps.lowWeight.append(1 - lambda)
            taps.highWeight.append(lambda)
        }
        return taps
    }

    /// input (N, C, H, W) -> output (N, C, outputHeight, outputWidth)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4, "BilinearResize needs NCHW, got \(input.shape)")
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (Ho, Wo) = (outputHeight, outputWidth)
        let rows = Self.taps(input: H, output: Ho), columns = Self.taps(input: W, output: Wo)
        var output = Tensor(unspecified: [N, C, Ho, Wo])
        forEachPlane(of: input, into: &output) { x, y in
            for oy in 0..<Ho {
                let top = x + rows.low[oy] * W, bottom = x + rows.high[oy] * W
                let (wt, wb) = (rows.lowWeight[oy], rows.highWeight[oy])
                for ox in 0..<Wo {
                    let (l, r, wl, wr) = (columns.low[ox], columns.high[ox], columns.lowWeight[ox], columns.highWeight[ox])
                    y[oy * Wo + ox] = wt * (wl * top[l] + wr * top[r]) + wb * (wl * bottom[l] + wr * bottom[r])
                }
            }
        }
        cachedInputShape = mode.cachesForBackward ? input.shape : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let shape = requireCache(cachedInputShape, "BilinearResize")
        cachedInputShape = nil
        let (N, C, H, W) = (shape[0], shape[1], shape[2], shape[3])
        let (Ho, Wo) = (outputHeight, outputWidth)
        precondition(outputGradient.shape == [N, C, Ho, Wo], "BilinearResize.backward: gradient \(outputGradient.shape)")
        let rows = Self.taps(input: H, output: Ho), columns = Self.taps(input: W, output: Wo)
        var inputGradient = Tensor(zeros: shape)
        forEachPlane(of: outputGradient, into: &inputGradient) { dy, dx in
            for oy in 0..<Ho {
                let top = dx + rows.low[oy] * W, bottom = dx + rows.high[oy] * W
                let (wt, wb) = (rows.lowWeight[oy], rows.highWeight[oy])
                for ox in 0..<Wo {
                    let g = dy[oy * Wo + ox]
                    let (l, r, wl, wr) = (columns.low[ox], columns.high[ox], columns.lowWeight[ox], columns.highWeight[ox])
                    top[l] += wt * wl * g
                    top[r] += wt * wr * g
                    bottom[l] += wb * wl * g
                    bottom[r] += wb * wr * g
                }
            }
        }
        return inputGradient
    }
}

/// Nearest-neighbour resizing, as `F.interpolate(x, size=..., mode="nearest")`: source index
/// `min(floor(dst * in/out), in - 1)` (PyTorch's legacy "nearest", not "nearest-exact").
public final class NearestResize: Layer {
    public var mode: LayerMode = .training
    public let outputHeight: Int, outputWidth: Int
    private var cachedInputShape: [Int]?

    public init(outputHeight: Int, outputWidth: Int) {
        precondition(outputHeight > 0 && outputWidth > 0, "NearestResize to \(outputHeight)x\(outputWidth)")
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
    }

    private static func sources(input: Int, output: Int) -> [Int] {
        let scale = Float(input) / Float(output)
        return (0..<output).map { Swift.min(Int((Float($0) * scale).rounded(.down)), input - 1) }
    }

    /// input (N, C, H, W) -> output (N, C, outputHeight, outputWidth)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4, "NearestResize needs NCHW, got \(input.shape)")
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (Ho, Wo) = (outputHeight, outputWidth)
        let rows = Self.sources(input: H, output: Ho), columns = Self.sources(input: W, output: Wo)
        var output = Tensor(unspecified: [N, C, Ho, Wo])
        forEachPlane(of: input, into: &output) { x, y in
            for oy in 0..<Ho {
                let (source, target) = (x + rows[oy] * W, y + oy * Wo)
                for ox in 0..<Wo { target[ox] = source[columns[ox]] }
            }
        }
        cachedInputShape = mode.cachesForBackward ? input.shape : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let shape = requireCache(cachedInputShape, "NearestResize")
        cachedInputShape = nil
        let (N, C, H, W) = (shape[0], shape[1], shape[2], shape[3])
        let (Ho, Wo) = (outputHeight, outputWidth)
        precondition(outputGradient.shape == [N, C, Ho, Wo], "NearestResize.backward: gradient \(outputGradient.shape)")
        let rows = Self.sources(input: H, output: Ho), columns = Self.sources(input: W, output: Wo)
        var inputGradient = Tensor(zeros: shape)
        forEachPlane(of: outputGradient, into: &inputGradient) { dy, dx in
            for oy in 0..<Ho {
                let (source, target) = (dy + oy * Wo, dx + rows[oy] * W)
                for ox in 0..<Wo { target[columns[ox]] += source[ox] }
            }
        }
        return inputGradient
    }
}
