import ArgumentParser
import Backbones
import Foundation
import Logging
import RSTPM
import TensorEngine

/// `rstpm train`: trains an RSTPM model on the normal images of one product and writes the bundle.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Train an RSTPM model on normal images of one product.")

    enum Schedule: String, ExpressibleByArgument { case `default`, long, paper }

    @Option(help: "Category folder (CATEGORY/train/good/*.png) or a folder of normal images.")
    var data: String

    @Option(help: "Model bundle directory to write (epoch checkpoints go to OUT/checkpoints while training).")
    var out: String

    @Option(help: "JSON file with RSTPMConfiguration fields to override (e.g. {\"studentVariant\": \"paper\", \"attention\": \"*-\"}).")
    var config: String?

    @Option(help: "Epochs as STUDENT[,DISCRIMINATOR], overriding the schedule.")
    var epochs: String?

    @Option(help: "default: 24 + 12 epochs, under 20 minutes per category on 2 cores; long: 72 + 36 epochs, about an hour; paper: 100 + 300 epochs, batch 32, D lr 1e-4.")
    var schedule: Schedule = .default

    @Option(help: "Batch size (overrides the schedule).")
    var batchSize: Int?

    @Option(help: "Random seed (split, initialisation, shuffling, pseudo-anomalies).")
    var seed: UInt64?

    @Option(help: "Folder of anomaly-source texture images (default: GIMP patterns if installed, plus procedural textures).")
    var textures: String?

    @OptionGroup var engine: EngineOptions

    @Flag(help: "Continue from the checkpoints in OUT/checkpoints.")
    var resume = false

    func validate() throws {
        if let epochs, Self.parseEpochs(epochs) == nil { throw ValidationError("--epochs takes STUDENT[,DISCRIMINATOR], e.g. 8,4") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    static func parseEpochs(_ text: String) -> (Int, Int?)? {
        let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard (1...2).contains(parts.count), parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
        return (parts[0]!, parts.count == 2 ? parts[1]! : nil)
    }

    /// Defaults, then the config file's fields, then the flags.
    func resolvedConfiguration() throws -> RSTPMConfiguration {
        var configuration = RSTPMConfiguration()
        switch schedule {
        case .default: break
        case .long: configuration.applyLongSchedule()
        case .paper: configuration.applyPaperSchedule()
        }
        if let config {
            let url = URL(fileURLWithPath: config)
            do {
                var fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)) as! [String: Any]
                guard let overrides = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
                    throw ValidationError("\(config): expected a JSON object")
                }
                let unknown = Set(overrides.keys).subtracting(fields.keys)
                guard unknown.isEmpty else { throw ValidationError("\(config): unknown fields \(unknown.sorted()); known: \(fields.keys.sorted())") }
                fields.merge(overrides) { $1 }
                configuration = try JSONDecoder().decode(RSTPMConfiguration.self, from: JSONSerialization.data(withJSONObject: fields))
            } catch let error as ValidationError {
                throw error
            } catch {
                throw ValidationError("\(config): not a valid configuration (\(error))")
            }
        }
        if let epochs, let (student, discriminator) = Self.parseEpochs(epochs) {
            configuration.studentEpochs = student
            if let discriminator { configuration.discriminatorEpochs = discriminator }
        }
        if let batchSize { configuration.batchSize = batchSize }
        if let seed { configuration.seed = seed }
        if let textures { configuration.textureDirectory = textures }
        let problems = configuration.problems()
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
        return configuration
    }

    func run() throws {
        engine.configureEngine()
        let configuration = try resolvedConfiguration()
        let logger = Logger(label: "rstpm.train", factory: { StreamLogHandler.standardError(label: $0) })
        let weights = engine.weightsDirectory
        let teachers = try TeacherSet.pretrained(teacher1: configuration.teacher1, teacher2: configuration.teacher2, weightsDirectory: weights)
        let started = Date()
        let data = try TrainingImages.load(from: URL(fileURLWithPath: self.data), width: configuration.inputWidth, height: configuration.inputHeight)
        logger.info("data", metadata: ["folder": "\(data.folder.path)", "images": "\(data.images.count)",
                                       "decode_seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))"])
        let textures = try CombinedTextureSource.standard(directory: configuration.textureDirectory)
        let trainer = try RSTPMTrainer(configuration: configuration, teachers: teachers, data: data, output: URL(fileURLWithPath: out),
                                       textures: textures, logger: logger)
        let bar = ProgressLine()
        let model = try trainer.run(resume: resume) { bar.show($0) }
        bar.finish()
        let manifest = model.manifest
        print("model \(manifest.modelID) written to \(out)")
        print("threshold \(manifest.threshold.value) (\(manifest.threshold.statement))")
        print(String(format: "validation: student loss %.4f (epoch %d), D loss %.4f (epoch %d); training took %.0f s",
                     manifest.validation.studentLoss, manifest.validation.studentBestEpoch, manifest.validation.discriminatorLoss,
                     manifest.validation.discriminatorBestEpoch, manifest.training.seconds))
    }
}

/// Progress on a terminal (one rewritten line) or plain log lines otherwise (epoch ends and
/// every tenth step).
final class ProgressLine {
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastLength = 0

    func show(_ event: TrainingEvent) {
        let attention = event.attentionMeans.isEmpty ? "" : " attention " + event.attentionMeans.map { $0.map { String(format: "%.3f", $0) } ?? "-" }.joined(separator: ",")
        let kind = event.validationLoss != nil ? "validation loss" : "loss"
        let text = "\(event.phase.rawValue) epoch \(event.epoch)/\(event.epochs) step \(event.step)/\(event.steps) "
            + "\(kind) \(String(format: "%.4f", event.loss))\(attention) elapsed \(Self.clock(event.elapsedSeconds)) ETA \(Self.clock(event.remainingSeconds))"
        if isTerminal {
            let fraction = Double(event.step) / Double(max(1, event.steps))
            let filled = Int(fraction * 20)
            let line = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 20 - filled) + "] " + text
            FileHandle.standardError.write(Data(("\r" + line.padding(toLength: max(line.count, lastLength), withPad: " ", startingAt: 0)).utf8))
            lastLength = line.count
            if event.validationLoss != nil { FileHandle.standardError.write(Data("\n".utf8)); lastLength = 0 }
        } else if event.validationLoss != nil || event.step % 10 == 0 {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    func finish() {
        if isTerminal && lastLength > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "--:--" }
        let total = Int(seconds.rounded())
        return total >= 3600 ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60) : String(format: "%02d:%02d", total / 60, total % 60)
    }
}
