import Foundation

/// Focal loss on a one-channel probability map against a binary mask, with DRAEM's `FocalLoss`
/// semantics (gamma 2, alpha 1, smooth 1e-5, mean over pixels) applied to the two-class
/// probabilities (1 - p, p) that a one-channel sigmoid output p stands for:
///
///     target t = mask > 0.5;  q = (1 - smooth) * P(t) + smooth * P(1 - t) + smooth
///     loss = mean over pixels of  -(1 - q)^gamma * log(q)
///
/// where P(1) = p and P(0) = 1 - p; this equals DRAEM's loss on `cat([1 - p, p], dim=1)`
/// (its one-hot is clamped to [smooth, 1 - smooth] and `smooth` is added to pt before the log).
/// The input is the probability map (apply `Sigmoid` first); backward returns d loss / d p.
/// A mask value above 0.5 counts as anomalous. (DRAEM's `target.long()` would truncate a
/// fractional value, e.g. from resizing, to normal; binarise a resized mask first to choose.)
public final class FocalLoss {
    public var mode: LayerMode = .training
    public let gamma: Float
    public let smooth: Float
    private var cached: (probabilities: Tensor, mask: Tensor)?

    public init(gamma: Float = 2, smooth: Float = 1e-5) {
        self.gamma = gamma
        self.smooth = smooth
    }

    /// probabilities (N, 1, H, W) in [0, 1], mask (N, 1, H, W) of 0/1 -> mean loss
    public func forward(probabilities: Tensor, mask: Tensor) -> Float {
        precondition(probabilities.shape == mask.shape, "FocalLoss: probabilities \(probabilities.shape) vs mask \(mask.shape)")
        precondition(probabilities.count > 0, "FocalLoss of an empty map")
        var sum = 0.0
        for i in 0..<probabilities.count {
            let q = truthProbability(probabilities.scalars[i], isAnomalous: mask.scalars[i] > 0.5)
            sum += Double(-powf(1 - q, gamma) * logf(q))
        }
        cached = mode.cachesForBackward ? (probabilities, mask) : nil
        return Float(sum / Double(probabilities.count))
    }

    /// d loss / d probabilities, scaled by the upstream gradient of the loss.
    public func backward(_ outputGradient: Float = 1) -> Tensor {
        let (probabilities, mask) = requireCache(cached, "FocalLoss")
        cached = nil
        let scale = outputGradient / Float(probabilities.count)
        var gradient = Tensor(zeros: probabilities.shape)
        for i in 0..<probabilities.count {
            let anomalous = mask.scalars[i] > 0.5
            let q = truthProbability(probabilities.scalars[i], isAnomalous: anomalous)
            // d/dq of -(1-q)^g log q = g (1-q)^(g-1) log q - (1-q)^g / q;  dq/dp = +-(1 - 2 smooth)
            let dq = gamma * powf(1 - q, gamma - 1) * logf(q) - powf(1 - q, gamma) / q
            gradient.scalars[i] = scale * dq * (anomalous ? 1 - 2 * smooth : -(1 - 2 * smooth))
        }
        return gradient
    }

    @inline(__always)
    private func truthProbability(_ p: Float, isAnomalous: Bool) -> Float {
        let truth = isAnomalous ? p : 1 - p
        return (1 - smooth) * truth + smooth * (1 - truth) + smooth
    }
}
