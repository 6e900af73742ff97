import Foundation
import SeededRandom

/// The seeded generator (SeededRandom's SplitMix64) as a class, for initialisation and data
/// augmentation; the same seed gives the same sequence on every platform.
///
/// A class, so one generator can be handed down a model's constructors and shared.
public final class SeededGenerator: RandomNumberGenerator {
    private var splitMix: SplitMix64

    public init(seed: UInt64) {
        splitMix = SplitMix64(state: seed)
    }

    public func next() -> UInt64 { splitMix.next() }

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
