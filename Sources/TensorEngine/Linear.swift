/// `torch.nn.Linear(inputFeatures, outputFeatures)`: y = x W^T + b over the last dimension
/// (leading dimensions are rows). Weight (outputFeatures, inputFeatures), bias (outputFeatures),
/// initialised uniform in +-1/sqrt(inputFeatures) as PyTorch.
public final class Linear: Layer {
    public var mode: LayerMode = .training
    public let inputFeatures: Int, outputFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?
    private var cachedInput: Tensor?

    public convenience init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true, generator: SeededGenerator) {
        let bound = 1 / Float(inputFeatures).squareRoot()
        self.init(inputFeatures: inputFeatures, outputFeatures: outputFeatures,
                  weight: generator.uniformTensor(shape: [outputFeatures, inputFeatures], bound: bound),
                  bias: bias ? generator.uniformTensor(shape: [outputFeatures], bound: bound) : nil)
    }

    public init(inputFeatures: Int, outputFeatures: Int, weight: Tensor, bias: Tensor?) {
        precondition(weight.shape == [outputFeatures, inputFeatures], "Linear weight shape \(weight.shape), expected \([outputFeatures, inputFeatures])")
        precondition(bias == nil || bias!.shape == [outputFeatures], "Linear bias shape \(bias!.shape), expected [\(outputFeatures)]")
        self.inputFeatures = inputFeatures
        self.outputFeatures = outputFeatures
        self.weight = Parameter(name: "weight", value: weight)
        self.bias = bias.map { Parameter(name: "bias", value: $0) }
    }

    public var ownParameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    /// input (..., inputFeatures) -> output (..., outputFeatures)
    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank >= 1 && input.shape.last == inputFeatures, "Linear(\(inputFeatures)->\(outputFeatures)) got input \(input.shape)")
        let rows = input.count / inputFeatures
        var output = Tensor(zeros: Array(input.shape.dropLast()) + [outputFeatures])
        if let bias {
            for r in 0..<rows { for o in 0..<outputFeatures { output.scalars[r * outputFeatures + o] = bias.value.scalars[o] } }
        }
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    sgemm(transposeA: false, transposeB: true, m: rows, n: outputFeatures, k: inputFeatures, a: x.baseAddress!, lda: inputFeatures,
                          b: w.baseAddress!, ldb: inputFeatures, beta: 1, c: y.baseAddress!, ldc: outputFeatures)
                }
            }
        }
        cachedInput = mode.cachesForBackward ? input : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = requireCache(cachedInput, "Linear")
        cachedInput = nil
        let rows = input.count / inputFeatures
        precondition(outputGradient.count == rows * outputFeatures, "Linear.backward: gradient \(outputGradient.shape) for input \(input.shape)")
        var inputGradient = Tensor(zeros: input.shape)
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                        // dx (rows, in) = dy (rows, out) * w (out, in)
                        sgemm(transposeA: false, transposeB: false, m: rows, n: inputFeatures, k: outputFeatures, a: dy.baseAddress!, lda: outputFeatures,
                              b: w.baseAddress!, ldb: inputFeatures, beta: 0, c: dx.baseAddress!, ldc: inputFeatures)
                        // dw (out, in) += dy^T (out, rows) * x (rows, in)
                        weight.withGradient { dw in
                            sgemm(transposeA: true, transposeB: false, m: outputFeatures, n: inputFeatures, k: rows, a: dy.baseAddress!, lda: outputFeatures,
                                  b: x.baseAddress!, ldb: inputFeatures, beta: 1, c: dw.baseAddress!, ldc: inputFeatures)
                        }
                    }
                }
            }
        }
        if let bias {
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                bias.withGradient { db in
                    for r in 0..<rows { for o in 0..<outputFeatures { db[o] += dy[r * outputFeatures + o] } }
                }
            }
        }
        return inputGradient
    }
}

/// `torch.nn.Flatten()`: (N, d1, d2, ...) -> (N, d1*d2*...).
public final class Flatten: Layer {
    public var mode: LayerMode = .training
    private var cachedInputShape: [Int]?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.rank >= 1, "Flatten of a scalar")
        cachedInputShape = mode.cachesForBackward ? input.shape : nil
        return input.reshaped(to: [input.shape[0], input.count / Swift.max(1, input.shape[0])])
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let shape = requireCache(cachedInputShape, "Flatten")
        cachedInputShape = nil
        return outputGradient.reshaped(to: shape)
    }
}
