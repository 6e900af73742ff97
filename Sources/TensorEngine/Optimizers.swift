import Foundation

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
}
