/// One training sample for the discriminator: the (possibly) altered image and its ground truth.
public struct PseudoAnomalySample: Sendable {
    /// I_a of Eq. 2, or the input unchanged for a normal sample.
    public var image: PlanarImage
    /// M, (height, width), exactly 0 or 1.
    public var mask: [Float]
    /// Whether any mask pixel is 1 (a drawn anomaly can still come out empty).
    public var hasAnomaly: Bool
    /// beta of Eq. 2 (0 for a normal sample).
    public var opacity: Float
    /// The texture index used and the augmentations applied to it, for logs (nil / empty when normal).
    public var sourceIndex: Int?
    public var augmentations: [TextureAugmentation]
}

/// DRAEM-style pseudo-anomalies (method.md, "Pseudo-anomalies (Eq. 2)"):
/// `I_a = (1 - M) * I + (1 - beta) * (M * I) + beta * (M * A)`.
///
/// Per sample, in this order from the one generator: normal or not (normal with probability
/// `normalProbability`; a normal sample draws nothing else), the texture index, the augmentations
/// (3 distinct kinds in random order), the Perlin mask, beta uniform in `opacityRange`.
/// Differences from DRAEM's loader: the normal/anomalous draw comes first so normal samples cost
/// nothing, and the random rotation DRAEM gives 30% of the normal images themselves is left to
/// the caller's data augmentation. Note that DRAEM's code weights the texture by 1 - beta, not
/// beta as its paper's (and method.md's) Eq. 2 does, so its textures show with opacity 0.2...1;
/// set `opacityRange = 0.2...1` to train as that code does.
public struct PseudoAnomalyGenerator {
    public var source: any TextureSource
    public var normalProbability: Float = 0.5
    /// beta of Eq. 2 is drawn uniformly from this range.
    public var opacityRange: ClosedRange<Float> = 0...0.8
    public var augmentationCount: Int = 3

    public init(source: any TextureSource) {
        precondition(source.count > 0, "the texture source is empty")
        self.source = source
    }

    public func sample(from image: PlanarImage, using generator: inout some RandomNumberGenerator) throws -> PseudoAnomalySample {
        let width = image.width, height = image.height
        if Float.random(in: 0..<1, using: &generator) < normalProbability {
            return PseudoAnomalySample(image: image, mask: [Float](repeating: 0, count: width * height),
                                       hasAnomaly: false, opacity: 0, sourceIndex: nil, augmentations: [])
        }
        let sourceIndex = Int.random(in: 0..<source.count, using: &generator)
        let texture = try source.texture(at: sourceIndex, width: width, height: height)
        let augmentations = TextureAugmentation.randomSequence(count: augmentationCount, using: &generator)
        var bytes = texture.bytes
        for augmentation in augmentations {
            augmentation.apply(toPlanarBytes: &bytes, width: width, height: height)
        }
        var anomalySource = PlanarImage(width: width, height: height, bytes: bytes)
        // A colour patch on a grey product is a defect no camera of that line can show, and teaches
        // nothing about the grey defects it will meet: grey products get grey anomalies.
        if Self.isGrey(image) { anomalySource = Self.grey(anomalySource) }
        let mask = PerlinNoise.mask(width: width, height: height, using: &generator)
        let opacity = Float.random(in: opacityRange, using: &generator)
        let composed = Self.composite(image: image, source: anomalySource, mask: mask, opacity: opacity)
        return PseudoAnomalySample(image: composed, mask: mask, hasAnomaly: mask.contains(1), opacity: opacity,
                                   sourceIndex: sourceIndex, augmentations: augmentations)
    }

    /// Whether all three planes are equal (a grey image replicated to RGB).
    public static func isGrey(_ image: PlanarImage) -> Bool {
        let plane = image.width * image.height
        return image.values.withUnsafeBufferPointer { v in
            (0..<plane).allSatisfy { v[$0] == v[plane + $0] && v[$0] == v[2 * plane + $0] }
        }
    }

    /// ITU-R BT.601 luma in all three planes.
    static func grey(_ image: PlanarImage) -> PlanarImage {
        let plane = image.width * image.height
        var out = image
        for p in 0..<plane {
            let luma = 0.299 * image.values[p] + 0.587 * image.values[plane + p] + 0.114 * image.values[2 * plane + p]
            for c in 0..<3 { out.values[c * plane + p] = luma }
        }
        return out
    }

    /// Eq. 2 for a binary mask: outside the mask the input values are copied bit for bit, inside
    /// they become `(1 - opacity) * I + opacity * A`.
    public static func composite(image: PlanarImage, source: PlanarImage, mask: [Float], opacity: Float) -> PlanarImage {
        precondition(image.width == source.width && image.height == source.height,
                     "image \(image.width)x\(image.height) and source \(source.width)x\(source.height) differ in size")
        let plane = image.width * image.height
        precondition(mask.count == plane, "mask has \(mask.count) values, expected \(plane)")
        var out = image
        out.values.withUnsafeMutableBufferPointer { result in
            source.values.withUnsafeBufferPointer { texture in
                for p in 0..<plane where mask[p] != 0 {
                    for c in 0..<3 {
                        let i = c * plane + p
                        result[i] = (1 - opacity) * result[i] + opacity * texture[i]
                    }
                }
            }
        }
        return out
    }
}
