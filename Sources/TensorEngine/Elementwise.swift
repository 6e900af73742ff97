/// Concatenation along the channel dimension, as `torch.cat(inputs, dim=1)` on NCHW tensors
/// (any rank >= 2 works: dimension 1 is joined). Backward splits the gradient back.
public final class ChannelConcatenation {
    private var cachedChannelCounts: [Int]?
    public var mode: LayerMode = .training

    public init() {}

    public func forward(_ inputs: [Tensor]) -> Tensor {
        precondition(!inputs.isEmpty && inputs[0].rank >= 2, "ChannelConcatenation needs inputs of rank >= 2")
        let N = inputs[0].shape[0], tail = Array(inputs[0].shape.dropFirst(2))
        let plane = tail.reduce(1, *)
        for input in inputs {
            precondition(input.shape[0] == N && Array(input.shape.dropFirst(2)) == tail,
                         "ChannelConcatenation of \(inputs.map(\.shape)): batch and spatial sizes must agree")
        }
        let channelCounts = inputs.map { $0.shape[1] }
        let totalChannels = channelCounts.reduce(0, +)
        var scalars: [Float] = []
        scalars.reserveCapacity(N * totalChannels * plane)
        for n in 0..<N {
            for (input, channels) in zip(inputs, channelCounts) {
                scalars.append(contentsOf: input.scalars[(n * channels * plane)..<((n + 1) * channels * plane)])
            }
        }
        cachedChannelCounts = mode.cachesForBackward ? channelCounts : nil
        return Tensor(shape: [N, totalChannels] + tail, scalars: scalars)
    }

    /// outputGradient (N, sum C_i, ...) -> one gradient per input, in input order.
    public func backward(_ outputGradient: Tensor) -> [Tensor] {
        let channelCounts = requireCache(cachedChannelCounts, "ChannelConcatenation")
        cachedChannelCounts = nil
        let N = outputGradient.shape[0], totalChannels = outputGradient.shape[1], tail = Array(outputGradient.shape.dropFirst(2))
        let plane = tail.reduce(1, *)
        precondition(totalChannels == channelCounts.reduce(0, +), "ChannelConcatenation.backward: gradient \(outputGradient.shape)")
        var results = channelCounts.map { [Float](repeating: 0, count: N * $0 * plane) }
        for n in 0..<N {
            var offset = n * totalChannels * plane
            for (i, channels) in channelCounts.enumerated() {
                let length = channels * plane
                results[i].replaceSubrange((n * length)..<((n + 1) * length), with: outputGradient.scalars[offset..<(offset + length)])
                offset += length
            }
        }
        return zip(results, channelCounts).map { Tensor(shape: [N, $0.1] + tail, scalars: $0.0) }
    }
}

/// Elementwise sum of two equally shaped tensors (residual connections). Stateless: backward
/// hands the same gradient to both inputs.
public enum Addition {
    public static func forward(_ lhs: Tensor, _ rhs: Tensor) -> Tensor { lhs + rhs }
    public static func backward(_ outputGradient: Tensor) -> (lhs: Tensor, rhs: Tensor) { (outputGradient, outputGradient) }
}

/// Elementwise product `lhs * rhs` where rhs has lhs's shape or is a one-channel map
/// (N, 1, H, W) broadcast over lhs's C channels (attention: M(x_t) * x).
/// Backward: d lhs = g * rhs; d rhs = g * lhs, summed over channels when broadcast.
public final class Multiplication {
    public var mode: LayerMode = .training
    private var cached: (lhs: Tensor, rhs: Tensor)?

    public init() {}

    private static func isBroadcast(_ lhs: Tensor, _ rhs: Tensor) -> Bool {
        if lhs.shape == rhs.shape { return false }
        precondition(lhs.rank == 4 && rhs.shape == [lhs.shape[0], 1, lhs.shape[2], lhs.shape[3]],
                     "Multiplication of \(lhs.shape) by \(rhs.shape): shapes must match or rhs be (N, 1, H, W)")
        return true
    }

    public func forward(_ lhs: Tensor, _ rhs: Tensor) -> Tensor {
        let output: Tensor
        if Self.isBroadcast(lhs, rhs) {
            let (N, C) = (lhs.shape[0], lhs.shape[1]), plane = lhs.shape[2] * lhs.shape[3]
            var result = lhs
            result.scalars.withUnsafeMutableBufferPointer { y in
                rhs.scalars.withUnsafeBufferPointer { m in
                    for n in 0..<N { for c in 0..<C {
                        let base = (n * C + c) * plane
                        for i in 0..<plane { y[base + i] *= m[n * plane + i] }
                    } }
                }
            }
            output = result
        } else {
            output = lhs * rhs
        }
        cached = mode.cachesForBackward ? (lhs, rhs) : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> (lhs: Tensor, rhs: Tensor) {
        let (lhs, rhs) = requireCache(cached, "Multiplication")
        cached = nil
        precondition(outputGradient.shape == lhs.shape, "Multiplication.backward: gradient \(outputGradient.shape) for \(lhs.shape)")
        guard Self.isBroadcast(lhs, rhs) else { return (outputGradient * rhs, outputGradient * lhs) }
        let (N, C) = (lhs.shape[0], lhs.shape[1]), plane = lhs.shape[2] * lhs.shape[3]
        var dlhs = outputGradient, drhs = Tensor(zeros: rhs.shape)
        dlhs.scalars.withUnsafeMutableBufferPointer { dl in
            drhs.scalars.withUnsafeMutableBufferPointer { dr in
                lhs.scalars.withUnsafeBufferPointer { l in
                    rhs.scalars.withUnsafeBufferPointer { m in
                        for n in 0..<N { for c in 0..<C {
                            let base = (n * C + c) * plane
                            for i in 0..<plane {
                                dr[n * plane + i] += dl[base + i] * l[base + i]
                                dl[base + i] *= m[n * plane + i]
                            }
                        } }
                    }
                }
            }
        }
        return (dlhs, drhs)
    }
}

extension Multiplication {
    /// Inference at an attention site: `relu(x) * map`, or with `residual` `relu(x) + relu(x) * map`,
    /// map (N, 1, H, W) broadcast over x's (N, C, H, W) channels, in one pass on the workers
    /// instead of a ReLU, a product and a sum tensor.
    public static func attended(_ x: Tensor, by map: Tensor, residual: Bool) -> Tensor {
        precondition(x.rank == 4 && map.shape == [x.shape[0], 1, x.shape[2], x.shape[3]],
                     "attention of \(x.shape) by \(map.shape): the map must be (N, 1, H, W)")
        let (N, C, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var output = Tensor(unspecified: x.shape)
        x.scalars.withUnsafeBufferPointer { x in
            map.scalars.withUnsafeBufferPointer { m in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    parallelRanges(count: N * C) { planes in
                        for index in planes {
                            let (source, weights, target) = (x.baseAddress! + index * plane, m.baseAddress! + index / C * plane,
                                                             y.baseAddress! + index * plane)
                            var i = 0
                            while i + 8 <= plane {
                                let v = load8(source + i)
                                let a = v.replacing(with: 0, where: v .<= 0)
                                let scaled = a * load8(weights + i)
                                store8(residual ? a + scaled : scaled, target + i)
                                i += 8
                            }
                            while i < plane {
                                let a = source[i] > 0 ? source[i] : 0
                                target[i] = residual ? a + a * weights[i] : a * weights[i]
                                i += 1
                            }
                        }
                    }
                }
            }
        }
        return output
    }
}

/// Channel-wise L2 normalisation, as `torch.nn.functional.normalize(x, p=2, dim=1, eps=1e-12)`:
/// y = x / max(||x||_2, eps) at every position. Backward where the norm is at least eps:
/// dx = (dy - y * sum_c(dy * y)) / ||x||; where clamped: dx = dy / eps (finite at zero).
public final class L2Normalization: Layer {
    public var mode: LayerMode = .training
    public let epsilon: Float
    private var cached: (output: Tensor, norms: [Float])?

    public init(epsilon: Float = 1e-12) {
        self.epsilon = epsilon
    }

    /// input (N, C, ...) -> output (N, C, ...)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank >= 2, "L2Normalization needs (N, C, ...), got \(input.shape)")
        let (N, C) = (input.shape[0], input.shape[1]), plane = input.count / Swift.max(1, N * C)
        var output = Tensor(unspecified: input.shape)
        var norms = [Float](repeating: 0, count: N * plane)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                norms.withUnsafeMutableBufferPointer { normOut in
                    parallelRanges(count: N) { range in
                        for n in range {
                            // Channel-major passes over contiguous planes, eight positions at a time
                            // (the compiler cannot vectorise through the possibly aliasing pointers).
                            let (source, target, norm) = (x.baseAddress! + n * C * plane, y.baseAddress! + n * C * plane,
                                                          normOut.baseAddress! + n * plane)
                            let vectorEnd = plane / 8 * 8
                            for i in 0..<plane { norm[i] = 0 }
                            for c in 0..<C {
                                let row = source + c * plane
                                for i in stride(from: 0, to: vectorEnd, by: 8) { let v = load8(row + i); store8(load8(norm + i) + v * v, norm + i) }
                                for i in vectorEnd..<plane { norm[i] += row[i] * row[i] }
                            }
                            for i in 0..<plane { norm[i] = norm[i].squareRoot() }
                            let floor = SIMD8<Float>(repeating: epsilon)
                            for c in 0..<C {
                                let (row, out) = (source + c * plane, target + c * plane)
                                for i in stride(from: 0, to: vectorEnd, by: 8) {
                                    store8(load8(row + i) / pointwiseMax(load8(norm + i), floor), out + i)
                                }
                                for i in vectorEnd..<plane { out[i] = row[i] / Swift.max(norm[i], epsilon) }
                            }
                        }
                    }
                }
            }
        }
        cached = mode.cachesForBackward ? (output, norms) : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let (output, norms) = requireCache(cached, "L2Normalization")
        cached = nil
        precondition(outputGradient.shape == output.shape, "L2Normalization.backward: gradient \(outputGradient.shape) for \(output.shape)")
        let (N, C) = (output.shape[0], output.shape[1]), plane = output.count / Swift.max(1, N * C)
        var inputGradient = Tensor(unspecified: output.shape)
        output.scalars.withUnsafeBufferPointer { y in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    parallelRanges(count: N) { range in
                        // Channel-major passes over contiguous planes (a position's channels are a
                        // plane apart); the clamped positions use dot 0 and divide by eps.
                        var dot = [Float](repeating: 0, count: plane), divisor = dot
                        for n in range {
                            let base = n * C * plane
                            for i in 0..<plane { dot[i] = 0 }
                            for c in 0..<C { for i in 0..<plane { dot[i] += dy[base + c * plane + i] * y[base + c * plane + i] } }
                            for i in 0..<plane {
                                let norm = norms[n * plane + i]
                                if norm < epsilon { dot[i] = 0 }
                                divisor[i] = norm >= epsilon ? norm : epsilon
                            }
                            for c in 0..<C { for i in 0..<plane {
                                dx[base + c * plane + i] = (dy[base + c * plane + i] - y[base + c * plane + i] * dot[i]) / divisor[i]
                            } }
                        }
                    }
                }
            }
        }
        return inputGradient
    }
}

/// Per-position distance `d = 0.5 * sum_c (a - b)^2`: (N, C, H, W) x 2 -> (N, 1, H, W), the
/// STPM loss map. Backward: d a = g * (a - b), d b = -d a.
public final class HalfSquaredDistance {
    public var mode: LayerMode = .training
    private var cachedDifference: Tensor?

    public init() {}

    public func forward(_ lhs: Tensor, _ rhs: Tensor) -> Tensor {
        precondition(lhs.shape == rhs.shape && lhs.rank >= 2, "HalfSquaredDistance of \(lhs.shape) and \(rhs.shape)")
        let difference = lhs - rhs
        let (N, C) = (lhs.shape[0], lhs.shape[1]), plane = lhs.count / Swift.max(1, N * C)
        var output = Tensor(zeros: [N, 1] + Array(lhs.shape.dropFirst(2)))
        difference.scalars.withUnsafeBufferPointer { d in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for n in 0..<N {
                    for c in 0..<C { for i in 0..<plane { let v = d[(n * C + c) * plane + i]; y[n * plane + i] += v * v } }
                    for i in 0..<plane { y[n * plane + i] *= 0.5 }
                }
            }
        }
        cachedDifference = mode.cachesForBackward ? difference : nil
        return output
    }

    /// Inference: `forward(L2Normalization(epsilon)(lhs), L2Normalization(epsilon)(rhs))` with the
    /// same rounding, in one pass over blocks of positions (on the engine's workers) instead of
    /// three whole tensors (the two normalised inputs and their difference).
    public static func ofNormalized(_ lhs: Tensor, _ rhs: Tensor, epsilon: Float = 1e-12) -> Tensor {
        precondition(lhs.shape == rhs.shape && lhs.rank >= 2, "HalfSquaredDistance of \(lhs.shape) and \(rhs.shape)")
        let (N, C) = (lhs.shape[0], lhs.shape[1]), plane = lhs.count / Swift.max(1, N * C)
        var output = Tensor(unspecified: [N, 1] + Array(lhs.shape.dropFirst(2)))
        let block = 256, blocks = (plane + block - 1) / block
        lhs.scalars.withUnsafeBufferPointer { a in
            rhs.scalars.withUnsafeBufferPointer { b in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    parallelRanges(count: N * blocks) { items in
                        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * block) { scratch in
                            let (normA, normB, sum) = (scratch.baseAddress!, scratch.baseAddress! + block, scratch.baseAddress! + 2 * block)
                            let floor = SIMD8<Float>(repeating: epsilon)
                            for item in items {
                                let (n, start) = (item / blocks, item % blocks * block)
                                let count = Swift.min(block, plane - start), vectorEnd = count / 8 * 8
                                let (baseA, baseB) = (a.baseAddress! + n * C * plane + start, b.baseAddress! + n * C * plane + start)
                                for i in 0..<count { (normA[i], normB[i], sum[i]) = (0, 0, 0) }
                                for c in 0..<C {
                                    let (rowA, rowB) = (baseA + c * plane, baseB + c * plane)
                                    for i in stride(from: 0, to: vectorEnd, by: 8) {
                                        let (u, v) = (load8(rowA + i), load8(rowB + i))
                                        store8(load8(normA + i) + u * u, normA + i)
                                        store8(load8(normB + i) + v * v, normB + i)
                                    }
                                    for i in vectorEnd..<count {
                                        normA[i] += rowA[i] * rowA[i]
                                        normB[i] += rowB[i] * rowB[i]
                                    }
                                }
                                for i in 0..<count { (normA[i], normB[i]) = (normA[i].squareRoot(), normB[i].squareRoot()) }
                                for c in 0..<C {
                                    let (rowA, rowB) = (baseA + c * plane, baseB + c * plane)
                                    for i in stride(from: 0, to: vectorEnd, by: 8) {
                                        // pointwiseMax(norm, floor), which the compiler leaves as a call here.
                                        let (na, nb) = (load8(normA + i), load8(normB + i))
                                        let d = load8(rowA + i) / na.replacing(with: floor, where: na .< floor)
                                            - load8(rowB + i) / nb.replacing(with: floor, where: nb .< floor)
                                        store8(load8(sum + i) + d * d, sum + i)
                                    }
                                    for i in vectorEnd..<count {
                                        let d = rowA[i] / Swift.max(normA[i], epsilon) - rowB[i] / Swift.max(normB[i], epsilon)
                                        sum[i] += d * d
                                    }
                                }
                                let target = y.baseAddress! + n * plane + start
                                for i in 0..<count { target[i] = sum[i] * 0.5 }
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    /// outputGradient (N, 1, ...) -> (d lhs, d rhs), each (N, C, ...)
    public func backward(_ outputGradient: Tensor) -> (lhs: Tensor, rhs: Tensor) {
        let difference = requireCache(cachedDifference, "HalfSquaredDistance")
        cachedDifference = nil
        let (N, C) = (difference.shape[0], difference.shape[1]), plane = difference.count / Swift.max(1, N * C)
        precondition(outputGradient.count == N * plane, "HalfSquaredDistance.backward: gradient \(outputGradient.shape)")
        var dlhs = difference
        dlhs.scalars.withUnsafeMutableBufferPointer { d in
            outputGradient.scalars.withUnsafeBufferPointer { g in
                for n in 0..<N { for c in 0..<C { for i in 0..<plane { d[(n * C + c) * plane + i] *= g[n * plane + i] } } }
            }
        }
        return (dlhs, dlhs * -1)
    }
}

/// Mean of all elements as a loss: forward returns a scalar; backward spreads an upstream
/// scalar gradient (1 for a loss) evenly over the input's shape.
public final class Mean {
    public var mode: LayerMode = .training
    private var cachedShape: [Int]?

    public init() {}

    public func forward(_ input: Tensor) -> Float {
        cachedShape = mode.cachesForBackward ? input.shape : nil
        return input.mean()
    }

    public func backward(_ outputGradient: Float = 1) -> Tensor {
        let shape = requireCache(cachedShape, "Mean")
        cachedShape = nil
        let count = shape.reduce(1, *)
        return Tensor(shape: shape, repeating: outputGradient / Float(count))
    }
}
