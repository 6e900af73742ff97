import SeededRandom

/// Tests and corpora draw from rstpm's one seeded generator; a fixed seed makes every generated
/// case reproducible from its index.
public typealias SplitMix64 = SeededRandom.SplitMix64

extension SplitMix64 {
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }

    public mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
