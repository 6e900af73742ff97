/// SplitMix64 (Steele, Lea, Flood 2014): the one seeded generator of rstpm. Initialisation,
/// augmentation, pseudo-anomaly textures, the demo products, fuzzing and test corpora all draw
/// from it, so the same seed gives the same sequence on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// The output function alone: `SplitMix64(state: s).next() == mix(s &+ 0x9E37_79B9_7F4A_7C15)`.
    /// For stateless draws keyed by an index.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
