import ArgumentParser
import Backbones
import Foundation
import Logging
import OperatorErrors
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

    @Flag(help: "Continue from the checkpoints in OUT/checkpoints (Ctrl-C prints the command). Without a checkpoint it says so and starts afresh.")
    var resume = false

    @Flag(help: "Train into an OUT that already holds a model bundle or an unfinished run (replaced when the new model is written).")
    var force = false

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
                let bytes: Data
                do { bytes = try Data(contentsOf: url) } catch {
                    throw OperatorError(.unreadable, path: config, problem: "cannot read the file (\(error.localizedDescription))", hint: "check the path given to --config")
                }
                guard let overrides = try JSONSerialization.jsonObject(with: bytes) as? [String: Any] else {
                    throw OperatorError(.malformed, path: config, problem: "expected a JSON object", hint: Self.configHint)
                }
                let unknown = Set(overrides.keys).subtracting(fields.keys)
                guard unknown.isEmpty else {
                    throw OperatorError(.invalidInput, path: config, problem: "unknown fields \(unknown.sorted())", hint: "known fields: \(fields.keys.sorted().joined(separator: ", "))")
                }
                fields.merge(overrides) { $1 }
                configuration = try JSONDecoder().decode(RSTPMConfiguration.self, from: JSONSerialization.data(withJSONObject: fields))
            } catch let error as OperatorError {
                throw error
            } catch {
                throw OperatorError(.invalidInput, path: config, problem: "not a valid configuration (\(error))", hint: Self.configHint)
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
        guard problems.isEmpty else {
            throw OperatorError(.invalidInput, path: config ?? "rstpm train", problem: problems.joined(separator: "; "), hint: "fix the values given by the config file and flags")
        }
        return configuration
    }

    static let configHint = "a JSON object of RSTPMConfiguration fields, e.g. {\"studentEpochs\": 8}"

    /// Refuses to overwrite a finished bundle or an unfinished run without `--force`; says when
    /// `--resume` has nothing to resume (the run then starts afresh: rstpmd's learning passes
    /// --resume whenever its candidate folder exists, checkpoint or not).
    func checkOutput() throws {
        let output = URL(fileURLWithPath: out)
        let progress = output.appendingPathComponent("checkpoints/progress.json")
        let hasCheckpoint = FileManager.default.fileExists(atPath: progress.path)
        if resume {
            if !hasCheckpoint {
                FileHandle.standardError.write(Data("warning: --resume: \(progress.path) does not exist, so there is no checkpoint to resume: training starts from the first epoch\n".utf8))
            }
            return
        }
        guard !force else { return }
        if FileManager.default.fileExists(atPath: output.appendingPathComponent(ModelBundle.manifestFileName).path) {
            throw OperatorError(.conflict, path: out, problem: "already holds a model bundle",
                             hint: "add --force to replace it (it stays until the new model is written), or choose another --out")
        }
        if hasCheckpoint {
            throw OperatorError(.conflict, path: out, problem: "holds an unfinished run (checkpoints/progress.json)",
                             hint: "add --resume to continue it, or --force to start afresh")
        }
    }

    func run() throws {
        engine.configureEngine()
        // Training runs in f32 whatever RSTPM_PRECISION says: the frozen teachers' features included.
        Engine.usePrecision(.f32)
        let configuration = try resolvedConfiguration()
        try checkOutput()
        let bar = ProgressLine()
        let logger = Logger(label: "rstpm.train", factory: { ProgressLine.LogHandler(bar: bar, wrapped: StreamLogHandler.standardError(label: $0)) })
        let weights = engine.weightsDirectory
        let teachers = try TeacherSet.pretrained(teacher1: configuration.teacher1, teacher2: configuration.teacher2, weightsDirectory: weights)
        let started = Date()
        let data = try TrainingImages.load(from: URL(fileURLWithPath: self.data), width: configuration.inputWidth, height: configuration.inputHeight)
        logger.info("data", metadata: ["folder": "\(data.folder.path)", "images": "\(data.images.count)",
                                       "decode_seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))"])
        let textures = try CombinedTextureSource.standard(directory: configuration.textureDirectory)
        let trainer = try RSTPMTrainer(configuration: configuration, teachers: teachers, data: data, output: URL(fileURLWithPath: out),
                                       textures: textures, logger: logger)
        let interrupt = Interrupt.install()
        let model: RSTPMModel
        do {
            model = try trainer.run(resume: resume) { event in
                if interrupt.requested { throw Interrupt.Stop() }
                bar.show(event)
            }
        } catch is Interrupt.Stop {
            bar.finish()
            FileHandle.standardError.write(Data(interruptedMessage().utf8))
            throw ExitCode(130)
        }
        bar.finish()
        let manifest = model.manifest
        print("model \(manifest.modelID) written to \(out)")
        print("threshold \(manifest.threshold.value) (\(manifest.threshold.statement))")
        print(String(format: "validation: student loss %.4f (epoch %d), D loss %.4f (epoch %d); training took %.0f s",
                     manifest.validation.studentLoss, manifest.validation.studentBestEpoch, manifest.validation.discriminatorLoss,
                     manifest.validation.discriminatorBestEpoch, manifest.training.seconds))
        for (precision, check) in (manifest.precisions ?? [:]).sorted(by: { $0.key < $1.key }) {
            print("\(precision) against f32 \(check.summary)")
        }
    }
}

extension TrainCommand {
    /// What Ctrl-C says: what is kept, and the exact command that continues the run.
    func interruptedMessage() -> String {
        let progress = URL(fileURLWithPath: out).appendingPathComponent("checkpoints/progress.json")
        guard FileManager.default.fileExists(atPath: progress.path) else {
            return "interrupted before the first epoch finished: nothing to resume; run the same command again to start over\n"
        }
        var arguments = CommandLine.arguments.filter { $0 != "--force" }
        if !arguments.contains("--resume") { arguments.append("--resume") }
        return "interrupted: the epochs finished so far are saved in \(progress.deletingLastPathComponent().path); continue with\n  "
            + arguments.map(Interrupt.shellQuoted).joined(separator: " ") + "\n"
    }
}

/// Ctrl-C during training: the first stops the run at the end of the current step (the last
/// finished epoch is in the checkpoints), a second one ends the process at once.
final class Interrupt {
    struct Stop: Error {}

    var requested: Bool { interruptRequested != 0 }

    static func install() -> Interrupt {
        signal(SIGINT) { _ in
            interruptRequested = 1
            signal(SIGINT, SIG_DFL)
        }
        return Interrupt()
    }

    /// `text` as one shell word: unchanged when it is plain, else in single quotes.
    static func shellQuoted(_ text: String) -> String {
        let plain = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
        if !text.isEmpty && text.unicodeScalars.allSatisfy(plain.contains) { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// Set by the SIGINT handler (a signal handler may only store to such a variable).
private var interruptRequested: sig_atomic_t = 0

/// Progress on a terminal (one rewritten line) or plain log lines otherwise (epoch ends and
/// every tenth step).
final class ProgressLine {
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastLength = 0
    private let lock = NSLock()

    /// Log lines first clear the bar (it is drawn again at the next step), so a line never
    /// starts in the middle of the bar.
    struct LogHandler: Logging.LogHandler {
        let bar: ProgressLine
        var wrapped: StreamLogHandler

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { wrapped[metadataKey: key] }
            set { wrapped[metadataKey: key] = newValue }
        }
        var metadata: Logger.Metadata {
            get { wrapped.metadata }
            set { wrapped.metadata = newValue }
        }
        var logLevel: Logger.Level {
            get { wrapped.logLevel }
            set { wrapped.logLevel = newValue }
        }

        func log(event: LogEvent) {
            bar.clear()
            wrapped.log(event: event)
        }
    }

    /// Erases the bar from the terminal line, if one is shown.
    func clear() {
        lock.lock(); defer { lock.unlock() }
        guard isTerminal && lastLength > 0 else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        lastLength = 0
    }

    func show(_ event: TrainingEvent) {
        lock.lock(); defer { lock.unlock() }
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
        lock.lock(); defer { lock.unlock() }
        if isTerminal && lastLength > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        lastLength = 0
    }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "--:--" }
        let total = Int(seconds.rounded())
        return total >= 3600 ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60) : String(format: "%02d:%02d", total / 60, total % 60)
    }
}
