import TensorEngine

/// The two designs of S2 (method.md, "S2, the reconstruction student").
public enum ReconstructionVariant: String, Codable, CaseIterable, Sendable {
    /// RSTPM-1: a residual 3x3 block at stride 32, then per stage a 3x3 stride-2 transposed
    /// convolution (+BN+ReLU) followed by residual blocks of 3x3 convolutions.
    case paper
    /// RSTPM-2 [default]: per stage a 2x2 stride-2 transposed convolution (+BN+ReLU) plus a
    /// 2x2 stride-2 transposed-convolution skip, summed, then a 3x3 conv + BN.
    case reverseDistillation = "reverse-distillation"
}

/// How an attention site rescales the feature S2 passes on (method.md, Eq. 7 and Eq. 8).
public enum AttentionMode: String, Codable, CaseIterable, Sendable {
    /// `g(x) = M * x` (Eq. 7).
    case multiply = "*"
    /// `g(x) = (1 + M) * x` (Eq. 8).
    case residual = "+"
    /// No attention at this site.
    case none = "-"

    /// Parses a per-site string such as "*+" (site 1 Eq. 7, site 2 Eq. 8); "-" leaves a site out.
    public static func modes(parsing text: String) -> [AttentionMode]? {
        let modes = text.map { AttentionMode(rawValue: String($0)) }
        guard modes.count == 2, modes.allSatisfy({ $0 != nil }) else { return nil }
        return modes.map { $0! }
    }
}

/// A ResNet basic block without its final ReLU: `bn2(conv2(relu(bn1(conv1(x))))) + x`.
/// Names as torchvision: conv1, bn1, conv2, bn2 (conv1, conv2 with biases once folded).
final class ResidualBlock: Layer, InferenceFoldable {
    var mode: LayerMode = .training
    private(set) var conv1: Conv2d, bn1: BatchNorm2d?, conv2: Conv2d, bn2: BatchNorm2d?
    let relu = ReLU()

    init(channels: Int, generator: SeededGenerator) {
        conv1 = Conv2d(inputChannels: channels, outputChannels: channels, kernelSize: 3, padding: 1, bias: false, generator: generator)
        bn1 = BatchNorm2d(channels: channels)
        conv2 = Conv2d(inputChannels: channels, outputChannels: channels, kernelSize: 3, padding: 1, bias: false, generator: generator)
        bn2 = BatchNorm2d(channels: channels)
    }

    var children: [(name: String, layer: any Layer)] {
        var list: [(name: String, layer: any Layer)] = [("conv1", conv1)]
        if let bn1 { list.append(("bn1", bn1)) }
        list.append(("conv2", conv2))
        if let bn2 { list.append(("bn2", bn2)) }
        return list
    }

    func forward(_ input: Tensor) -> Tensor {
        normalized(bn2, conv2(normalizedReLU(bn1, relu, conv1(input)))) + input
    }

    func backward(_ outputGradient: Tensor) -> Tensor {
        precondition(bn1 != nil && bn2 != nil, "ResidualBlock.backward after foldBatchNorm()")
        // bn1 applied the ReLU in its pass, and its backward passes the gradient through it.
        let inner = conv1.backward(bn1!.backward(conv2.backward(bn2!.backward(outputGradient))))
        return inner + outputGradient
    }

    func foldBatchNorm() {
        if let bn1 { conv1 = conv1.folding(bn1) }
        if let bn2 { conv2 = conv2.folding(bn2) }
        (bn1, bn2) = (nil, nil)
    }
}

/// `batchNorm(x)`, or x where the BatchNorm was folded away.
@inline(__always)
func normalized(_ batchNorm: BatchNorm2d?, _ x: Tensor) -> Tensor {
    batchNorm.map { $0(x) } ?? x
}

/// `relu(batchNorm(x))` as one pass of the BatchNorm (whose backward then includes the ReLU's),
/// or `relu(x)` where the BatchNorm was folded away.
@inline(__always)
func normalizedReLU(_ batchNorm: BatchNorm2d?, _ relu: ReLU, _ x: Tensor) -> Tensor {
    batchNorm.map { $0.forward(x, activation: .relu) } ?? relu(x)
}

/// The transposed convolution with an inference-mode BatchNorm after it baked in:
/// w[i, o] * scale[o], bias[o] * scale[o] + shift[o].
func folding(_ convolution: ConvTranspose2d, _ batchNorm: BatchNorm2d) -> ConvTranspose2d {
    let (scale, shift) = batchNorm.inferenceScaleAndShift()
    let (C, O, kk) = (convolution.inputChannels, convolution.outputChannels, convolution.kernelSize * convolution.kernelSize)
    precondition(batchNorm.channels == O, "folding BatchNorm2d(\(batchNorm.channels)) into ConvTranspose2d(->\(O))")
    var weight = convolution.weight.value
    for i in 0..<C { for o in 0..<O { for k in 0..<kk { weight.scalars[(i * O + o) * kk + k] *= scale[o] } } }
    let bias = (0..<O).map { (convolution.bias?.value.scalars[$0] ?? 0) * scale[$0] + shift[$0] }
    let folded = ConvTranspose2d(inputChannels: C, outputChannels: O, kernelSize: convolution.kernelSize, stride: convolution.stride,
                                 padding: convolution.padding, outputPadding: convolution.outputPadding, weight: weight,
                                 bias: Tensor(shape: [O], scalars: bias))
    folded.mode = convolution.mode
    return folded
}

/// One upsampling stage of S2: input (N, Cin, H, W) -> matched output (N, Cout, 2H, 2W), taken
/// before the stage's final ReLU (EfficientNet taps can be negative).
final class ReconstructionStage: Layer, InferenceFoldable {
    var mode: LayerMode = .training
    let variant: ReconstructionVariant
    private(set) var upsample: ConvTranspose2d, upsampleBN: BatchNorm2d?
    let upsampleReLU = ReLU()
    // reverse distillation
    let skip: ConvTranspose2d?
    private(set) var conv: Conv2d?, bn: BatchNorm2d?
    // paper
    let blocks: [ResidualBlock], blockReLUs: [ReLU]

    init(variant: ReconstructionVariant, inputChannels: Int, outputChannels: Int, residualBlocks: Int, generator: SeededGenerator) {
        self.variant = variant
        switch variant {
        case .reverseDistillation:
            upsample = ConvTranspose2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 2, stride: 2,
                                       bias: false, generator: generator)
            upsampleBN = BatchNorm2d(channels: outputChannels)
            skip = ConvTranspose2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 2, stride: 2,
                                   bias: false, generator: generator)
            conv = Conv2d(inputChannels: outputChannels, outputChannels: outputChannels, kernelSize: 3, padding: 1, bias: false,
                          generator: generator)
            bn = BatchNorm2d(channels: outputChannels)
            blocks = []
            blockReLUs = []
        case .paper:
            upsample = ConvTranspose2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, stride: 2,
                                       padding: 1, outputPadding: 1, bias: false, generator: generator)
            upsampleBN = BatchNorm2d(channels: outputChannels)
            skip = nil
            conv = nil
            bn = nil
            precondition(residualBlocks >= 1, "the paper variant needs at least one residual block per stage")
            blocks = (0..<residualBlocks).map { _ in ResidualBlock(channels: outputChannels, generator: generator) }
            blockReLUs = (0..<(residualBlocks - 1)).map { _ in ReLU() }
        }
    }

    var children: [(name: String, layer: any Layer)] {
        var list: [(name: String, layer: any Layer)] = [("upsample", upsample)]
        if let upsampleBN { list.append(("upsample_bn", upsampleBN)) }
        if let skip, let conv { list += [("skip", skip), ("conv", conv)] }
        if let bn { list.append(("bn", bn)) }
        for (index, block) in blocks.enumerated() { list.append(("blocks.\(index)", block)) }
        return list
    }

    func forward(_ input: Tensor) -> Tensor {
        if variant == .reverseDistillation, upsampleBN == nil, upsample.mode == .inference {
            // Folded, at inference: the ReLU applied as the upsampling writes, the skip added in place.
            var sum = upsample.inferenceForward(input, activation: .relu)
            sum.add(skip!(input), activation: .none)
            return normalized(bn, conv!(sum))
        }
        let main = normalizedReLU(upsampleBN, upsampleReLU, upsample(input))
        switch variant {
        case .reverseDistillation:
            return normalized(bn, conv!(main + skip!(input)))
        case .paper:
            var x = main
            for (index, block) in blocks.enumerated() {
                x = block(x)
                if index < blockReLUs.count { x = blockReLUs[index](x) }
            }
            return x
        }
    }

    func backward(_ outputGradient: Tensor) -> Tensor {
        precondition(upsampleBN != nil, "ReconstructionStage.backward after foldBatchNorm()")
        switch variant {
        case .reverseDistillation:
            let dsum = conv!.backward(bn!.backward(outputGradient))
            return upsample.backward(upsampleBN!.backward(dsum)) + skip!.backward(dsum)
        case .paper:
            var g = outputGradient
            for index in blocks.indices.reversed() {
                if index < blockReLUs.count { g = blockReLUs[index].backward(g) }
                g = blocks[index].backward(g)
            }
            return upsample.backward(upsampleBN!.backward(g))
        }
    }

    func foldBatchNorm() {
        if let upsampleBN { upsample = folding(upsample, upsampleBN) }
        if let conv, let bn { self.conv = conv.folding(bn) }
        for block in blocks { block.foldBatchNorm() }
        (upsampleBN, bn) = (nil, nil)
    }
}

/// Attention map from a T2 feature: channel-L2-normalise (the cure for attention collapse,
/// method.md pitfalls), 3x3 conv + ReLU, 1x1 conv to one channel, sigmoid -> M (N, 1, H, W).
/// Names: conv1, conv2.
public final class AttentionBranch: Layer {
    public var mode: LayerMode = .training
    let normalize = L2Normalization(), conv1: Conv2d, relu = ReLU(), conv2: Conv2d, sigmoid = Sigmoid()

    init(inputChannels: Int, hiddenChannels: Int, generator: SeededGenerator) {
        conv1 = Conv2d(inputChannels: inputChannels, outputChannels: hiddenChannels, kernelSize: 3, padding: 1, generator: generator)
        conv2 = Conv2d(inputChannels: hiddenChannels, outputChannels: 1, kernelSize: 1, generator: generator)
    }

    public var children: [(name: String, layer: any Layer)] { [("conv1", conv1), ("conv2", conv2)] }

    /// teacher feature (N, C, H, W) -> M (N, 1, H, W)
    public func forward(_ input: Tensor) -> Tensor {
        let normalized = normalize(input)
        let hidden = conv1.mode == .inference ? conv1.inferenceForward(normalized, activation: .relu) : relu(conv1(normalized))
        return sigmoid(conv2(hidden))
    }

    /// Gradient with respect to M; the teacher-feature gradient it returns is discarded by callers.
    public func backward(_ outputGradient: Tensor) -> Tensor {
        normalize.backward(conv1.backward(relu.backward(conv2.backward(sigmoid.backward(outputGradient)))))
    }
}

/// S2: rebuilds T2's features at strides 16, 8, 4 from T1's stride-32 feature, with attention
/// from T2 at two sites (after the stride-16 and the stride-8 stage) applied to the feature that
/// feeds the next stage.
///
/// State names: `stem.*` (paper variant only), `stages.{0,1,2}.*`, `attention.{0,1}.*`.
public final class ReconstructionStudent: Layer, InferenceFoldable {
    public var mode: LayerMode = .training
    public let variant: ReconstructionVariant
    public let attentionModes: [AttentionMode]
    let stem: ResidualBlock?, stemReLU = ReLU()
    let stages: [ReconstructionStage]
    let stageReLUs: [ReLU]
    let attention: [AttentionBranch?]
    private let multiplications: [Multiplication]
    /// Mean of M per site in the last forward (nil where a site has no attention), for logs.
    public private(set) var lastAttentionMeans: [Float?] = [nil, nil]

    /// - inputChannels: T1's stride-32 channels; outputChannels: T2's channels at strides 16, 8, 4;
    ///   attentionChannels: T2's channels at strides 16, 8 (the two attention sources).
    public init(variant: ReconstructionVariant, inputChannels: Int, outputChannels: [Int], attentionModes: [AttentionMode],
                attentionHiddenChannels: Int, residualBlocks: Int = 1, generator: SeededGenerator) {
        precondition(outputChannels.count == 3 && attentionModes.count == 2, "S2 has three stages and two attention sites")
        self.variant = variant
        self.attentionModes = attentionModes
        stem = variant == .paper ? ResidualBlock(channels: inputChannels, generator: generator) : nil
        var stages: [ReconstructionStage] = []
        var channels = inputChannels
        for output in outputChannels {
            stages.append(ReconstructionStage(variant: variant, inputChannels: channels, outputChannels: output,
                                              residualBlocks: residualBlocks, generator: generator))
            channels = output
        }
        self.stages = stages
        stageReLUs = [ReLU(), ReLU()]
        attention = (0..<2).map { site in
            attentionModes[site] == .none ? nil
                : AttentionBranch(inputChannels: outputChannels[site], hiddenChannels: attentionHiddenChannels, generator: generator)
        }
        multiplications = [Multiplication(), Multiplication()]
    }

    public var children: [(name: String, layer: any Layer)] {
        var list: [(name: String, layer: any Layer)] = []
        if let stem { list.append(("stem", stem)) }
        for (index, stage) in stages.enumerated() { list.append(("stages.\(index)", stage)) }
        for (index, branch) in attention.enumerated() { if let branch { list.append(("attention.\(index)", branch)) } }
        return list
    }

    /// Bakes every BatchNorm's running statistics into the convolution before it (inference only;
    /// the named state no longer matches saved weights afterwards).
    public func foldBatchNorm() {
        stem?.foldBatchNorm()
        for stage in stages { stage.foldBatchNorm() }
    }

    /// Layer conformance: S2 needs the attention sources, use `forward(_:attentionSources:)`.
    public func forward(_ input: Tensor) -> Tensor {
        preconditionFailure("ReconstructionStudent.forward needs attention sources: call forward(_:attentionSources:)")
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        preconditionFailure("ReconstructionStudent.backward needs one gradient per output: call backward(outputGradients:)")
    }

    /// input: T1's stride-32 feature (N, Cin, H/32, W/32); attentionSources: T2's features at
    /// strides 16 and 8. Returns the matched (pre-ReLU) outputs at strides 16, 8, 4.
    public func forward(_ input: Tensor, attentionSources: [Tensor]) -> [Tensor] {
        precondition(attentionSources.count == 2, "S2 takes two attention sources (T2 at strides 16 and 8)")
        var x = input
        if let stem { x = stemReLU(stem(x)) }
        var outputs: [Tensor] = []
        for (index, stage) in stages.enumerated() {
            let output = stage(x)
            outputs.append(output)
            guard index < 2 else { break }
            if mode == .inference, let branch = attention[index] {
                let map = branch(attentionSources[index])
                lastAttentionMeans[index] = map.mean()
                x = Multiplication.attended(output, by: map, residual: attentionModes[index] == .residual)
                continue
            }
            let activation = stageReLUs[index](output)
            if let branch = attention[index] {
                let map = branch(attentionSources[index])
                lastAttentionMeans[index] = map.mean()
                let scaled = multiplications[index].forward(activation, map)
                x = attentionModes[index] == .multiply ? scaled : activation + scaled
            } else {
                x = activation
            }
        }
        return outputs
    }

    /// One gradient per output (strides 16, 8, 4); adds into parameter gradients (attention
    /// included) and returns the gradient with respect to the T1 input.
    @discardableResult
    public func backward(outputGradients: [Tensor]) -> Tensor {
        precondition(outputGradients.count == 3, "S2.backward takes three output gradients")
        var inputGradient: Tensor?
        for index in stages.indices.reversed() {
            var g = outputGradients[index]
            if let next = inputGradient {
                // `next` is the gradient of the feature that fed stage index+1.
                var dactivation = next
                if let branch = attention[index] {
                    let (dlhs, dmap) = multiplications[index].backward(next)
                    dactivation = attentionModes[index] == .multiply ? dlhs : next + dlhs
                    _ = branch.backward(dmap)
                }
                g += stageReLUs[index].backward(dactivation)
            }
            inputGradient = stages[index].backward(g)
        }
        var dx = inputGradient!
        if let stem { dx = stem.backward(stemReLU.backward(dx)) }
        return dx
    }
}
