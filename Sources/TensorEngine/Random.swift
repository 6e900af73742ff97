import Foundation

/// A small deterministic random number generator (SplitMix64) for initialisation and data
/// augmentation; the same seed gives the same sequence on every platform.
///
/// A class, so one generator can be handed down a model's constructors and shared.
public final class SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits.
    public func nextUniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [lowerBound, upperBound).
    public func nextUniform(in range: Range<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextUniform()
    }

    /// Standard normal sample (Box-Muller).
    public func nextNormal() -> Float {
        let u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2.0 * log(max(u1, 1e-300))).squareRoot() * cos(2.0 * Double.pi * u2))
    }

    /// A tensor of uniform samples in [-bound, bound).
    public func uniformTensor(shape: [Int], bound: Float) -> Tensor {
        let count = shape.reduce(1, *)
        var scalars = [Float](repeating: 0, count: count)
        for i in 0..<count { scalars[i] = nextUniform(in: -bound..<bound) }
        return Tensor(shape: shape, scalars: scalars)
    }
}
