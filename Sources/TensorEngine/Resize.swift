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

    /// input (N, C, H, W) -> output (N, C, outputHeight, outputWidth)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4, "BilinearResize needs NCHW, got \(input.shape)")
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let plan = BilinearPlane(sourceHeight: H, sourceWidth: W, height: outputHeight, width: outputWidth)
        var output = Tensor(unspecified: [N, C, outputHeight, outputWidth])
        forEachPlane(of: input, into: &output) { x, y in plan.resize(x, into: y) }
        cachedInputShape = mode.cachesForBackward ? input.shape : nil
        return output
    }

    /// Inference: `ChannelConcatenation().forward([forward(input), trailing])`, the resized
    /// planes written straight into the joined tensor. trailing (N, C', outputHeight, outputWidth)
    /// -> (N, C + C', outputHeight, outputWidth)
    public func forward(_ input: Tensor, concatenatingWith trailing: Tensor) -> Tensor {
        precondition(input.rank == 4, "BilinearResize needs NCHW, got \(input.shape)")
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (Ct, plane) = (trailing.rank == 4 ? trailing.shape[1] : 0, outputHeight * outputWidth)
        precondition(trailing.shape == [N, Ct, outputHeight, outputWidth],
                     "BilinearResize to \(outputHeight)x\(outputWidth) of \(input.shape) joined with \(trailing.shape)")
        let plan = BilinearPlane(sourceHeight: H, sourceWidth: W, height: outputHeight, width: outputWidth)
        var output = Tensor(unspecified: [N, C + Ct, outputHeight, outputWidth])
        input.scalars.withUnsafeBufferPointer { x in
            trailing.scalars.withUnsafeBufferPointer { t in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    parallelRanges(count: N * (C + Ct)) { planes in
                        for index in planes {
                            let (n, c) = (index / (C + Ct), index % (C + Ct))
                            if c < C {
                                plan.resize(x.baseAddress! + (n * C + c) * H * W, into: y.baseAddress! + index * plane)
                            } else {
                                (y.baseAddress! + index * plane).update(from: t.baseAddress! + (n * Ct + c - C) * plane, count: plane)
                            }
                        }
                    }
                }
            }
        }
        cachedInputShape = nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let shape = requireCache(cachedInputShape, "BilinearResize")
        cachedInputShape = nil
        let (N, C, H, W) = (shape[0], shape[1], shape[2], shape[3])
        let (Ho, Wo) = (outputHeight, outputWidth)
        precondition(outputGradient.shape == [N, C, Ho, Wo], "BilinearResize.backward: gradient \(outputGradient.shape)")
        let rows = BilinearTaps(input: H, output: Ho), columns = BilinearTaps(input: W, output: Wo)
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

/// One axis of a bilinear resize: for every output index, the two source indices and their weights.
struct BilinearTaps {
    var low: [Int] = [], high: [Int] = [], lowWeight: [Float] = [], highWeight: [Float] = []

    init(input: Int, output: Int) {
        let scale = Float(input) / Float(output)
        for dst in 0..<output {
            let source = Swift.max(scale * (Float(dst) + 0.5) - 0.5, 0)
            let low = Swift.min(Int(source), input - 1)
            let high = low < input - 1 ? low + 1 : low
            let lambda = source - Float(low)
            self.low.append(low)
            self.high.append(high)
            lowWeight.append(1 - lambda)
            highWeight.append(lambda)
        }
    }
}

/// A bilinear resize of one plane in two passes: the source rows resized along x
/// (`horizontal`, one gather per output column), then each output row the blend of two of
/// them (`row`, a contiguous loop). Each output is `wt * (wl * a + wr * b) + wb * (wl * c + wr * d)`,
/// rounded exactly as when computed output by output.
struct BilinearPlane {
    let sourceHeight: Int, sourceWidth: Int, height: Int, width: Int
    let rows: BilinearTaps, columns: BilinearTaps

    init(sourceHeight: Int, sourceWidth: Int, height: Int, width: Int) {
        (self.sourceHeight, self.sourceWidth, self.height, self.width) = (sourceHeight, sourceWidth, height, width)
        rows = BilinearTaps(input: sourceHeight, output: height)
        columns = BilinearTaps(input: sourceWidth, output: width)
    }

    /// The source rows that output rows `outputRows` read (both tap lists rise with the output index).
    func sourceRows(for outputRows: Range<Int>) -> Range<Int> {
        rows.low[outputRows.lowerBound]..<(rows.high[outputRows.upperBound - 1] + 1)
    }

    /// Source rows `sourceRows` of `plane` resized along x into `target` (sourceRows.count rows of `width`).
    func horizontal(_ plane: UnsafePointer<Float>, sourceRows: Range<Int>, into target: UnsafeMutablePointer<Float>) {
        columns.low.withUnsafeBufferPointer { low in
            columns.high.withUnsafeBufferPointer { high in
                columns.lowWeight.withUnsafeBufferPointer { wl in
                    columns.highWeight.withUnsafeBufferPointer { wr in
                        for (index, sourceRow) in sourceRows.enumerated() {
                            let (source, out) = (plane + sourceRow * sourceWidth, target + index * width)
                            for ox in 0..<width { out[ox] = wl[ox] * source[low[ox]] + wr[ox] * source[high[ox]] }
                        }
                    }
                }
            }
        }
    }

    /// Output row `oy` from rows resized by `horizontal`, the first of them source row `firstRow`.
    @inline(__always)
    func row(_ oy: Int, from resized: UnsafePointer<Float>, firstRow: Int, into out: UnsafeMutablePointer<Float>) {
        let top = resized + (rows.low[oy] - firstRow) * width, bottom = resized + (rows.high[oy] - firstRow) * width
        let (wt, wb) = (rows.lowWeight[oy], rows.highWeight[oy])
        let (vt, vb) = (SIMD8<Float>(repeating: wt), SIMD8<Float>(repeating: wb))
        var x = 0
        while x + 8 <= width {
            store8(vt * load8(top + x) + vb * load8(bottom + x), out + x)
            x += 8
        }
        while x < width { out[x] = wt * top[x] + wb * bottom[x]; x += 1 }
    }

    /// The whole plane, `source` (sourceHeight, sourceWidth) -> `target` (height, width).
    func resize(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>) {
        let needed = sourceRows(for: 0..<height)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: needed.count * width) { resized in
            horizontal(source, sourceRows: needed, into: resized.baseAddress!)
            for oy in 0..<height { row(oy, from: resized.baseAddress!, firstRow: needed.lowerBound, into: target + oy * width) }
        }
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
