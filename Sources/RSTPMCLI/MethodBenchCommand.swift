import ArgumentParser
import Backbones
import Checkpoints
import Foundation
import RSTPM
import TensorEngine

/// `rstpm bench method`: training throughput of both phases (images/s) with the default networks
/// (T1 Lite0, T2 Lite2, S1, S2 with attention, D) and, with `--model`, inference ms/image of the
/// complete pipeline with a trained bundle. `--export` writes the batches (and rstpm's final maps
/// for the inference batch) so bench/method_reference.py times PyTorch and OpenVINO on the same
/// inputs and checks that its maps agree.
struct MethodBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "method", abstract: "Time RSTPM training steps and inference.")

    @Option(help: "Trained bundle for the inference timing and the networks' configuration (default: default configuration, no inference).")
    var model: String?

    @OptionGroup var engine: EngineOptions

    @OptionGroup var precision: PrecisionOptions

    @Option(help: "Training batch size.")
    var batch = 8

    @Option(help: "Timed training steps per phase (after one warm-up step).")
    var steps = 3

    @Option(help: "Comma-separated inference batch sizes.")
    var inferBatch = "1,8"

    @Option(help: "Timed inference runs per batch size (the best is reported).")
    var iterations = 3

    @Option(help: "Safetensors file to write the training and inference batches to (for bench/method_reference.py).")
    var export: String?

    var inferBatches: [Int] { inferBatch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        if batch < 2 || steps < 1 || iterations < 1 { throw ValidationError("--batch must be >= 2, --steps and --iterations >= 1") }
        if inferBatches.isEmpty || inferBatches.contains(where: { $0 < 1 }) { throw ValidationError("--infer-batch takes positive integers, e.g. 1,8") }
    }

    func run() throws {
        let threads = engine.configureEngine(fallback: 2)
        let precision = self.precision.configureEngine()
        // The training phases run in f32, as `rstpm train` does; `precision` is the inference timing's.
        Engine.usePrecision(.f32)
        let weights = engine.weightsDirectory
        let trained = try model.map { try RSTPMModel.load(bundle: URL(fileURLWithPath: $0), weightsDirectory: weights) }
        let configuration = trained?.manifest.configuration ?? RSTPMConfiguration()
        let teachers = try TeacherSet.pretrained(teacher1: configuration.teacher1, teacher2: configuration.teacher2, weightsDirectory: weights)
        let networks = RSTPMNetworks(configuration: configuration, teachers: teachers)
        let (H, W) = (configuration.inputHeight, configuration.inputWidth)
        print("threads \(threads), inference precision \(precision.rawValue), input \(W)x\(H), \(configuration.teacher1) + \(configuration.teacher2), S2 \(configuration.studentVariant.rawValue) "
              + "attention \(configuration.attention), D width \(configuration.discriminatorBaseWidth) at \(configuration.discriminatorWidth)x\(configuration.discriminatorHeight)")

        // Smooth random "products" (values do not change the timing) and pseudo-anomalies of them.
        let generator = SeededGenerator(seed: 5)
        let images = (0..<max(batch, inferBatches.max()!)).map { _ in
            PlanarImage(width: W, height: H, values: (0..<(3 * W * H)).map { _ in 0.3 + 0.4 * generator.nextUniform() })
        }
        let anomalies = PseudoAnomalyGenerator(source: ProceduralTextureSource(count: 8, seed: 1))
        var random = SeededGenerator(seed: 6)
        let pseudoStart = DispatchTime.now().uptimeNanoseconds
        let samples = try images.prefix(batch).map { try anomalies.sample(from: $0, using: &random) }
        let pseudoMilliseconds = Double(DispatchTime.now().uptimeNanoseconds - pseudoStart) / 1e6 / Double(batch)
        let studentInput = networks.inputTensor(Array(images.prefix(batch)))
        let pseudoInput = networks.inputTensor(samples.map(\.image))
        let mask = networks.discriminatorTarget(masks: Tensor(shape: [batch, 1, H, W], scalars: samples.flatMap(\.mask)))

        // Phase 1: teachers forward, S1/S2 forward + backward, SGD (the trainer's step).
        let sgd = SGD(parameters: networks.student1Parameters + networks.student2Parameters, learningRate: configuration.studentLearningRate,
                      momentum: configuration.studentMomentum, weightDecay: configuration.studentWeightDecay)
        let studentRate = imagesPerSecond { _ = networks.studentTrainingStep(input: studentInput, optimizers: [sgd]) }
        print("RESULT rstpm    train-students      \(batch) " + String(format: "%9.2f", studentRate))

        // Phase 2 (the trainer's step): S-T maps forward with the students frozen and folded, D
        // forward + backward, Adam.
        let frozen = networks.frozenCopy()
        let adam = Adam(parameters: networks.discriminator.parameters, learningRate: configuration.discriminatorLearningRate,
                        betas: (0.9, 0.999), weightDecay: configuration.discriminatorWeightDecay)
        let focal = FocalLoss(gamma: 2)
        let discriminatorRate = imagesPerSecond {
            _ = networks.discriminatorTrainingStep(discriminatorInput: frozen.frozenDiscriminatorInput(images: pseudoInput), mask: mask,
                                                   optimizer: adam, loss: focal)
        }
        print("RESULT rstpm    train-discriminator \(batch) " + String(format: "%9.2f", discriminatorRate))
        print(String(format: "pseudo-anomaly generation (not in the phase 2 figure): %.1f ms/image", pseudoMilliseconds))

        var exported: [(String, StoredTensor)] = [("train.input", stored(studentInput)), ("train.pseudo_input", stored(pseudoInput)),
                                                  ("train.mask", stored(mask))]
        if let trained {
            Engine.usePrecision(precision)
            // Inference: preprocessed images in, final/S-T/D maps and scores out (RSTPMModel.inspect).
            for size in inferBatches {
                let planar = Array(images.prefix(size))
                _ = trained.inspect(planar.map { ModelInput(image: $0) })
                var best = Double.infinity
                for _ in 0..<iterations {
                    let start = DispatchTime.now().uptimeNanoseconds
                    _ = trained.inspect(planar.map { ModelInput(image: $0) })
                    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                }
                print("RESULT rstpm    infer               \(size) " + String(format: "%9.2f", best / Double(size)))
                if LayerProfile.enabled {
                    LayerProfile.reset()
                    let start = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<iterations { _ = trained.inspect(planar.map { ModelInput(image: $0) }) }
                    let wall = DispatchTime.now().uptimeNanoseconds - start
                    print(LayerProfile.report(per: iterations * size, wallNanoseconds: wall)
                          + "\n" + "inspect in all (mean of \(iterations) runs)".padding(toLength: 58, withPad: " ", startingAt: 0)
                          + String(format: " %6@ %9.3f ms/image", "" as NSString, Double(wall) / 1e6 / Double(iterations * size)))
                }
            }
            let probe = Array(images.prefix(2))
            let results = trained.inspect(probe.map { ModelInput(image: $0) })
            exported.append(("infer.input", stored(trained.networks.inputTensor(probe))))
            exported.append(("infer.final", StoredTensor(shape: [probe.count, 1, H, W], values: results.flatMap(\.finalMap))))
        }
        if let export { try SafeTensors.write(exported, metadata: ["format": "rstpm-bench-method"], to: URL(fileURLWithPath: export)) }
    }

    /// Images per second over `steps` timed steps after one warm-up step.
    private func imagesPerSecond(_ step: () -> Void) -> Double {
        step()
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { step() }
        return Double(batch * steps) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    private func stored(_ tensor: Tensor) -> StoredTensor { StoredTensor(shape: tensor.shape, values: tensor.scalars) }
}
