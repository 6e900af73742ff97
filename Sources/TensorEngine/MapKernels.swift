import Foundation

/// Kernels on one-channel (N, 1, H, W) score maps, as an anomaly-map fusion combines them:
/// bilinear resizes summed in pairs, multiplied or scaled in the same pass, a separable Gaussian
/// blur, per-item maxima. Each computes what the plain sequence of `BilinearResize`, `+`, `*`
/// and loops computes, with the same rounding, without the whole-map temporaries, and spread
/// over the engine's workers (by item, and by rows when the batch is smaller than the workers).
public enum MapKernels {
    /// `prod_g (resize(maps[pairs[g].0]) + resize(maps[pairs[g].1]))` at (height, width), the
    /// product taken left to right; each map (N, 1, h, w), bilinear as `BilinearResize`, maps
    /// already at (height, width) taken as they are. -> (N, 1, height, width)
    public static func resizedPairSumProduct(_ maps: [Tensor], pairs: [(Int, Int)], height: Int, width: Int) -> Tensor {
        precondition(!pairs.isEmpty, "resizedPairSumProduct needs at least one pair")
        var output = Tensor(unspecified: [maps.first?.shape[0] ?? 0, 1, height, width])
        output.scalars.withUnsafeMutableBufferPointer { out in
            forEachResizedRow(of: maps, height: height, width: width) { n, oy, rows in
                let target = out.baseAddress! + (n * height + oy) * width
                for (g, pair) in pairs.enumerated() {
                    let (a, b) = (rows[pair.0], rows[pair.1])
                    if g == 0 {
                        for x in 0..<width { target[x] = a[x] + b[x] }
                    } else {
                        for x in 0..<width { target[x] *= a[x] + b[x] }
                    }
                }
            }
        }
        return output
    }

    /// Channel g = `(resize(maps[pairs[g].0]) + resize(maps[pairs[g].1])) * scales[g]` at
    /// (height, width), as `resizedPairSumProduct` resizes. -> (N, pairs.count, height, width)
    public static func resizedPairSums(_ maps: [Tensor], pairs: [(Int, Int)], scales: [Float], height: Int, width: Int) -> Tensor {
        precondition(pairs.count == scales.count, "resizedPairSums: \(pairs.count) pairs, \(scales.count) scales")
        let G = pairs.count
        var output = Tensor(unspecified: [maps.first?.shape[0] ?? 0, G, height, width])
        output.scalars.withUnsafeMutableBufferPointer { out in
            forEachResizedRow(of: maps, height: height, width: width) { n, oy, rows in
                for (g, pair) in pairs.enumerated() {
                    let (a, b, scale) = (rows[pair.0], rows[pair.1], scales[g])
                    let target = out.baseAddress! + ((n * G + g) * height + oy) * width
                    for x in 0..<width { target[x] = (a[x] + b[x]) * scale }
                }
            }
        }
        return output
    }

    /// Runs `body(n, oy, rows)` for every item n and output row oy, where `rows[i]` is row oy of
    /// maps[i] resized to (height, width). Work items are (item, band of rows); each resizes
    /// along x only the source rows its band reads.
    private static func forEachResizedRow(of maps: [Tensor], height: Int, width: Int,
                                          _ body: (Int, Int, UnsafePointer<UnsafePointer<Float>>) -> Void) {
        precondition(!maps.isEmpty && height > 0 && width > 0, "resizing \(maps.count) maps to \(height)x\(width)")
        let N = maps[0].shape[0]
        for map in maps {
            precondition(map.rank == 4 && map.shape[0] == N && map.shape[1] == 1, "map \(map.shape): expected (\(N), 1, h, w)")
        }
        let plans = maps.map { BilinearPlane(sourceHeight: $0.height, sourceWidth: $0.width, height: height, width: width) }
        let resized = maps.map { $0.height != height || $0.width != width }
        guard N > 0 else { return }
        let bands = max(1, min(height / 8, (2 * Engine.threadCount + N - 1) / N))
        let bandRows = { (band: Int) in (band * height / bands)..<((band + 1) * height / bands) }
        // Per work item: each resized map's source rows of a band, along x, and one output row of it.
        let scratchRows = plans.enumerated().reduce(0) { total, entry in
            guard resized[entry.offset] else { return total }
            return total + 1 + (0..<bands).map { entry.element.sourceRows(for: bandRows($0)).count }.max()!
        }
        withBaseAddresses(of: maps) { sources in
            parallelRanges(count: N * bands) { items in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, scratchRows * width)) { scratch in
                    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: maps.count) { rows in
                        for item in items {
                            let (n, band) = (item / bands, item % bands)
                            let outputRows = bandRows(band)
                            var firstRows = [Int](repeating: 0, count: maps.count), starts = firstRows
                            var next = 0
                            for (i, plan) in plans.enumerated() where resized[i] {
                                let needed = plan.sourceRows(for: outputRows)
                                firstRows[i] = needed.lowerBound
                                starts[i] = next
                                plan.horizontal(sources[i] + n * plan.sourceHeight * plan.sourceWidth, sourceRows: needed,
                                                into: scratch.baseAddress! + next * width)
                                next += needed.count
                            }
                            // One output row per resized map after the resized source rows.
                            let rowBuffers = scratch.baseAddress! + next * width
                            for oy in outputRows {
                                var slot = 0
                                for (i, plan) in plans.enumerated() {
                                    if resized[i] {
                                        let out = rowBuffers + slot * width
                                        plan.row(oy, from: scratch.baseAddress! + starts[i] * width, firstRow: firstRows[i], into: out)
                                        rows[i] = UnsafePointer(out)
                                        slot += 1
                                    } else {
                                        rows[i] = sources[i] + (n * height + oy) * width
                                    }
                                }
                                body(n, oy, UnsafePointer(rows.baseAddress!))
                            }
                        }
                    }
                }
            }
        }
    }

    /// Each (height, width) plane of an (N, 1, height, width) map blurred with a Gaussian of
    /// standard deviation `sigma` pixels: taps to 4 sigma (rounded), normalised to sum 1,
    /// borders reflected as scipy's gaussian_filter ("reflect": d c b a | a b c d | d c b a), rows
    /// first, then columns; each output sums its taps in order. `sigma` 0 returns the map.
    public static func gaussianBlurred(_ map: Tensor, sigma: Float) -> Tensor {
        guard sigma > 0 else { return map }
        precondition(map.rank == 4 && map.shape[1] == 1, "gaussianBlurred needs (N, 1, H, W), got \(map.shape)")
        let (N, H, W) = (map.shape[0], map.shape[2], map.shape[3])
        let radius = Int((4 * sigma).rounded())
        var taps = (-radius...radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let total = taps.reduce(0, +)
        taps = taps.map { $0 / total }
        func reflected(_ i: Int, _ n: Int) -> Int {
            let period = 2 * n
            var j = i % period
            if j < 0 { j += period }
            return j < n ? j : period - 1 - j
        }
        let columnSources = (0..<(W + 2 * radius)).map { reflected($0 - radius, W) }
        let rowSources = (0..<(H + 2 * radius)).map { reflected($0 - radius, H) }
        let bands = max(1, min(H, (4 * Engine.threadCount + N - 1) / max(N, 1)))
        var rows = Tensor(unspecified: map.shape), output = Tensor(unspecified: map.shape)
        map.scalars.withUnsafeBufferPointer { x in
            rows.scalars.withUnsafeMutableBufferPointer { rowsOut in
                output.scalars.withUnsafeMutableBufferPointer { out in
                    taps.withUnsafeBufferPointer { taps in
                        // Rows: each line padded by reflection, then a tap-weighted sum of shifted copies.
                        parallelRanges(count: N * bands) { items in
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: W + 2 * radius) { padded in
                                for item in items {
                                    let (n, band) = (item / bands, item % bands)
                                    for y in (band * H / bands)..<((band + 1) * H / bands) {
                                        let source = x.baseAddress! + (n * H + y) * W
                                        for i in 0..<padded.count { padded[i] = source[columnSources[i]] }
                                        weightedSum(taps, of: { UnsafePointer(padded.baseAddress! + $0) }, count: W,
                                                    into: rowsOut.baseAddress! + (n * H + y) * W)
                                    }
                                }
                            }
                        }
                        // Columns: the same sum over the reflected rows above and below.
                        parallelRanges(count: N * bands) { items in
                            for item in items {
                                let (n, band) = (item / bands, item % bands)
                                let plane = UnsafePointer(rowsOut.baseAddress! + n * H * W)
                                for y in (band * H / bands)..<((band + 1) * H / bands) {
                                    weightedSum(taps, of: { plane + rowSources[y + $0] * W }, count: W, into: out.baseAddress! + (n * H + y) * W)
                                }
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    /// target[x] = sum_k taps[k] * line(k)[x], summed in k order, eight columns at a time in registers.
    @inline(__always)
    private static func weightedSum(_ taps: UnsafeBufferPointer<Float>, of line: (Int) -> UnsafePointer<Float>, count: Int,
                                    into target: UnsafeMutablePointer<Float>) {
        var x = 0
        while x + 16 <= count {
            var (a, b) = (SIMD8<Float>(), SIMD8<Float>())
            for k in 0..<taps.count {
                let (tap, source) = (SIMD8<Float>(repeating: taps[k]), line(k) + x)
                a += tap * load8(source)
                b += tap * load8(source + 8)
            }
            store8(a, target + x)
            store8(b, target + x + 8)
            x += 16
        }
        while x < count {
            var sum: Float = 0
            for k in 0..<taps.count { sum += taps[k] * line(k)[x] }
            target[x] = sum
            x += 1
        }
    }

    /// The largest element of each item of an (N, ...) tensor, as `Array.max()` finds it (NaN
    /// only where an item starts with NaN, other NaNs skipped); nil for empty items.
    public static func itemMaxima(_ tensor: Tensor) -> [Float?] {
        let N = tensor.shape.first ?? 0
        let size = N == 0 ? 0 : tensor.count / N
        return tensor.scalars.withUnsafeBufferPointer { x in
            (0..<N).map { n -> Float? in
                guard size > 0 else { return nil }
                let item = x.baseAddress! + n * size
                let first = item[0]
                guard !first.isNaN else { return first }
                // Every lane starts at the first element, so a lane never holds NaN.
                var best = SIMD8<Float>(repeating: first)
                var i = 0
                while i + 8 <= size {
                    let v = load8(item + i)
                    best.replace(with: v, where: best .< v)
                    i += 8
                }
                var result = best.max()
                while i < size { if result < item[i] { result = item[i] }; i += 1 }
                return result
            }
        }
    }
}

/// `body` with the storage base address of every tensor, in order.
func withBaseAddresses<Result>(of tensors: [Tensor], _ body: ([UnsafePointer<Float>]) -> Result) -> Result {
    func nest(_ index: Int, _ addresses: [UnsafePointer<Float>]) -> Result {
        guard index < tensors.count else { return body(addresses) }
        return tensors[index].scalars.withUnsafeBufferPointer { nest(index + 1, addresses + [$0.baseAddress!]) }
    }
    return nest(0, [])
}
