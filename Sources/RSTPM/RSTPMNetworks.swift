import Foundation
import TensorEngine

/// What a model's teachers are, for the manifest: kind, checkpoint file name and its SHA-256.
public struct TeacherRecord: Codable, Equatable, Sendable {
    public var role: String  // "T1" or "T2"
    public var kind: String
    public var checkpointFile: String
    public var checkpointSHA256: String

    public init(role: String, kind: String, checkpointFile: String, checkpointSHA256: String) {
        self.role = role
        self.kind = kind
        self.checkpointFile = checkpointFile
        self.checkpointSHA256 = checkpointSHA256
    }
}

/// The frozen teachers, where they came from, and how to make a student with T1's architecture.
public struct TeacherSet {
    public var teacher1: any FeatureExtractor
    public var teacher2: any FeatureExtractor
    public var records: [TeacherRecord]
    /// A randomly initialised network with T1's architecture (S1), from a seed.
    public var makeStudent: (UInt64) -> any FeatureExtractor

    public init(teacher1: any FeatureExtractor, teacher2: any FeatureExtractor, records: [TeacherRecord],
                makeStudent: @escaping (UInt64) -> any FeatureExtractor) {
        precondition(teacher1.tapChannels.count == 4 && teacher2.tapChannels.count >= 3, "teachers need taps at strides 4, 8, 16 (32 for T1)")
        self.teacher1 = teacher1
        self.teacher2 = teacher2
        self.records = records
        self.makeStudent = makeStudent
    }
}

/// Features of both teachers for one batch: T1 at strides 4, 8, 16, 32; T2 at 4, 8, 16.
struct TeacherFeatures {
    var t1: [Tensor]
    var t2: [Tensor]
}

/// All networks of one RSTPM model: teachers T1, T2 (frozen, `.inference`), students S1, S2
/// with its attention branches, the discriminator D, and D's input statistics.
public final class RSTPMNetworks {
    public let configuration: RSTPMConfiguration
    public let teachers: TeacherSet
    public let student1: any FeatureExtractor
    public let student2: ReconstructionStudent
    public let discriminator: Discriminator
    /// Mean of A64, A32, A16 (at D's resolution) over normal training samples; D's input scale.
    public var discriminatorInputMeans: [Float] {
        get { statistics.value.scalars }
        set { statistics.value = Tensor(shape: [3], scalars: newValue) }
    }
    private let statistics = Buffer(name: "discriminator_input_mean", value: Tensor(shape: [3], repeating: 1))
    private let distances = (0..<6).map { _ in PairDistance() }

    public init(configuration: RSTPMConfiguration, teachers: TeacherSet) {
        precondition(configuration.problems().isEmpty, "invalid configuration: \(configuration.problems())")
        self.configuration = configuration
        self.teachers = teachers
        student1 = teachers.makeStudent(configuration.seed)
        precondition(student1.tapChannels == teachers.teacher1.tapChannels, "S1 must have T1's architecture")
        let generator = SeededGenerator(seed: configuration.seed &+ 0x5EED_0002)
        let t1 = teachers.teacher1.tapChannels, t2 = teachers.teacher2.tapChannels
        student2 = ReconstructionStudent(variant: configuration.studentVariant, inputChannels: t1[3],
                                         outputChannels: [t2[2], t2[1], t2[0]], attentionModes: configuration.attentionModes!,
                                         attentionHiddenChannels: configuration.attentionHiddenChannels,
                                         residualBlocks: configuration.paperResidualBlocks, generator: generator)
        discriminator = Discriminator(baseWidth: configuration.discriminatorBaseWidth, levels: configuration.discriminatorLevels,
                                      generator: SeededGenerator(seed: configuration.seed &+ 0x5EED_0003))
        teachers.teacher1.setMode(.inference)
        teachers.teacher2.setMode(.inference)
    }

    // MARK: state

    /// Everything a bundle stores, with its name: students, attention, D, statistics.
    public func namedState() -> [(name: String, tensor: any StateTensor)] {
        student1.namedState(prefix: "student1.") + student2.namedState(prefix: "student2.")
            + discriminator.namedState(prefix: "discriminator.") + [(name: "statistics.discriminator_input_mean", tensor: statistics)]
    }

    /// Freezes S1, S2 and D for inference: `.inference` mode, BatchNorm folded into the
    /// convolutions, gradients dropped. The networks can no longer be trained or saved.
    public func freezeForInference() {
        setTrainableMode(.inference)
        (student1 as? any InferenceFoldable)?.foldBatchNorm()
        student2.foldBatchNorm()
        discriminator.foldBatchNorm()
        for parameter in student1.parameters + student2.parameters + discriminator.parameters {
            parameter.dropGradient()
        }
    }

    /// A frozen copy (`freezeForInference`) of these networks that shares their teachers. Phase 2
    /// computes D's input with the copy's students, at inference speed (S1 and S2 no longer
    /// change then), while it trains D here.
    public func frozenCopy() -> RSTPMNetworks {
        let copy = RSTPMNetworks(configuration: configuration, teachers: teachers)
        for (source, target) in zip(namedState(), copy.namedState()) {
            precondition(source.name == target.name, "frozenCopy: \(source.name) vs \(target.name)")
            target.tensor.value = source.tensor.value
        }
        copy.freezeForInference()
        return copy
    }

    /// Trainable parameters of S1, of S2 (attention included), and of D.
    public var student1Parameters: [Parameter] { student1.parameters }
    public var student2Parameters: [Parameter] { student2.parameters }

    // MARK: forward

    func teacherFeatures(_ input: Tensor) -> TeacherFeatures {
        TeacherFeatures(t1: teachers.teacher1.features(input, upTo: 4), t2: Array(teachers.teacher2.features(input, upTo: 3).prefix(3)))
    }

    /// T1's, T2's and S1's features of `input` in `.inference` (S1 must be in it). For a batch,
    /// the three networks and the items run side by side on the engine's workers, the costliest
    /// first: each network's layers then run whole on one core, with no hand-off between the
    /// cores at every layer. A single image runs the networks one after another, each layer
    /// split over the workers: three networks on two cores left one idle for a third of the
    /// time (15.5-16.1 against 14.3 ms/image in f32).
    func inferenceFeatures(_ input: Tensor) -> (teachers: TeacherFeatures, student1: [Tensor]) {
        let jobs: [(network: any FeatureExtractor, taps: Int)] = [(teachers.teacher2, 3), (teachers.teacher1, 4), (student1, 3)]
        let items = input.shape[0]
        // Each item copied out of the batch once, for the three networks.
        let itemInputs = items == 1 ? [input] : (0..<items).map { input.batchItem($0) }
        var results = [[Tensor]](repeating: [], count: jobs.count * items)
        results.withUnsafeMutableBufferPointer { buffer in
            let results = buffer
            let run = { (task: Int) in
                let (job, item) = (jobs[task / items], task % items)
                results[task] = job.network.inferenceFeatures(itemInputs[item], upTo: job.taps)
            }
            if items == 1 {
                for task in results.indices { run(task) }
            } else {
                Engine.forEachInParallel(count: results.count, run)
            }
        }
        let joined = jobs.indices.map { job in
            (0..<jobs[job].taps).map { level in
                items == 1 ? results[job][level] : Tensor.concatenatingBatches((0..<items).map { results[job * items + $0][level] })
            }
        }
        return (TeacherFeatures(t1: joined[1], t2: joined[0]), joined[2])
    }

    /// The six level maps (N, 1, h, w) in Omega order: the students run on `input` (S2 from
    /// `features`, T1's and T2's features of `input`) and are compared with `targets` (the
    /// teachers' features of the clean image when a denoising student sees a pseudo-anomaly;
    /// `features` otherwise). `student1Features`: S1's features of `input`, where they are
    /// already computed. With `caching`, the students must be in `.training` (or `.evaluation`)
    /// mode and `studentBackward` may follow.
    func levelMaps(input: Tensor, teachers features: TeacherFeatures, targets: TeacherFeatures? = nil, student1Features: [Tensor]? = nil,
                   caching: Bool) -> [Tensor] {
        let s1 = student1Features ?? LayerProfile.measure("S1 features: outside listed layers") { student1.features(input, upTo: 3) }
        let s2 = LayerProfile.measure("S2: outside listed layers") {
            student2.forward(features.t1[3], attentionSources: [features.t2[2], features.t2[1]])
        }
        let targets = targets ?? features
        let pairs = (0..<3).map { (targets.t1[$0], s1[$0]) } + (0..<3).map { (targets.t2[2 - $0], s2[$0]) }
        return pairs.enumerated().map { level, pair in
            LayerProfile.measure("S-T distance \(pair.0.shape[1]) channels at \(pair.0.height)x\(pair.0.width)") {
                distances[level].forward(teacher: pair.0, student: pair.1, caching: caching)
            }
        }
    }

    /// Backward of `sum_l mean(map_l) * weights[l]` into S1, S2 and the attention branches.
    func studentBackward(levelMaps: [Tensor]) {
        let gradients = levelMaps.enumerated().map { level, map in
            distances[level].backward(Tensor(shape: map.shape, repeating: 1 / Float(map.count)))
        }
        _ = student1.backward(tapGradients: Array(gradients[0..<3]))
        student2.backward(outputGradients: Array(gradients[3..<6]))
    }

    /// Puts students and D into `mode` (teachers stay in `.inference`).
    public func setTrainableMode(_ mode: LayerMode) {
        student1.setMode(mode)
        student2.setMode(mode)
        discriminator.setMode(mode)
    }

    /// D's input at its resolution from six level maps.
    func discriminatorInput(levelMaps: [Tensor]) -> Tensor {
        MapFusion.discriminatorInput(levelMaps: levelMaps, height: configuration.discriminatorHeight,
                                     width: configuration.discriminatorWidth, channelMeans: discriminatorInputMeans)
    }

    /// D's input for a batch (N, 3, H, W) with the students frozen (`.inference`).
    public func frozenDiscriminatorInput(images input: Tensor) -> Tensor {
        student1.setMode(.inference)
        student2.setMode(.inference)
        let features = inferenceFeatures(input)
        return discriminatorInput(levelMaps: levelMaps(input: input, teachers: features.teachers, student1Features: features.student1, caching: false))
    }

    /// Pseudo-anomaly masks (N, 1, H, W) at D's resolution: the anomalous area fraction of each
    /// cell (the focal loss counts > 0.5 as anomalous).
    public func discriminatorTarget(masks: Tensor) -> Tensor {
        let factor = configuration.discriminatorDownscale
        guard factor > 1 else { return masks }
        let pool = AvgPool2d(kernelSize: factor)
        pool.mode = .inference
        return pool(masks)
    }

    // MARK: training steps (the trainer's and `rstpm bench method`'s)

    /// Phase 1 on a batch (N, 3, H, W): teachers forward, S1 and S2 forward and backward, one step
    /// of each optimiser. A denoising step passes the clean images as `clean` and their
    /// pseudo-anomalous versions as `input`: the students see `input` and learn the teachers'
    /// features of `clean`. Returns the loss before the step (sum of the six level means).
    public func studentTrainingStep(input: Tensor, clean: Tensor? = nil, optimizers: [SGD]) -> Float {
        student1.setMode(.training)
        student2.setMode(.training)
        let maps = levelMaps(input: input, teachers: teacherFeatures(input), targets: clean.map(teacherFeatures), caching: true)
        let loss = maps.reduce(0) { $0 + $1.mean() }
        for optimizer in optimizers { optimizer.zeroGradients() }
        studentBackward(levelMaps: maps)
        for optimizer in optimizers { optimizer.step() }
        return loss
    }

    /// Phase 2 on a pseudo-anomaly batch: D forward and backward on `discriminatorInput` (from
    /// `frozenDiscriminatorInput`) against `mask` (N, 1, h, w) at D's resolution, one Adam step.
    /// Returns the focal loss before the step.
    public func discriminatorTrainingStep(discriminatorInput: Tensor, mask: Tensor, optimizer: Adam, loss focal: FocalLoss) -> Float {
        discriminator.setMode(.training)
        optimizer.zeroGradients()
        let loss = focal.forward(probabilities: discriminator(discriminatorInput), mask: mask)
        _ = discriminator.backward(focal.backward())
        optimizer.step()
        return loss
    }

    /// Normalised model input (N, 3, H, W) from images in [0, 1] at the input size.
    public func inputTensor(_ images: [PlanarImage]) -> Tensor {
        ModelInput.batch(images.map { ModelInput(image: $0) })
    }
}
