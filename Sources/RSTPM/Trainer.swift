// Over 400 lines: both training phases, checkpoints and resume share one optimiser and batch
// state; split, every part would need it passed around.
import BuildInfo
import Checkpoints
import Foundation
import Logging
import OperatorErrors
import TensorEngine

/// Progress of a training run, reported after every step and at the end of every epoch.
public struct TrainingEvent: Sendable {
    public enum Phase: String, Sendable { case students, discriminator }
    public var phase: Phase
    /// 1-based epoch and step within it.
    public var epoch: Int, epochs: Int
    public var step: Int, steps: Int
    /// Loss of this step (students: sum of six level losses; D: focal loss).
    public var loss: Float
    /// Mean of M per attention site in this step (nil where the site has none; students only).
    public var attentionMeans: [Float?]
    /// Set on the epoch's last event.
    public var validationLoss: Float?
    public var elapsedSeconds: Double
    /// Estimated seconds left for the whole run.
    public var remainingSeconds: Double
}

/// Two-phase RSTPM training (method.md): phase 1 trains S1, S2 and the attention branches with
/// SGD on the six level losses; phase 2 trains D with Adam and focal loss on pseudo-anomalies,
/// S-T frozen. Validation images (a seeded split) select the best epoch of each phase and
/// calibrate the threshold. Epoch checkpoints go to `<output>/checkpoints/` (networks and optimiser
/// state, so `resume` continues exactly as if the run had not stopped).
public final class RSTPMTrainer {
    public let configuration: RSTPMConfiguration
    public let networks: RSTPMNetworks
    public let data: TrainingImages
    public let output: URL
    public let textures: any TextureSource
    /// Where the denoising students' pseudo-anomalies come from (D's come from `textures` only).
    private let studentAnomalySources: any TextureSource
    private let logger: Logger
    private let trainingIndices: [Int], validationIndices: [Int]
    private var checkpointDirectory: URL { output.appendingPathComponent("checkpoints") }

    public init(configuration: RSTPMConfiguration, teachers: TeacherSet, data: TrainingImages, output: URL,
                textures: any TextureSource, logger: Logger) throws {
        let problems = configuration.problems()
        guard problems.isEmpty else {
            throw OperatorError(.invalidInput, path: "configuration", problem: problems.joined(separator: "; "), hint: "fix the configuration file or flags")
        }
        guard data.images.count >= 3 else {
            throw OperatorError(.empty, path: data.folder.path, problem: "\(data.images.count) images; training needs at least 3 (2 train + 1 validation)",
                             hint: "add normal images")
        }
        self.configuration = configuration
        self.data = data
        self.output = output
        self.logger = logger
        networks = RSTPMNetworks(configuration: configuration, teachers: teachers)
        var order = Array(data.images.indices)
        var generator = SeededGenerator(seed: configuration.seed &+ 0x5EED_0001)
        order.shuffle(using: &generator)
        let validationCount = min(data.images.count - 2, max(1, Int((Float(data.images.count) * configuration.validationFraction).rounded())))
        validationIndices = Array(order.prefix(validationCount)).sorted()
        trainingIndices = Array(order.dropFirst(validationCount)).sorted()
        self.textures = textures
        studentAnomalySources = configuration.productImageAnomalies
            ? InterleavedTextureSource(textures, ProductImageSource(images: trainingIndices.map { data.images[$0] })) : textures
    }

    // MARK: checkpoints

    private struct Progress: Codable {
        var phase: TrainingEvent.Phase.RawValue
        var completedEpochs: Int
        var bestLoss: Float
        var bestEpoch: Int
        var studentLoss: Float
        var studentBestEpoch: Int
        var elapsedSeconds: Double
        var configuration: RSTPMConfiguration
    }

    /// Optimiser state read from last.safetensors on resume ("<optimiser index>.<key>"), taken by
    /// the phase that continues.
    private var resumedOptimizerState: [String: Tensor] = [:]
    private static let optimizerPrefix = "optimizer."

    /// Writes the networks' state and, for last.safetensors, the optimisers' (one file, so both
    /// are replaced together).
    private func saveState(_ name: String, optimizerStates: [[String: Tensor]] = []) throws {
        try FileManager.default.createDirectory(at: checkpointDirectory, withIntermediateDirectories: true)
        var pairs = networks.namedState().map { ($0.name, StoredTensor(shape: $0.tensor.value.shape, values: $0.tensor.value.scalars)) }
        for (index, state) in optimizerStates.enumerated() {
            pairs += state.keys.sorted().map { ("\(Self.optimizerPrefix)\(index).\($0)", StoredTensor(shape: state[$0]!.shape, values: state[$0]!.scalars)) }
        }
        let url = checkpointDirectory.appendingPathComponent(name)
        let temporary = checkpointDirectory.appendingPathComponent(".\(name).tmp")
        try SafeTensors.write(pairs, metadata: ["format": "rstpm-checkpoint"], to: temporary)
        guard rename(temporary.path, url.path) == 0 else {  // atomic replace: a crash leaves the old or the new file
            throw OperatorError(.writeFailed, path: url.path, problem: "cannot replace the checkpoint (errno \(errno))", hint: "check free space and permissions")
        }
    }

    /// Loads the networks' state; returns the optimiser state stored with it ("<index>.<key>").
    @discardableResult
    private func loadState(_ name: String) throws -> [String: Tensor] {
        let url = checkpointDirectory.appendingPathComponent(name)
        let stored = try SafeTensors.read(contentsOf: url).tensors
        var networkPairs: [(String, StoredTensor)] = []
        var optimizerState: [String: Tensor] = [:]
        for key in stored.keys {
            let tensor = stored[key]!
            if key.hasPrefix(Self.optimizerPrefix) {
                optimizerState[String(key.dropFirst(Self.optimizerPrefix.count))] = Tensor(shape: tensor.shape, scalars: tensor.values)
            } else {
                networkPairs.append((key, tensor))
            }
        }
        try ModelBundle.load(StateDict(networkPairs), into: networks, path: url.path)
        return optimizerState
    }

    /// Hands the resumed optimiser state to the phase's optimisers (`importers[i]` takes index i),
    /// so momentum and Adam moments continue exactly where the interrupted run stopped.
    private func restoreOptimizers(_ importers: [([String: Tensor], String) throws -> Void]) throws {
        let source = checkpointDirectory.appendingPathComponent("last.safetensors").path
        defer { resumedOptimizerState = [:] }
        guard !resumedOptimizerState.isEmpty else {
            logger.warning("checkpoint has no optimiser state (written by an older rstpm): momentum and moments restart", metadata: ["path": "\(source)"])
            return
        }
        for (index, importer) in importers.enumerated() {
            let prefix = "\(index)."
            var part: [String: Tensor] = [:]
            for (key, tensor) in resumedOptimizerState where key.hasPrefix(prefix) { part[String(key.dropFirst(prefix.count))] = tensor }
            do { try importer(part, source) } catch {
                throw OperatorError(.conflict, path: source, problem: "optimiser state does not fit (\(error))",
                                 hint: "resume with the same configuration, or start afresh without --resume")
            }
        }
    }

    private func saveProgress(_ progress: Progress) throws {
        let data = try JSONEncoder().encode(progress)
        try data.write(to: checkpointDirectory.appendingPathComponent("progress.json"), options: .atomic)
    }

    // MARK: run

    /// Trains both phases (continuing from the checkpoints when `resume`), calibrates the
    /// threshold and writes the bundle to `output`. Returns the model ready for inference. An error
    /// thrown by `report` stops the run; the last finished epoch stays in the checkpoints.
    public func run(resume: Bool = false, progress report: (TrainingEvent) throws -> Void = { _ in }) throws -> RSTPMModel {
        let started = Date()
        var state = Progress(phase: TrainingEvent.Phase.students.rawValue, completedEpochs: 0, bestLoss: .greatestFiniteMagnitude, bestEpoch: 0,
                             studentLoss: .greatestFiniteMagnitude, studentBestEpoch: 0, elapsedSeconds: 0, configuration: configuration)
        let progressURL = checkpointDirectory.appendingPathComponent("progress.json")
        if resume, let data = try? Data(contentsOf: progressURL) {
            let saved = try JSONDecoder().decode(Progress.self, from: data)
            // Epoch counts may change on resume (to extend or shorten a run); nothing else may.
            var comparable = saved.configuration
            comparable.studentEpochs = configuration.studentEpochs
            comparable.discriminatorEpochs = configuration.discriminatorEpochs
            guard comparable == configuration else {
                throw OperatorError(.conflict, path: progressURL.path, problem: "the checkpoint was made with another configuration",
                                 hint: "resume with the same flags and config file (only --epochs may change), or start afresh without --resume")
            }
            state = saved
            state.configuration = configuration
            resumedOptimizerState = try loadState("last.safetensors")
            logger.info("resuming", metadata: ["phase": "\(state.phase)", "completed_epochs": "\(state.completedEpochs)"])
        }
        let elapsedBefore = state.elapsedSeconds
        let clock = { elapsedBefore + Date().timeIntervalSince(started) }
        let totalEpochs = Double(configuration.studentEpochs + configuration.discriminatorEpochs)
        let stepsPerEpoch = Double(batches(trainingIndices, epoch: 0, phase: 0).count)
        func remaining(_ doneEpochs: Double) -> Double {
            let done = max(doneEpochs, 1 / stepsPerEpoch)
            // discriminator epochs cost about as much as student epochs (both run all four S-T nets)
            return clock() / done * max(0, totalEpochs - doneEpochs)
        }

        if state.phase == TrainingEvent.Phase.students.rawValue {
            try trainStudents(state: &state, clock: clock, remaining: remaining, report: report)
            try loadState("best.safetensors")
            state.studentLoss = state.bestLoss
            state.studentBestEpoch = state.bestEpoch
            networks.discriminatorInputMeans = discriminatorInputMeans()
            logger.info("students done", metadata: ["validation_loss": "\(state.bestLoss)", "best_epoch": "\(state.bestEpoch)",
                                                    "d_input_means": "\(networks.discriminatorInputMeans)"])
            state.phase = TrainingEvent.Phase.discriminator.rawValue
            state.completedEpochs = 0
            state.bestLoss = .greatestFiniteMagnitude
            state.bestEpoch = 0
            try saveState("last.safetensors")
            try saveState("best.safetensors")
            state.elapsedSeconds = clock()
            try saveProgress(state)
        }
        try trainDiscriminator(state: &state, clock: clock, remaining: remaining, report: report)
        try loadState("best.safetensors")

        // Threshold from validation-normal scores only.
        networks.setTrainableMode(.inference)
        var scores: [Float] = []
        for batch in chunks(validationIndices) {
            scores += RSTPMModel.inspect(batch.map { ModelInput(name: data.files[$0].path, image: data.images[$0]) }, networks: networks).map(\.score)
        }
        let (threshold, statement) = Self.threshold(scores: scores, configuration: configuration)
        logger.info("threshold", metadata: ["value": "\(threshold)", "rule": "\(statement)"])
        if scores.count < Self.fewValidationImages {
            logger.warning("threshold calibrated on only \(scores.count) validation image(s), fewer than \(Self.fewValidationImages): it may reject good parts; train on more normal images or raise validationFraction",
                           metadata: ["validation_images": "\(scores.count)"])
        }
        var manifest = BundleManifest(
            formatVersion: BundleManifest.currentFormatVersion, modelID: UUID().uuidString.lowercased(),
            createdAt: ISO8601DateFormatter().string(from: Date()), rstpmVersion: RSTPMBuild.description, configuration: configuration, teachers: networks.teachers.records,
            inputWidth: configuration.inputWidth, inputHeight: configuration.inputHeight,
            normalization: .init(mean: ModelInput.mean, std: ModelInput.std),
            threshold: .init(value: threshold, rule: configuration.thresholdRule, statement: statement),
            training: .init(imageCount: data.images.count, trainingCount: trainingIndices.count, validationCount: validationIndices.count,
                            folder: data.folder.path, fileListSHA256: data.fileListSHA256, studentEpochs: configuration.studentEpochs,
                            discriminatorEpochs: configuration.discriminatorEpochs, seconds: clock()),
            validation: .init(studentLoss: state.studentLoss, studentBestEpoch: state.studentBestEpoch, discriminatorLoss: state.bestLoss,
                              discriminatorBestEpoch: state.bestEpoch, scoreMax: scores.max() ?? 0,
                              scoreMean: scores.reduce(0, +) / Float(max(1, scores.count))),
            weightsSHA256: "", tensors: [:])
        manifest.precisions = try checkPrecisions(threshold: threshold)
        try? FileManager.default.removeItem(at: checkpointDirectory)
        let written = try ModelBundle.write(networks: networks, manifest: manifest, to: output)
        return RSTPMModel(manifest: written, networks: networks)
    }

    /// `PrecisionCheck` of each reduced precision this CPU runs, on a frozen copy of the networks
    /// (BatchNorm folded, as rstpmd runs them): the validation images and, from each, a few
    /// images with the seeded pseudo-anomalies D is validated on. Nil where no reduced precision runs here.
    private func checkPrecisions(threshold: Float) throws -> [String: PrecisionCheck]? {
        let normal = validationIndices.map { data.images[$0] }
        let anomalies = PseudoAnomalyGenerator(source: textures)
        var generator = SeededGenerator(seed: configuration.seed ^ 0x7A11_DA7E)
        let samples = try normal.flatMap { image in
            try (0..<PrecisionCheck.pseudoAnomalousVariants).map { _ in try anomalies.sample(from: image, using: &generator) }
        }
        let checks = try PrecisionCheck.checkAll(networks: networks.frozenCopy(), threshold: threshold, normal: normal,
                                                 anomalous: samples.map(\.image), masks: samples.map(\.mask), batchSize: configuration.batchSize)
        for (precision, check) in checks.sorted(by: { $0.key < $1.key }) {
            logger.info("precision check", metadata: ["precision": "\(precision)", "result": "\(check.summary)"])
        }
        return checks.isEmpty ? nil : checks
    }

    /// Below this many validation images the threshold is a guess, and training says so.
    public static let fewValidationImages = 10

    /// The threshold rule: max score x margin [default] or a quantile of the scores.
    public static func threshold(scores: [Float], configuration: RSTPMConfiguration) -> (Float, String) {
        let sorted = scores.sorted()
        guard let last = sorted.last else { return (.infinity, "no validation scores") }
        switch configuration.thresholdRule {
        case .maxTimesMargin:
            return (last * configuration.thresholdMargin,
                    "max validation-normal score (\(last)) x \(configuration.thresholdMargin), \(scores.count) images")
        case .quantile:
            let position = configuration.thresholdQuantile * Float(sorted.count - 1)
            let low = Int(position.rounded(.down)), high = min(sorted.count - 1, low + 1)
            let value = sorted[low] + (sorted[high] - sorted[low]) * (position - Float(low))
            return (value, "\(configuration.thresholdQuantile) quantile of \(scores.count) validation-normal scores")
        }
    }

    // MARK: phase 1

    private func trainStudents(state: inout Progress, clock: () -> Double, remaining: (Double) -> Double,
                               report: (TrainingEvent) throws -> Void) throws {
        let epochs = configuration.studentEpochs
        let optimizers: [SGD]
        let (lr, mu, wd) = (configuration.studentLearningRate, configuration.studentMomentum, configuration.studentWeightDecay)
        switch configuration.lossMode {
        case .all:
            optimizers = [SGD(parameters: networks.student1Parameters + networks.student2Parameters, learningRate: lr, momentum: mu, weightDecay: wd)]
        case .split:
            optimizers = [SGD(parameters: networks.student1Parameters, learningRate: lr, momentum: mu, weightDecay: wd),
                          SGD(parameters: networks.student2Parameters, learningRate: lr, momentum: mu, weightDecay: wd)]
        }
        if epochs == 0 {
            state.bestLoss = validationStudentLoss()
            try saveState("best.safetensors")
            return
        }
        if state.completedEpochs > 0 {
            try restoreOptimizers(optimizers.map { optimizer in { try optimizer.importState($0, source: $1) } })
        }
        let anomalies = PseudoAnomalyGenerator(source: studentAnomalySources)
        while state.completedEpochs < epochs {
            let epoch = state.completedEpochs + 1
            let batches = self.batches(trainingIndices, epoch: epoch, phase: 1)
            var generator = SeededGenerator(seed: configuration.seed ^ (0x57DE_0000 &+ UInt64(epoch)))
            for (step, batch) in batches.enumerated() {
                let clean = networks.inputTensor(batch.map { data.images[$0] })
                let loss: Float
                if configuration.denoisingStudents {
                    let (input, _) = try pseudoBatch(batch, generator: &generator, anomalies: anomalies)
                    loss = networks.studentTrainingStep(input: input, clean: clean, optimizers: optimizers)
                } else {
                    loss = networks.studentTrainingStep(input: clean, optimizers: optimizers)
                }
                guard loss.isFinite else {  // the last finished epoch stays in the checkpoints
                    throw OperatorError(.trainingDiverged, path: output.path, problem: "student loss became \(loss) in epoch \(epoch)", hint: "lower studentLearningRate")
                }
                let done = Double(epoch - 1) + Double(step + 1) / Double(batches.count)
                try report(TrainingEvent(phase: .students, epoch: epoch, epochs: epochs, step: step + 1, steps: batches.count, loss: loss,
                                     attentionMeans: networks.student2.lastAttentionMeans, validationLoss: nil,
                                     elapsedSeconds: clock(), remainingSeconds: remaining(done)))
            }
            let validation = validationStudentLoss()
            state.completedEpochs = epoch
            if validation < state.bestLoss {
                state.bestLoss = validation
                state.bestEpoch = epoch
                try saveState("best.safetensors")
            }
            try saveState("last.safetensors", optimizerStates: optimizers.map { $0.exportState() })
            state.elapsedSeconds = clock()
            try saveProgress(state)
            let means = networks.student2.lastAttentionMeans.map { $0.map { String(format: "%.3f", $0) } ?? "-" }
            logger.info("student epoch", metadata: ["epoch": "\(epoch)/\(epochs)", "validation_loss": "\(validation)",
                                                    "attention_mean": "\(means.joined(separator: ","))"])
            try report(TrainingEvent(phase: .students, epoch: epoch, epochs: epochs, step: batches.count, steps: batches.count,
                                 loss: validation, attentionMeans: networks.student2.lastAttentionMeans, validationLoss: validation,
                                 elapsedSeconds: clock(), remainingSeconds: remaining(Double(epoch))))
        }
    }

    /// Sum of the six level losses over the validation images, students in inference mode.
    private func validationStudentLoss() -> Float {
        networks.setTrainableMode(.inference)
        var total = 0.0
        for batch in chunks(validationIndices) {
            let input = networks.inputTensor(batch.map { data.images[$0] })
            let maps = networks.levelMaps(input: input, teachers: networks.teacherFeatures(input), caching: false)
            total += Double(maps.reduce(0) { $0 + $1.mean() }) * Double(batch.count)
        }
        return Float(total / Double(validationIndices.count))
    }

    /// Per-channel mean of D's input (A64, A32, A16 at D's resolution) over the training images.
    private func discriminatorInputMeans() -> [Float] {
        networks.setTrainableMode(.inference)
        var sums = [Double](repeating: 0, count: 3)
        var count = 0
        let (h, w) = (configuration.discriminatorHeight, configuration.discriminatorWidth)
        for batch in chunks(trainingIndices) {
            let input = networks.inputTensor(batch.map { data.images[$0] })
            let sums3 = MapFusion.sums(levelMaps: networks.levelMaps(input: input, teachers: networks.teacherFeatures(input), caching: false),
                                       height: h, width: w)
            for c in 0..<3 { sums[c] += Double(sums3[c].mean()) * Double(sums3[c].count) }
            count += batch.count * h * w
        }
        return sums.map { Float($0 / Double(count)) }
    }

    // MARK: phase 2

    private func pseudoBatch(_ batch: [Int], generator: inout SeededGenerator, anomalies: PseudoAnomalyGenerator) throws -> (Tensor, Tensor) {
        let samples = try batch.map { try anomalies.sample(from: data.images[$0], using: &generator) }
        let (H, W) = (configuration.inputHeight, configuration.inputWidth)
        let masks = Tensor(shape: [batch.count, 1, H, W], scalars: samples.flatMap(\.mask))
        return (networks.inputTensor(samples.map(\.image)), networks.discriminatorTarget(masks: masks))
    }

    private func trainDiscriminator(state: inout Progress, clock: () -> Double, remaining: (Double) -> Double,
                                    report: (TrainingEvent) throws -> Void) throws {
        let epochs = configuration.discriminatorEpochs
        let anomalies = PseudoAnomalyGenerator(source: textures)
        let optimizer = Adam(parameters: networks.discriminator.parameters, learningRate: configuration.discriminatorLearningRate,
                             betas: (0.9, 0.999), weightDecay: configuration.discriminatorWeightDecay)
        let focal = FocalLoss(gamma: 2)
        let frozen = networks.frozenCopy()
        if epochs == 0 {
            state.bestLoss = try validationDiscriminatorLoss(anomalies: anomalies, frozen: frozen)
            try saveState("best.safetensors")
            return
        }
        if state.completedEpochs > 0 {
            try restoreOptimizers([{ try optimizer.importState($0, source: $1) }])
        }
        while state.completedEpochs < epochs {
            let epoch = state.completedEpochs + 1
            let batches = self.batches(trainingIndices, epoch: epoch, phase: 2)
            var generator = SeededGenerator(seed: configuration.seed ^ (0xD15C_0000 &+ UInt64(epoch)))
            for (step, batch) in batches.enumerated() {
                let (input, mask) = try pseudoBatch(batch, generator: &generator, anomalies: anomalies)
                let loss = networks.discriminatorTrainingStep(discriminatorInput: frozen.frozenDiscriminatorInput(images: input), mask: mask,
                                                              optimizer: optimizer, loss: focal)
                let done = Double(configuration.studentEpochs + epoch - 1) + Double(step + 1) / Double(batches.count)
                try report(TrainingEvent(phase: .discriminator, epoch: epoch, epochs: epochs, step: step + 1, steps: batches.count, loss: loss,
                                     attentionMeans: [], validationLoss: nil, elapsedSeconds: clock(), remainingSeconds: remaining(done)))
            }
            let validation = try validationDiscriminatorLoss(anomalies: anomalies, frozen: frozen)
            state.completedEpochs = epoch
            if validation < state.bestLoss {
                state.bestLoss = validation
                state.bestEpoch = epoch
                try saveState("best.safetensors")
            }
            try saveState("last.safetensors", optimizerStates: [optimizer.exportState()])
            state.elapsedSeconds = clock()
            try saveProgress(state)
            logger.info("discriminator epoch", metadata: ["epoch": "\(epoch)/\(epochs)", "validation_loss": "\(validation)"])
            try report(TrainingEvent(phase: .discriminator, epoch: epoch, epochs: epochs, step: batches.count, steps: batches.count,
                                 loss: validation, attentionMeans: [], validationLoss: validation, elapsedSeconds: clock(),
                                 remainingSeconds: remaining(Double(configuration.studentEpochs + epoch))))
        }
    }

    /// Focal loss of D on the validation images made anomalous with a fixed seed (the same
    /// pseudo-anomalies every epoch, so epochs compare); D's input from the `frozen` students.
    private func validationDiscriminatorLoss(anomalies: PseudoAnomalyGenerator, frozen: RSTPMNetworks) throws -> Float {
        var generator = SeededGenerator(seed: configuration.seed ^ 0x7A11_DA7E)
        var total = 0.0
        for batch in chunks(validationIndices) {
            let (input, mask) = try pseudoBatch(batch, generator: &generator, anomalies: anomalies)
            let dInput = frozen.frozenDiscriminatorInput(images: input)
            networks.discriminator.setMode(.inference)
            let focal = FocalLoss(gamma: 2)
            focal.mode = .inference
            total += Double(focal.forward(probabilities: networks.discriminator(dInput), mask: mask)) * Double(batch.count)
        }
        return Float(total / Double(validationIndices.count))
    }

    // MARK: batches

    /// Shuffled training batches of `batchSize` for an epoch (seeded by seed, phase and epoch, so
    /// a resumed run sees the same order); a last batch of one image is dropped (BatchNorm).
    private func batches(_ indices: [Int], epoch: Int, phase: Int) -> [[Int]] {
        var order = indices
        var generator = SeededGenerator(seed: configuration.seed ^ (UInt64(phase) << 32) ^ UInt64(epoch))
        order.shuffle(using: &generator)
        var result = chunks(order)
        if result.count > 1, result.last!.count == 1 { result.removeLast() }
        return result
    }

    private func chunks(_ indices: [Int]) -> [[Int]] {
        stride(from: 0, to: indices.count, by: configuration.batchSize).map { Array(indices[$0..<min(indices.count, $0 + configuration.batchSize)]) }
    }
}
