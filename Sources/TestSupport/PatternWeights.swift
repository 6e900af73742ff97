import SeededRandom

/// Deterministic "pattern" values, bit for bit as `scripts/fixtures/pattern.py`, so parity
/// fixtures of large networks need not store their weights.
public enum PatternWeights {
    static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return hash
    }

    /// Uniform values in [0, 1) with 24 bits, from splitmix64 of (hash(name) + index).
    public static func uniform(name: String, count: Int) -> [Double] {
        let base = fnv1a64(name)
        return (0..<count).map { index in
            let z = SplitMix64.mix(base &+ UInt64(index) &+ 0x9E37_79B9_7F4A_7C15)
            return Double(z >> 40) / Double(1 << 24)
        }
    }

    public static func values(name: String, count: Int, scale: Double, center: Double = 0) -> [Float] {
        uniform(name: name, count: count).map { Float((2 * $0 - 1) * scale + center) }
    }

    /// The value rule of `pattern.fill_state_dict` for a torchvision-style parameter or buffer.
    public static func stateDictValues(name: String, shape: [Int]) -> [Float] {
        let count = shape.reduce(1, *)
        if name.hasSuffix("running_var") { return values(name: name, count: count, scale: 0.5, center: 1) }
        if name.hasSuffix("running_mean") || name.hasSuffix("bias") { return values(name: name, count: count, scale: 0.1) }
        if shape.count == 1 { return values(name: name, count: count, scale: 0.2, center: 1) }
        let fanIn = shape.dropFirst().reduce(1, *)
        return values(name: name, count: count, scale: 1 / Double(fanIn).squareRoot())
    }
}
