import Foundation
import Logging
import RSTPM
import TensorEngine
import XCTest

/// The training machinery on tiny random teachers at 64x64: loss falls, attention stays alive,
/// the bundle round-trips and bad bundles are refused.
final class TrainingTests: XCTestCase {
    private var directory: URL!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-training-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func train(_ configuration: RSTPMConfiguration, output: URL, events: inout [TrainingEvent]) throws -> RSTPMModel {
        let images = TinySetup.images(count: 12, seed: 5, width: configuration.inputWidth, height: configuration.inputHeight)
        let data = TrainingImages(folder: directory, files: images.indices.map { directory.appendingPathComponent("\($0).png") }, images: images)
        let trainer = try RSTPMTrainer(configuration: configuration, teachers: TinySetup.teachers(), data: data, output: output,
                                       textures: ProceduralTextureSource(count: 8, seed: 1), logger: Logger(label: "test"))
        var collected: [TrainingEvent] = []
        let model = try trainer.run { collected.append($0) }
        events = collected
        return model
    }

    func testTinyTrainingLowersLossKeepsAttentionAndRoundTrips() throws {
        var configuration = TinySetup.configuration()
        configuration.studentLearningRate = 0.1
        let bundle = directory.appendingPathComponent("model")
        var events: [TrainingEvent] = []
        let model = try train(configuration, output: bundle, events: &events)

        let studentSteps = events.filter { $0.phase == .students && $0.validationLoss == nil }
        let validations = events.compactMap { $0.phase == .students ? $0.validationLoss : nil }
        XCTAssertEqual(validations.count, 4)
        let firstLoss = studentSteps.first!.loss, lastLoss = studentSteps.suffix(3).map(\.loss).reduce(0, +) / 3
        print("student loss first step \(firstLoss), last steps \(lastLoss); validation \(validations)")
        XCTAssertLessThan(lastLoss, 0.8 * firstLoss, "student loss falls")
        XCTAssertLessThan(validations.last!, validations.first!)
        let means = studentSteps.last!.attentionMeans
        print("attention means \(means)")
        XCTAssertEqual(means.count, 2)
        for mean in means { XCTAssertNotNil(mean); XCTAssertGreaterThan(mean!, 0.02, "attention collapsed"); XCTAssertLessThan(mean!, 0.999) }
        XCTAssertTrue(events.contains { $0.phase == .discriminator })

        // Bundle written, checkpoints cleaned up, manifest filled in.
        XCTAssertTrue(FileManager.default.fileExists(atPath: bundle.appendingPathComponent("manifest.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: bundle.appendingPathComponent("checkpoints").path))
        XCTAssertEqual(model.manifest.training.validationCount, 3)
        XCTAssertEqual(model.threshold, model.manifest.validation.scoreMax * 1.1, accuracy: 1e-6 * model.threshold)

        // Reload -> identical outputs.
        let probe = TinySetup.images(count: 2, seed: 99)
        let before = model.inspect(probe.map { ModelInput(image: $0) })
        let reloaded = try RSTPMModel.load(bundle: bundle, teachers: TinySetup.teachers())
        let after = reloaded.inspect(probe.map { ModelInput(image: $0) })
        for (a, b) in zip(before, after) {
            XCTAssertEqual(a.finalMap, b.finalMap)
            XCTAssertEqual(a.score, b.score)
            XCTAssertEqual(a.finalMap.count, 64 * 64)
            // Eq. 1 holds per pixel.
            for i in stride(from: 0, to: a.finalMap.count, by: 97) {
                XCTAssertEqual(a.finalMap[i], a.studentTeacherMap[i] * a.discriminatorMap[i], accuracy: 1e-6 * max(1, a.finalMap[i]))
            }
        }
        XCTAssertEqual(reloaded.modelID, model.modelID)

        // Mismatched teacher checkpoint refused.
        XCTAssertThrowsError(try RSTPMModel.load(bundle: bundle, teachers: TinySetup.teachers(t1Hash: "other"))) { error in
            XCTAssertTrue("\(error)".contains("sha256"), "\(error)")
        }
        // Corrupt weights refused.
        let weights = bundle.appendingPathComponent("weights.safetensors")
        var bytes = try Data(contentsOf: weights)
        bytes[bytes.count - 5] ^= 0x40
        try bytes.write(to: weights)
        XCTAssertThrowsError(try RSTPMModel.load(bundle: bundle, teachers: TinySetup.teachers())) { error in
            XCTAssertTrue("\(error)".contains("corrupt"), "\(error)")
        }
        // Manifest that names other tensors refused.
        let manifestURL = bundle.appendingPathComponent("manifest.json")
        try Data("{\"formatVersion\": 1}".utf8).write(to: manifestURL)
        XCTAssertThrowsError(try RSTPMModel.load(bundle: bundle, teachers: TinySetup.teachers()))
    }

    /// Long products (strips) train and infer at a non-square size; every map follows it.
    func testNonSquareInputTrainsAndInfers() throws {
        var configuration = TinySetup.configuration()
        configuration.inputWidth = 128
        configuration.inputHeight = 64
        configuration.studentEpochs = 1
        var events: [TrainingEvent] = []
        let model = try train(configuration, output: directory.appendingPathComponent("strip"), events: &events)
        let results = model.inspect(TinySetup.images(count: 2, seed: 42, width: 128, height: 64).map { ModelInput(image: $0) })
        for result in results {
            XCTAssertEqual(result.width, 128)
            XCTAssertEqual(result.height, 64)
            for map in [result.finalMap, result.studentTeacherMap, result.discriminatorMap] { XCTAssertEqual(map.count, 128 * 64) }
            XCTAssertTrue(result.score.isFinite)
            XCTAssertEqual(result.score, result.finalMap.max()!, accuracy: 1e-6 * max(1, result.score))
        }
    }

    func testTrainingIsDeterministicAndResumes() throws {
        var configuration = TinySetup.configuration()
        configuration.studentEpochs = 2
        configuration.discriminatorEpochs = 2
        var events: [TrainingEvent] = []
        let a = try train(configuration, output: directory.appendingPathComponent("a"), events: &events)
        let b = try train(configuration, output: directory.appendingPathComponent("b"), events: &events)
        let probe = TinySetup.images(count: 2, seed: 42)
        let reference = a.inspect(probe.map { ModelInput(image: $0) })
        XCTAssertTrue(reference.map(\.finalMap) == b.inspect(probe.map { ModelInput(image: $0) }).map(\.finalMap), "same seed, same model")
        XCTAssertEqual(a.threshold, b.threshold)

        struct Stop: Error {}
        let images = TinySetup.images(count: 12, seed: 5)
        let data = TrainingImages(folder: directory, files: images.indices.map { directory.appendingPathComponent("\($0).png") }, images: images)
        func trainer(output: URL, studentEpochs: Int = configuration.studentEpochs) throws -> RSTPMTrainer {
            var configuration = configuration
            configuration.studentEpochs = studentEpochs
            return try RSTPMTrainer(configuration: configuration, teachers: TinySetup.teachers(), data: data, output: output,
                                    textures: ProceduralTextureSource(count: 8, seed: 1), logger: Logger(label: "test"))
        }

        // Interrupted after student epoch 1 and again after discriminator epoch 1: each resume
        // continues with the saved SGD momentum / Adam moments and ends bit-identical to `a`.
        let c = directory.appendingPathComponent("c")
        XCTAssertThrowsError(try trainer(output: c).run { if $0.validationLoss != nil { throw Stop() } })
        XCTAssertTrue(FileManager.default.fileExists(atPath: c.appendingPathComponent("checkpoints/progress.json").path))
        var resumedEvents: [TrainingEvent] = []
        XCTAssertThrowsError(try trainer(output: c).run(resume: true) {
            resumedEvents.append($0)
            if $0.phase == .discriminator && $0.validationLoss != nil { throw Stop() }
        })
        XCTAssertEqual(resumedEvents.first?.phase, .students)
        XCTAssertEqual(resumedEvents.first?.epoch, 2)
        resumedEvents = []
        let resumed = try trainer(output: c).run(resume: true) { resumedEvents.append($0) }
        XCTAssertEqual(resumedEvents.first?.phase, .discriminator)
        XCTAssertEqual(resumedEvents.first?.epoch, 2)
        let after = resumed.inspect(probe.map { ModelInput(image: $0) })
        for (x, y) in zip(reference, after) {
            let difference = zip(x.finalMap, y.finalMap).map { abs($0 - $1) }.max()!
            XCTAssertEqual(difference, 0, "resumed run differs from the uninterrupted one (max |difference| \(difference))")
            XCTAssertTrue(x.studentTeacherMap == y.studentTeacherMap, "S-T maps differ after resuming")
        }
        XCTAssertEqual(resumed.threshold, a.threshold)

        // A different configuration is refused; the epoch counts may change (to extend a run).
        let d = directory.appendingPathComponent("d")
        XCTAssertThrowsError(try trainer(output: d).run { if $0.validationLoss != nil { throw Stop() } })
        var other = configuration
        other.seed = 77
        XCTAssertThrowsError(try RSTPMTrainer(configuration: other, teachers: TinySetup.teachers(), data: data, output: d,
                                              textures: ProceduralTextureSource(count: 8, seed: 1), logger: Logger(label: "test"))
            .run(resume: true)) { XCTAssertTrue("\($0)".contains("another configuration"), "\($0)") }
        resumedEvents = []
        let extended = try trainer(output: d, studentEpochs: 3).run(resume: true) { resumedEvents.append($0) }
        XCTAssertEqual(resumedEvents.filter { $0.phase == .students && $0.validationLoss != nil }.map(\.epoch), [2, 3])
        XCTAssertTrue(extended.threshold.isFinite)
    }

    func testPseudoAnomalyBatchesAreReproducible() throws {
        let source = try CombinedTextureSource.standard(directory: nil)
        let anomalies = PseudoAnomalyGenerator(source: source)
        let image = TinySetup.images(count: 1, seed: 1)[0]
        func draw(_ seed: UInt64) throws -> [[Float]] {
            var generator = SeededGenerator(seed: seed)
            return try (0..<4).map { _ in try anomalies.sample(from: image, using: &generator) }.map { $0.image.values + $0.mask }
        }
        XCTAssertEqual(try draw(9), try draw(9))
        XCTAssertNotEqual(try draw(9), try draw(10))
    }

    func testThresholdRules() {
        var configuration = RSTPMConfiguration()
        XCTAssertEqual(RSTPMTrainer.threshold(scores: [1, 3, 2], configuration: configuration).0, 3.3, accuracy: 1e-6)
        configuration.thresholdRule = .quantile
        configuration.thresholdQuantile = 0.5
        XCTAssertEqual(RSTPMTrainer.threshold(scores: [1, 3, 2], configuration: configuration).0, 2, accuracy: 1e-6)
    }
}
