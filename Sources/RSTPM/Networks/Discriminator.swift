import TensorEngine

/// D, the discriminative U-Net (method.md, "The discriminative network D").
///
/// Encoder level i (width base * 2^i): conv3x3-BN-ReLU x2, max-pooled 2x2 before the next
/// level; decoder: bilinear x2 upsampling (align_corners false), concatenation with the encoder
/// feature of the same level, conv3x3-BN-ReLU x2; a 1x1 conv to one channel and a sigmoid.
/// Input (N, 3, H, W) with H and W divisible by 2^(levels-1). State names: `encoder.{i}.{0..5}`,
/// `decoder.{i}.{0..5}` (as nn.Sequential(conv, bn, relu, conv, bn, relu)), `head`.
public final class Discriminator: Layer, InferenceFoldable {
    public var mode: LayerMode = .training
    public let levels: Int, baseWidth: Int
    private(set) var encoder: [Sequential], decoder: [Sequential]
    let pools: [MaxPool2d], concatenations: [ChannelConcatenation]
    let head: Conv2d, sigmoid = Sigmoid()
    private var upsamplers: [BilinearResize] = []

    public init(inputChannels: Int = 3, baseWidth: Int = 32, levels: Int = 4, generator: SeededGenerator) {
        precondition(levels >= 2 && baseWidth >= 1, "Discriminator needs at least 2 levels")
        self.levels = levels
        self.baseWidth = baseWidth
        func block(_ input: Int, _ output: Int) -> Sequential {
            Sequential([
                Conv2d(inputChannels: input, outputChannels: output, kernelSize: 3, padding: 1, bias: false, generator: generator),
                BatchNorm2d(channels: output), ReLU(),
                Conv2d(inputChannels: output, outputChannels: output, kernelSize: 3, padding: 1, bias: false, generator: generator),
                BatchNorm2d(channels: output), ReLU(),
            ])
        }
        let widths = (0..<levels).map { baseWidth << $0 }
        encoder = widths.indices.map { block($0 == 0 ? inputChannels : widths[$0 - 1], widths[$0]) }
        pools = (1..<levels).map { _ in MaxPool2d(kernelSize: 2) }
        // decoder[i] produces level i from level i+1 (upsampled) concatenated with encoder level i
        decoder = (0..<(levels - 1)).map { block(widths[$0 + 1] + widths[$0], widths[$0]) }
        concatenations = (0..<(levels - 1)).map { _ in ChannelConcatenation() }
        head = Conv2d(inputChannels: baseWidth, outputChannels: 1, kernelSize: 1, generator: generator)
    }

    public var children: [(name: String, layer: any Layer)] {
        var list: [(name: String, layer: any Layer)] = []
        for (index, level) in encoder.enumerated() { list.append(("encoder.\(index)", level)) }
        for (index, level) in decoder.enumerated() { list.append(("decoder.\(index)", level)) }
        list.append(("head", head))
        return list
    }

    /// Bakes every BatchNorm's running statistics into the convolution before it: blocks become
    /// conv(+bias)-ReLU x2 (inference only; the named state no longer matches saved weights).
    public func foldBatchNorm() {
        encoder = encoder.map(Self.folded)
        decoder = decoder.map(Self.folded)
    }

    private static func folded(_ block: Sequential) -> Sequential {
        var layers: [any Layer] = []
        for layer in block.layers {
            if let batchNorm = layer as? BatchNorm2d, let convolution = layers.last as? Conv2d {
                layers[layers.count - 1] = convolution.folding(batchNorm)
            } else {
                layers.append(layer)
            }
        }
        let result = Sequential(layers)
        result.setMode(block.mode)
        return result
    }

    /// input (N, 3, H, W) -> probability map (N, 1, H, W)
    public func forward(_ input: Tensor) -> Tensor {
        let factor = 1 << (levels - 1)
        precondition(input.height % factor == 0 && input.width % factor == 0,
                     "Discriminator input \(input.height)x\(input.width) must be divisible by \(factor)")
        for concatenation in concatenations { concatenation.mode = mode }
        var skips: [Tensor] = []
        var x = input
        for index in 0..<levels {
            if index > 0 {
                pools[index - 1].mode = mode
                let pooled = x
                x = LayerProfile.measure("D max-pool \(pooled.shape[1]) channels at \(pooled.height)x\(pooled.width)") { pools[index - 1](pooled) }
            }
            x = run(encoder[index], x)
            skips.append(x)
        }
        var ups: [BilinearResize] = Array(repeating: BilinearResize(outputHeight: 1, outputWidth: 1), count: levels - 1)
        for index in stride(from: levels - 2, through: 0, by: -1) {
            let skip = skips[index]
            let up = BilinearResize(outputHeight: skip.height, outputWidth: skip.width)
            up.mode = mode
            ups[index] = up
            let low = x
            let joined = LayerProfile.measure("D upsample + concatenation to \(skip.shape[1] + low.shape[1]) channels at \(skip.height)x\(skip.width)") {
                mode == .inference ? up.forward(low, concatenatingWith: skip) : concatenations[index].forward([up(low), skip])
            }
            x = run(decoder[index], joined)
        }
        upsamplers = mode.cachesForBackward ? ups : []
        return sigmoid(head(x))
    }

    /// A block's forward; in `.inference` each convolution takes the ReLU after it into its
    /// own pass over the output (`Conv2d.inferenceForward`).
    private func run(_ block: Sequential, _ input: Tensor) -> Tensor {
        guard mode == .inference, !block.layers.contains(where: { $0 is BatchNorm2d }) else { return block(input) }
        var x = input
        var index = 0
        let layers = block.layers
        while index < layers.count {
            if let convolution = layers[index] as? Conv2d, convolution.mode == .inference, index + 1 < layers.count, layers[index + 1] is ReLU {
                x = convolution.inferenceForward(x, activation: .relu)
                index += 2
            } else {
                x = layers[index].forward(x)
                index += 1
            }
        }
        return x
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        precondition(upsamplers.count == levels - 1, "Discriminator.backward without a cached forward")
        var g = head.backward(sigmoid.backward(outputGradient))
        var skipGradients: [Tensor?] = Array(repeating: nil, count: levels)
        for index in 0..<(levels - 1) {
            let parts = concatenations[index].backward(decoder[index].backward(g))
            skipGradients[index] = parts[1]
            g = upsamplers[index].backward(parts[0])
        }
        for index in stride(from: levels - 1, through: 0, by: -1) {
            if let skip = skipGradients[index] { g += skip }
            g = encoder[index].backward(g)
            if index > 0 { g = pools[index - 1].backward(g) }
        }
        upsamplers = []
        return g
    }
}
