import CKernels
import Foundation

/// Applies `kernel` to contiguous chunks of `input`, writing the same positions of a new tensor,
/// on the engine's workers (activations are memory-bound; both cores add bandwidth).
@inline(__always)
func parallelElementwise(_ input: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    var output = Tensor(unspecified: input.shape)
    let chunk = 1 << 14
    input.scalars.withUnsafeBufferPointer { x in
        output.scalars.withUnsafeMutableBufferPointer { y in
            let count = x.count
            parallelRanges(count: (count + chunk - 1) / chunk) { range in
                let start = range.lowerBound * chunk, end = min(count, range.upperBound * chunk)
                kernel(x.baseAddress! + start, y.baseAddress! + start, end - start)
            }
        }
    }
    return output
}

/// As `parallelElementwise` with a second input of the same shape (gradient and cached tensor).
@inline(__always)
func parallelElementwise(_ a: Tensor, _ b: Tensor,
                         _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    precondition(a.shape == b.shape, "elementwise op on \(a.shape) and \(b.shape)")
    var output = Tensor(unspecified: a.shape)
    let chunk = 1 << 14
    a.scalars.withUnsafeBufferPointer { pa in
        b.scalars.withUnsafeBufferPointer { pb in
            output.scalars.withUnsafeMutableBufferPointer { y in
                let count = pa.count
                parallelRanges(count: (count + chunk - 1) / chunk) { range in
                    let start = range.lowerBound * chunk, end = min(count, range.upperBound * chunk)
                    kernel(pa.baseAddress! + start, pb.baseAddress! + start, y.baseAddress! + start, end - start)
                }
            }
        }
    }
    return output
}

/// An activation applied inside another kernel's pass over its output (inference paths:
/// `Conv2d.inferenceForward(_:activation:)`, `Tensor.add(_:activation:)`).
public enum FusedActivation: Sendable {
    case none, relu, relu6

    /// The interval the activation clamps to.
    var bounds: (low: Float, high: Float) {
        switch self {
        case .none: (-.infinity, .infinity)
        case .relu: (0, .infinity)
        case .relu6: (0, 6)
        }
    }

    /// The CKernels code (RSTPM_ACTIVATION_*).
    var kernelCode: Int32 {
        switch self {
        case .none: Int32(RSTPM_ACTIVATION_NONE)
        case .relu: Int32(RSTPM_ACTIVATION_RELU)
        case .relu6: Int32(RSTPM_ACTIVATION_RELU6)
        }
    }
}

/// x[i] = activation(x[i] + value) over `count` floats, eight at a time.
@inline(__always)
func addAndActivate(_ x: UnsafeMutablePointer<Float>, count: Int, adding value: Float, activation: FusedActivation) {
    let shift = SIMD8<Float>(repeating: value)
    let (low, high) = activation.bounds
    let (lowVector, highVector) = (SIMD8<Float>(repeating: low), SIMD8<Float>(repeating: high))
    var i = 0
    while i + 8 <= count {
        let v = load8(x + i) + shift
        store8(v.replacing(with: lowVector, where: v .< lowVector).replacing(with: highVector, where: v .> highVector), x + i)
        i += 8
    }
    while i < count { x[i] = Swift.min(Swift.max(x[i] + value, low), high); i += 1 }
}

/// x[i] = activation(x[i] + y[i]) over `count` floats, eight at a time.
@inline(__always)
func addAndActivate(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int, activation: FusedActivation) {
    let (low, high) = activation.bounds
    let (lowVector, highVector) = (SIMD8<Float>(repeating: low), SIMD8<Float>(repeating: high))
    var i = 0
    while i + 8 <= count {
        let v = load8(x + i) + load8(y + i)
        store8(v.replacing(with: lowVector, where: v .< lowVector).replacing(with: highVector, where: v .> highVector), x + i)
        i += 8
    }
    while i < count { x[i] = Swift.min(Swift.max(x[i] + y[i], low), high); i += 1 }
}

extension Tensor {
    /// self = activation(self + other) in place, on the engine's workers (residual connections
    /// at inference: no new tensor, one pass).
    public mutating func add(_ other: Tensor, activation: FusedActivation) {
        precondition(shape == other.shape, "adding \(other.shape) into \(shape)")
        let chunk = 1 << 14
        scalars.withUnsafeMutableBufferPointer { x in
            other.scalars.withUnsafeBufferPointer { y in
                let count = x.count
                parallelRanges(count: (count + chunk - 1) / chunk) { range in
                    let start = range.lowerBound * chunk, end = Swift.min(count, range.upperBound * chunk)
                    addAndActivate(x.baseAddress! + start, y.baseAddress! + start, count: end - start, activation: activation)
                }
            }
        }
    }
}

/// `torch.nn.ReLU`: max(x, 0). Backward passes the gradient where the output is positive.
public final class ReLU: Layer {
    public var mode: LayerMode = .training
    private var cachedOutput: Tensor?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        let output = parallelElementwise(input) { x, y, n in
            if let c = kernels.c { return c.clamp_forward(x, y, n, .infinity) }
            var i = 0
            while i + 8 <= n {
                let v = load8(x + i)
                store8(v.replacing(with: 0, where: v .<= 0), y + i)
                i += 8
            }
            while i < n { y[i] = x[i] > 0 ? x[i] : 0; i += 1 }
        }
        cachedOutput = mode.cachesForBackward ? output : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let output = requireCache(cachedOutput, "ReLU")
        cachedOutput = nil
        return parallelElementwise(outputGradient, output) { g, y, dx, n in
            if let c = kernels.c { return c.relu_backward(g, y, dx, n) }
            var i = 0
            while i + 8 <= n {
                store8(load8(g + i).replacing(with: 0, where: load8(y + i) .<= 0), dx + i)
                i += 8
            }
            while i < n { dx[i] = y[i] > 0 ? g[i] : 0; i += 1 }
        }
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
        return parallelElementwise(input) { x, y, n in
            if let c = kernels.c { return c.clamp_forward(x, y, n, 6) }
            var i = 0
            while i + 8 <= n {
                let v = load8(x + i)
                store8(v.replacing(with: 0, where: v .< 0).replacing(with: 6, where: v .> 6), y + i)
                i += 8
            }
            while i < n { y[i] = Swift.min(Swift.max(x[i], 0), 6); i += 1 }
        }
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = requireCache(cachedInput, "ReLU6")
        cachedInput = nil
        return parallelElementwise(outputGradient, input) { g, x, dx, n in
            if let c = kernels.c { return c.relu6_backward(g, x, dx, n) }
            var i = 0
            while i + 8 <= n {
                let v = load8(x + i)
                store8(load8(g + i).replacing(with: 0, where: (v .<= 0) .| (v .>= 6)), dx + i)
                i += 8
            }
            while i < n { dx[i] = x[i] > 0 && x[i] < 6 ? g[i] : 0; i += 1 }
        }
    }
}

/// `torch.nn.Sigmoid`: 1 / (1 + exp(-x)). Backward: dy * y * (1 - y).
public final class Sigmoid: Layer {
    public var mode: LayerMode = .training
    private var cachedOutput: Tensor?

    public init() {}

    public func forward(_ input: Tensor) -> Tensor {
        let output = parallelElementwise(input) { x, y, n in
            for i in 0..<n { y[i] = 1 / (1 + expf(-x[i])) }
        }
        cachedOutput = mode.cachesForBackward ? output : nil
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let output = requireCache(cachedOutput, "Sigmoid")
        cachedOutput = nil
        return parallelElementwise(outputGradient, output) { g, y, dx, n in
            for i in 0..<n { dx[i] = g[i] * y[i] * (1 - y[i]) }
        }
    }
}
