import Foundation

/// `torch.nn.ReLU`: max(x, 0). Backward passes the gradient where the output is positive.
public final class ReLU: Layer {
    public var mode: LayerMode = .training
    private var cachedOutput: Tensor?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        let output = input.mapped { $0 > 0 ? $0 : 0 }
        cachedOutput = mode.cachesForBackward ? output : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let output = requireCache(cachedOutput, "ReLU")
        cachedOutput = nil
        return outputGradient.zipped(with: output) { g, y in y > 0 ? g : 0 }
    }
}

/// `torch.nn.ReLU6`: min(max(x, 0), 6). Backward passes the gradient where 0 < x < 6
/// (hardtanh's rule: none at the kinks).
public final class ReLU6: Layer {
    public var mode: LayerMode = .training
    private var cachedInput: Tensor?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        cachedInput = mode.cachesForBackward ? input : nil
        return input.mapped { Swift.min(Swift.max($0, 0), 6) }
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = requireCache(cachedInput, "ReLU6")
        cachedInput = nil
        return outputGradient.zipped(with: input) { g, x in x > 0 && x < 6 ? g : 0 }
    }
}

/// `torch.nn.Sigmoid`: 1 / (1 + exp(-x)). Backward: dy * y * (1 - y).
public final class Sigmoid: Layer {
    public var mode: LayerMode = .training
    private var cachedOutput: Tensor?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        let output = input.mapped { 1 / (1 + expf(-$0)) }
        cachedOutput = mode.cachesForBackward ? output : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let output = requireCache(cachedOutput, "Sigmoid")
        cachedOutput = nil
        return outputGradient.zipped(with: output) { g, y in g * y * (1 - y) }
    }
}
