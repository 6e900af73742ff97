import TensorEngine

/// A CNN with feature taps at strides 4, 8, 16, 32: what RSTPM needs of a teacher (T1, T2) and
/// of the student S1. `Backbones.Backbone` conforms (BackboneConformance.swift); tests use small
/// convolution stacks.
public protocol FeatureExtractor: Layer {
    /// Channels of the taps at strides 4, 8, 16, 32.
    var tapChannels: [Int] { get }
    /// Runs the network up to the deepest requested tap and returns taps `0..<tapCount`.
    func features(_ input: Tensor, upTo tapCount: Int) -> [Tensor]
    /// `features` in `.inference`, safe to call from several threads at once (on different
    /// inputs): it touches no state of the extractor.
    func inferenceFeatures(_ input: Tensor, upTo tapCount: Int) -> [Tensor]
    /// Backward after a caching forward: one gradient per returned tap (nil = zero); adds into
    /// parameter gradients and returns the input gradient.
    func backward(tapGradients: [Tensor?]) -> Tensor
}

/// A network that can fold its BatchNorms into the preceding convolutions once training is over
/// (running statistics); its named state no longer matches saved weights afterwards.
public protocol InferenceFoldable: AnyObject {
    func foldBatchNorm()
}
