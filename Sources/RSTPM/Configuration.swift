import Foundation

/// Everything that defines an RSTPM model and how it is trained (method.md); stored in the
/// bundle's manifest. Defaults are the specification's defaults sized for a 2-core machine:
/// on MVTec AD bottle (188 training + 21 validation images, 256x256, Lite0/Lite2 teachers) one
/// student epoch took about 60 s and one discriminator epoch about 50 s on 2 idle cores, so
/// 12 + 6 epochs train in about 20 minutes (two to three times that on a machine busy with
/// other work, still within the hour).
/// `RSTPMConfiguration.paperSchedule()` switches to the reproduction's 100 + 300 epochs, batch 32.
/// With plain SGD the split-loss mode gives the same updates as all-loss (S1 and S2 share no
/// parameters); it is kept for the paper's ablation and for per-pair learning rates later.
public struct RSTPMConfiguration: Codable, Equatable, Sendable {
    public enum LossMode: String, Codable, Sendable { case all, split }
    public enum ScoreRule: String, Codable, Sendable {
        /// Maximum of the final map [default].
        case max
        /// Maximum after a 21x21 mean filter (DRAEM).
        case meanFilter21 = "mean-filter-21"
    }
    public enum ThresholdRule: String, Codable, Sendable {
        /// Largest validation-normal score times `thresholdMargin` [default, margin 1.1].
        case maxTimesMargin = "max-times-margin"
        /// The `thresholdQuantile` quantile of the validation-normal scores.
        case quantile
    }

    // Networks
    public var teacher1 = "efficientnet-lite0"
    public var teacher2 = "efficientnet-lite2"
    public var inputWidth = 256
    public var inputHeight = 256
    public var studentVariant = ReconstructionVariant.reverseDistillation
    /// Residual blocks per stage of the paper variant.
    public var paperResidualBlocks = 1
    /// Per attention site: "*" Eq. 7, "+" Eq. 8, "-" none; default "*+".
    public var attention = "*+"
    public var attentionHiddenChannels = 64
    public var discriminatorBaseWidth = 32
    public var discriminatorLevels = 4
    /// D works at input size / this (4: 64x64 for 256x256 input; 1: full size).
    public var discriminatorDownscale = 4
    public var scoreRule = ScoreRule.max

    // Training
    public var seed: UInt64 = 0
    public var lossMode = LossMode.all
    public var studentEpochs = 12
    public var discriminatorEpochs = 6
    public var batchSize = 8
    public var studentLearningRate: Float = 0.4
    public var studentMomentum: Float = 0.9
    public var studentWeightDecay: Float = 1e-4
    public var discriminatorLearningRate: Float = 1e-4
    public var discriminatorWeightDecay: Float = 1e-4
    public var validationFraction: Float = 0.1
    public var thresholdRule = ThresholdRule.maxTimesMargin
    public var thresholdMargin: Float = 1.1
    public var thresholdQuantile: Float = 0.99
    /// Folder of anomaly-source images (PNG/JPEG); nil = GIMP patterns if installed + procedural.
    public var textureDirectory: String?

    public init() {}

    /// The reproduction's schedule: 100 student epochs, 300 discriminator epochs, batch 32.
    public static func paperSchedule() -> RSTPMConfiguration {
        var configuration = RSTPMConfiguration()
        configuration.applyPaperSchedule()
        return configuration
    }

    public mutating func applyPaperSchedule() {
        studentEpochs = 100
        discriminatorEpochs = 300
        batchSize = 32
    }

    public var attentionModes: [AttentionMode]? { AttentionMode.modes(parsing: attention) }
    public var discriminatorWidth: Int { inputWidth / discriminatorDownscale }
    public var discriminatorHeight: Int { inputHeight / discriminatorDownscale }

    /// Problems that make the configuration unusable, as operator-readable sentences.
    public func problems() -> [String] {
        // Every bound is checked before the field is used in arithmetic (a downscale of 0 divided,
        // 64 levels shifted past Int's width) and caps the memory a manifest can make us allocate.
        var list: [String] = []
        let largestInputSide = 4096  // 4096 x 4096 already needs gigabytes of activations
        let sizes = 32...largestInputSide
        if !sizes.contains(inputWidth) || !sizes.contains(inputHeight) || inputWidth % 32 != 0 || inputHeight % 32 != 0 {
            list.append("inputWidth x inputHeight \(inputWidth)x\(inputHeight) must be multiples of 32 from 32 to \(largestInputSide)")
        }
        if attentionModes == nil { list.append("attention \"\(attention)\" must be two of * + - (e.g. \"*+\")") }
        let downscaleValid = [1, 2, 4].contains(discriminatorDownscale)
        if !downscaleValid { list.append("discriminatorDownscale \(discriminatorDownscale) must be 1, 2 or 4") }
        if !(2...8).contains(discriminatorLevels) {
            list.append("discriminatorLevels \(discriminatorLevels) must be from 2 to 8")
        } else if downscaleValid {
            let factor = discriminatorDownscale * (1 << (discriminatorLevels - 1))
            if inputWidth % factor != 0 || inputHeight % factor != 0 {
                list.append("discriminatorLevels \(discriminatorLevels) needs the input size divisible by \(factor)")
            }
        }
        func requireRange(_ name: String, _ value: Int, _ range: ClosedRange<Int>) {
            if !range.contains(value) { list.append("\(name) \(value) must be from \(range.lowerBound) to \(range.upperBound)") }
        }
        requireRange("paperResidualBlocks", paperResidualBlocks, 1...16)
        requireRange("attentionHiddenChannels", attentionHiddenChannels, 1...1024)
        requireRange("discriminatorBaseWidth", discriminatorBaseWidth, 1...512)
        requireRange("studentEpochs", studentEpochs, 0...100_000)
        requireRange("discriminatorEpochs", discriminatorEpochs, 0...100_000)
        requireRange("batchSize", batchSize, 1...1024)
        for (name, value) in [("studentLearningRate", studentLearningRate), ("studentMomentum", studentMomentum),
                              ("studentWeightDecay", studentWeightDecay), ("discriminatorLearningRate", discriminatorLearningRate),
                              ("discriminatorWeightDecay", discriminatorWeightDecay)]
        where !(value.isFinite && value >= 0) {
            list.append("\(name) \(value) must be finite and >= 0")
        }
        if !(validationFraction > 0 && validationFraction < 1) { list.append("validationFraction \(validationFraction) must be in (0, 1)") }
        if !(thresholdMargin.isFinite && thresholdMargin > 0) { list.append("thresholdMargin \(thresholdMargin) must be finite and > 0") }
        if !(thresholdQuantile > 0 && thresholdQuantile <= 1) { list.append("thresholdQuantile \(thresholdQuantile) must be in (0, 1]") }
        return list
    }
}
