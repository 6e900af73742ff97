import Foundation
import OperatorErrors

/// `torch.optim.SGD` (dampening 0, no Nesterov): d = g + weightDecay * p;
/// buffer = momentum * buffer + d (the first step sets buffer = d); p -= learningRate * buffer.
/// Parameters that have not received a gradient yet are skipped, as PyTorch skips `grad is None`.
public final class SGD {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    private var momentumBuffers: [Tensor?]

    public init(parameters: [Parameter], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        momentumBuffers = Array(repeating: nil, count: parameters.count)
    }

    public func step() {
        for (index, parameter) in parameters.enumerated() where parameter.hasGradient {
            let gradient = parameter.gradient
            var buffer = momentumBuffers[index]
            let (lr, mu, wd) = (learningRate, momentum, weightDecay)
            let firstStep = buffer == nil
            if mu != 0 && firstStep { buffer = Tensor(zeros: gradient.shape) }
            parameter.value.scalars.withUnsafeMutableBufferPointer { p in
                gradient.scalars.withUnsafeBufferPointer { g in
                    if mu == 0 {
                        for i in p.indices { p[i] -= lr * (g[i] + wd * p[i]) }
                        return
                    }
                    buffer!.scalars.withUnsafeMutableBufferPointer { b in
                        for i in p.indices {
                            let d = g[i] + wd * p[i]
                            b[i] = firstStep ? d : mu * b[i] + d
                            p[i] -= lr * b[i]
                        }
                    }
                }
            }
            momentumBuffers[index] = buffer
        }
    }

    public func zeroGradients() {
        for parameter in parameters { parameter.zeroGradient() }
    }

    /// Momentum buffers by parameter index, `momentum_buffer.<index>` (PyTorch's state key), for
    /// checkpoints; parameters not stepped yet have none.
    public func exportState() -> [String: Tensor] {
        var state: [String: Tensor] = [:]
        for (index, buffer) in momentumBuffers.enumerated() { if let buffer { state["momentum_buffer.\(index)"] = buffer } }
        return state
    }

    /// Restores `exportState()`'s tensors so the next step continues exactly; indices absent from
    /// `state` start afresh. Nothing changes on error.
    public func importState(_ state: [String: Tensor], source: String) throws {
        var buffers: [Tensor?] = Array(repeating: nil, count: parameters.count)
        for (index, parameter) in parameters.enumerated() {
            guard let buffer = state["momentum_buffer.\(index)"] else { continue }
            guard buffer.shape == parameter.value.shape else {
                throw OperatorError.shapeMismatch(name: "momentum_buffer.\(index)", expected: parameter.value.shape, found: buffer.shape, source: source)
            }
            buffers[index] = buffer
        }
        let known = Set(parameters.indices.map { "momentum_buffer.\($0)" })
        let unexpected = state.keys.filter { !known.contains($0) }.sorted()
        if !unexpected.isEmpty { throw OperatorError.unexpectedTensors(names: unexpected, source: source) }
        momentumBuffers = buffers
    }
}

/// `torch.optim.Adam` (amsgrad off) with L2 weight decay added to the gradient (not AdamW):
/// g' = g + weightDecay * p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
/// p -= (learningRate / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + epsilon).
public final class Adam {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let betas: (Float, Float)
    public let epsilon: Float
    public let weightDecay: Float
    private var firstMoments: [Tensor]
    private var secondMoments: [Tensor]
    private var steps: [Int]

    public init(parameters: [Parameter], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        firstMoments = parameters.map { Tensor(zeros: $0.value.shape) }
        secondMoments = firstMoments
        steps = Array(repeating: 0, count: parameters.count)
    }

    public func step() {
        let (beta1, beta2) = betas
        for (index, parameter) in parameters.enumerated() where parameter.hasGradient {
            steps[index] += 1
            let t = Float(steps[index])
            let stepSize = learningRate / (1 - powf(beta1, t))
            let correction2 = (1 - powf(beta2, t)).squareRoot()
            let (wd, eps) = (weightDecay, epsilon)
            let gradient = parameter.gradient
            parameter.value.scalars.withUnsafeMutableBufferPointer { p in
                gradient.scalars.withUnsafeBufferPointer { g in
                    firstMoments[index].scalars.withUnsafeMutableBufferPointer { m in
                        secondMoments[index].scalars.withUnsafeMutableBufferPointer { v in
                            for i in p.indices {
                                let d = g[i] + wd * p[i]
                                m[i] = beta1 * m[i] + (1 - beta1) * d
                                v[i] = beta2 * v[i] + (1 - beta2) * d * d
                                p[i] -= stepSize * m[i] / (v[i].squareRoot() / correction2 + eps)
                            }
                        }
                    }
                }
            }
        }
    }

    public func zeroGradients() {
        for parameter in parameters { parameter.zeroGradient() }
    }

    /// Moments and step counts by parameter index, `exp_avg.<index>`, `exp_avg_sq.<index>` and
    /// `step.<index>` (shape [1]; exact up to 2^24 steps), as PyTorch names them, for checkpoints.
    public func exportState() -> [String: Tensor] {
        var state: [String: Tensor] = [:]
        for index in parameters.indices {
            state["exp_avg.\(index)"] = firstMoments[index]
            state["exp_avg_sq.\(index)"] = secondMoments[index]
            state["step.\(index)"] = Tensor(shape: [1], scalars: [Float(steps[index])])
        }
        return state
    }

    /// Restores `exportState()`'s tensors (all of them) so the next step continues exactly.
    /// Nothing changes on error.
    public func importState(_ state: [String: Tensor], source: String) throws {
        var first = firstMoments, second = secondMoments, counts = steps
        for (index, parameter) in parameters.enumerated() {
            for (name, shape) in [("exp_avg.\(index)", parameter.value.shape), ("exp_avg_sq.\(index)", parameter.value.shape), ("step.\(index)", [1])] {
                guard let tensor = state[name] else { throw OperatorError.missingTensor(name: name, source: source) }
                guard tensor.shape == shape else { throw OperatorError.shapeMismatch(name: name, expected: shape, found: tensor.shape, source: source) }
            }
            first[index] = state["exp_avg.\(index)"]!
            second[index] = state["exp_avg_sq.\(index)"]!
            counts[index] = Int(state["step.\(index)"]!.scalars[0])
        }
        if state.count != 3 * parameters.count {
            let known = Set(parameters.indices.flatMap { ["exp_avg.\($0)", "exp_avg_sq.\($0)", "step.\($0)"] })
            throw OperatorError.unexpectedTensors(names: state.keys.filter { !known.contains($0) }.sorted(), source: source)
        }
        firstMoments = first
        secondMoments = second
        steps = counts
    }
}
