import Foundation

/// Everything that defines an RSTPM model and how it is trained (method.md); stored in the
/// bundle's manifest. Defaults are the specification's choices sized for the overnight window
/// of a 2-core machine: 24 student + 12 discriminator epochs at 256x256 train a category of
/// 200-400 images in under 20 minutes (docs/accuracy.md has the measured times and what each
/// default choice bought). `RSTPMConfiguration.paperSchedule()` switches to the reproduction's
/// 100 + 300 epochs, batch 32, D lr 1e-4.
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
    public var studentEpochs = 24
    public var discriminatorEpochs = 12
    public var batchSize = 8
    public var studentLearningRate: Float = 0.4
    public var studentMomentum: Float = 0.9
    public var studentWeightDecay: Float = 1e-4
    /// 1e-3: at the paper's 1e-4 a few epochs teach D almost nothing about where an anomaly is
    /// (bottle D-only pixel AUROC 0.65 at 1e-4, 0.98 at 1e-3, 6 epochs); 1e-4 assumes 300 epochs.
    public var discriminatorLearningRate: Float = 1e-3
    public var discriminatorWeightDecay: Float = 1e-4
    public var validationFraction: Float = 0.1
    public var thresholdRule = ThresholdRule.maxTimesMargin
    public var thresholdMargin: Float = 1.1
    public var thresholdQuantile: Float = 0.99
    /// Folder of anomaly-source images (PNG/JPEG); nil = GIMP patterns if installed + procedural.
    public var textureDirectory: String?
    /// Denoising students [default]: in phase 1 the students see pseudo-anomalous images (Eq. 2) and
    /// match the teachers' features of the clean image, so at a defect they answer with what the
    /// normal product looks like instead of copying the teacher (as DeSTSeg's denoising student).
    /// false: the paper's students, which see only normal images.
    public var denoisingStudents = true
    /// Half of the denoising students' pseudo-anomalies take their source from the product's own
    /// training images (`ProductImageSource`), half from the textures [default]; false: textures
    /// only. D always trains on textures: a flipped image of a symmetric product (a bottle seen
    /// from above) is no visible anomaly, and D learns nothing from labels it cannot see (bottle
    /// D-only pixel AUROC fell from 0.966 to 0.623 when D trained on them too).
    public var productImageAnomalies = true
    /// Standard deviation in pixels of the Gaussian that smooths the S-T map before Eq. 1, as
    /// STPM's code smooths its map (sigma 4): the stride-4 levels are noisy pixel to pixel.
    /// 0: no smoothing.
    public var studentTeacherSmoothing: Float = 4

    public init() {}

    /// Reads a stored configuration; a field it lacks (a manifest written before the field
    /// existed) takes the value that reproduces how that model was trained and scores.
    public init(from decoder: any Decoder) throws {
        let stored = try decoder.container(keyedBy: CodingKeys.self)
        func field<T: Decodable>(_ key: CodingKeys, _ absent: T) throws -> T { try stored.decodeIfPresent(T.self, forKey: key) ?? absent }
        teacher1 = try field(.teacher1, teacher1)
        teacher2 = try field(.teacher2, teacher2)
        inputWidth = try field(.inputWidth, inputWidth)
        inputHeight = try field(.inputHeight, inputHeight)
        studentVariant = try field(.studentVariant, studentVariant)
        paperResidualBlocks = try field(.paperResidualBlocks, paperResidualBlocks)
        attention = try field(.attention, attention)
        attentionHiddenChannels = try field(.attentionHiddenChannels, attentionHiddenChannels)
        discriminatorBaseWidth = try field(.discriminatorBaseWidth, discriminatorBaseWidth)
        discriminatorLevels = try field(.discriminatorLevels, discriminatorLevels)
        discriminatorDownscale = try field(.discriminatorDownscale, discriminatorDownscale)
        scoreRule = try field(.scoreRule, scoreRule)
        seed = try field(.seed, seed)
        lossMode = try field(.lossMode, lossMode)
        studentEpochs = try field(.studentEpochs, studentEpochs)
        discriminatorEpochs = try field(.discriminatorEpochs, discriminatorEpochs)
        batchSize = try field(.batchSize, batchSize)
        studentLearningRate = try field(.studentLearningRate, studentLearningRate)
        studentMomentum = try field(.studentMomentum, studentMomentum)
        studentWeightDecay = try field(.studentWeightDecay, studentWeightDecay)
        discriminatorLearningRate = try field(.discriminatorLearningRate, discriminatorLearningRate)
        discriminatorWeightDecay = try field(.discriminatorWeightDecay, discriminatorWeightDecay)
        validationFraction = try field(.validationFraction, validationFraction)
        thresholdRule = try field(.thresholdRule, thresholdRule)
        thresholdMargin = try field(.thresholdMargin, thresholdMargin)
        thresholdQuantile = try field(.thresholdQuantile, thresholdQuantile)
        textureDirectory = try field(.textureDirectory, textureDirectory)
        denoisingStudents = try field(.denoisingStudents, false)
        productImageAnomalies = try field(.productImageAnomalies, false)
        studentTeacherSmoothing = try field(.studentTeacherSmoothing, 0)
    }

    /// The reproduction's schedule: 100 student epochs, 300 discriminator epochs, batch 32.
    public static func paperSchedule() -> RSTPMConfiguration {
        var configuration = RSTPMConfiguration()
        configuration.applyPaperSchedule()
        return configuration
    }

    /// Three times the default epochs (72 + 36): the hour a category of 200-400 images may take
    /// on 2 cores when the overnight window allows it.
    public mutating func applyLongSchedule() {
        studentEpochs = 72
        discriminatorEpochs = 36
    }

    public mutating func applyPaperSchedule() {
        studentEpochs = 100
        discriminatorEpochs = 300
        batchSize = 32
        discriminatorLearningRate = 1e-4
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
        if !(studentTeacherSmoothing >= 0 && studentTeacherSmoothing <= 32) { list.append("studentTeacherSmoothing \(studentTeacherSmoothing) must be in 0...32 pixels") }
        return list
    }
}
