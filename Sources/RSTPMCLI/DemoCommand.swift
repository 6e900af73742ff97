import ArgumentParser
import Backbones
import Foundation
import Imaging
import Logging
import DemoProducts
import RSTPM

/// `rstpm demo`: the main job out of the box. Makes woven-fabric product photos (normal and
/// with scratches, holes and stains), trains a small model on the normal ones, starts rstpmd on
/// a demo line, drops a few images into its inbox and prints the verdicts as they appear.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run rstpmd on a demo inspection line with procedurally made fabric images and a demo model trained on them.",
        discussion: "Needs only the teachers' weights (rstpm weights fetch). A second run reuses the model in DIR/model (--retrain trains it again).")

    @Option(help: "Folder for the demo's images, model, configuration and line folders.")
    var dir = "out/demo"

    @OptionGroup var engine: EngineOptions

    @Option(help: "Normal images to train on.")
    var trainImages = 60

    @Option(help: "Model input size (a multiple of 32).")
    var inputSize = 128

    @Option(help: "Training epochs as STUDENT,DISCRIMINATOR.")
    var epochs = "10,6"

    @Option(help: "The rstpmd executable (default: the one beside this rstpm).")
    var rstpmd: String?

    @Option(help: "Seconds to wait for all verdicts of the dropped images.")
    var timeout: Double = 300

    @Flag(help: "Train the demo model again even if DIR/model exists.")
    var retrain = false

    @Flag(help: "Stop rstpmd and exit once every dropped image has its verdict (exit status 1 if one is missing).")
    var exitAfterVerdicts = false

    /// What is dropped into the inbox: four normal rolls and each defect once, on seeds the
    /// model never saw.
    static let drops: [(name: String, defect: DemoProducts.Defect?, seed: UInt64)] = [
        ("normal_01.png", nil, 1001), ("scratch_01.png", .scratch, 1002), ("normal_02.png", nil, 1003),
        ("hole_01.png", .hole, 1004), ("normal_03.png", nil, 1005), ("stain_01.png", .stain, 1006),
        ("normal_04.png", nil, 1007), ("hole_02.png", .hole, 1008),
    ]

    func validate() throws {
        if inputSize < 64 || inputSize % 32 != 0 { throw ValidationError("--input-size must be a multiple of 32, at least 64") }
        if trainImages < 5 { throw ValidationError("--train-images must be at least 5") }
        if TrainCommand.parseEpochs(epochs)?.1 == nil { throw ValidationError("--epochs takes STUDENT,DISCRIMINATOR, e.g. 6,4") }
    }

    func run() throws {
        // Verdicts show as they come, also through a pipe (setup.sh | tee).
        setvbuf(stdout, nil, _IOLBF, 0)
        let root = URL(fileURLWithPath: dir).standardizedFileURL
        engine.configureEngine()
        let weights = engine.weightsDirectory
        let manager = FileManager.default
        let trainFolder = root.appendingPathComponent("products/train")
        let dropFolder = root.appendingPathComponent("products/drops")
        try manager.createDirectory(at: trainFolder, withIntermediateDirectories: true)
        try manager.createDirectory(at: dropFolder, withIntermediateDirectories: true)
        for index in 0..<trainImages {
            try writePNG(DemoProducts.fabric(seed: UInt64(index)), to: trainFolder.appendingPathComponent(String(format: "fabric_%03d.png", index)))
        }
        for drop in Self.drops {
            let image = drop.defect.map { DemoProducts.defective(seed: drop.seed, defect: $0) } ?? DemoProducts.fabric(seed: drop.seed)
            try writePNG(image, to: dropFolder.appendingPathComponent(drop.name))
        }
        print("demo images: \(trainImages) normal for training in \(trainFolder.path), \(Self.drops.count) to inspect in \(dropFolder.path)")

        let model = root.appendingPathComponent("model")
        if retrain || !manager.fileExists(atPath: model.appendingPathComponent(ModelBundle.manifestFileName).path) {
            try train(data: trainFolder, model: model, weights: weights)
        } else {
            print("demo model: reusing \(model.path) (--retrain trains it again)")
        }

        let line = root.appendingPathComponent("line")
        try? manager.removeItem(at: line)
        for folder in ["inbox", "work", "outbox", "archive", "quarantine"] {
            try manager.createDirectory(at: line.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try manager.createDirectory(at: root.appendingPathComponent("metrics"), withIntermediateDirectories: true)
        let config = root.appendingPathComponent("rstpmd.yaml")
        try configurationText(line: line, model: model, metrics: root.appendingPathComponent("metrics/rstpmd.prom"))
            .write(to: config, atomically: true, encoding: .utf8)

        let daemon = try startDaemon(config: config, weights: weights, log: root.appendingPathComponent("rstpmd.log"))
        let stop = StopFlag()
        let signalSources = stop.install()
        defer { signalSources.forEach { $0.cancel() } }
        print("rstpmd started (pid \(daemon.processIdentifier)) on \(config.path); its log: \(root.appendingPathComponent("rstpmd.log").path)")

        let inbox = line.appendingPathComponent("inbox"), outbox = line.appendingPathComponent("outbox")
        // rstpmd creates its work directory once the model is loaded; dropping after that shows
        // the verdicts arriving one by one.
        let loaded = Date().addingTimeInterval(timeout)
        while !manager.fileExists(atPath: line.appendingPathComponent("work/demo").path) && daemon.isRunning && Date() < loaded && !stop.isSet {
            usleep(100_000)
        }
        print(Self.row("file", "verdict", "score", "threshold", "expected"))
        var pending = Self.drops[...]
        var nextDrop = Date()
        var shown = Set<String>()
        var agreeing = 0
        var announced = false
        let deadline = Date().addingTimeInterval(timeout)
        let expected = Dictionary(uniqueKeysWithValues: Self.drops.map { ($0.name, $0.defect == nil ? "ok" : "defect") })
        while !stop.isSet && daemon.isRunning {
            if let drop = pending.first, Date() >= nextDrop {
                // Written under a temporary name and renamed, as a camera share should.
                let temporary = inbox.appendingPathComponent(".\(drop.name).part")
                try manager.copyItem(at: dropFolder.appendingPathComponent(drop.name), to: temporary)
                try manager.moveItem(at: temporary, to: inbox.appendingPathComponent(drop.name))
                pending.removeFirst()
                nextDrop = Date().addingTimeInterval(0.5)
            }
            for name in newVerdicts(in: outbox, excluding: shown) {
                guard let verdict = readVerdict(outbox.appendingPathComponent(name + ".json")) else { continue }
                shown.insert(name)
                let wanted = expected[name]
                if wanted == verdict.verdict { agreeing += 1 }
                print(Self.row(name, verdict.verdict, verdict.score, verdict.threshold, wanted ?? "-"))
            }
            if !announced && Self.drops.allSatisfy({ shown.contains($0.name) }) {
                announced = true
                print("\(agreeing)/\(Self.drops.count) demo verdicts as expected")
                if exitAfterVerdicts { break }
                print("rstpmd keeps watching \(inbox.path): drop PNG, JPEG, BMP or TIFF images there; Ctrl-C stops it.")
            }
            if !announced && Date() > deadline {
                print("timed out after \(Int(timeout)) s waiting for verdicts")
                break
            }
            usleep(100_000)
        }
        let exitedByItself = !daemon.isRunning
        if daemon.isRunning { daemon.terminate() }
        daemon.waitUntilExit()
        if exitedByItself && !stop.isSet {
            print("rstpmd exited with status \(daemon.terminationStatus); see \(root.appendingPathComponent("rstpmd.log").path)")
            throw ExitCode(1)
        }
        if !announced && !stop.isSet { throw ExitCode(1) }
    }

    /// One table row: file, verdict, score, threshold, expected.
    static func row(_ file: String, _ verdict: String, _ score: String, _ threshold: String, _ expected: String) -> String {
        func padded(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }
        return padded(file, 18) + padded(verdict, 8) + padded(score, 12) + padded(threshold, 12) + expected
    }

    private func writePNG(_ image: RGBImage, to url: URL) throws {
        try PNGEncoder.encode(image).write(to: url, options: .atomic)
    }

    private func train(data: URL, model: URL, weights: URL) throws {
        var configuration = RSTPMConfiguration()
        configuration.inputWidth = inputSize
        configuration.inputHeight = inputSize
        let (studentEpochs, discriminatorEpochs) = TrainCommand.parseEpochs(epochs)!
        configuration.studentEpochs = studentEpochs
        configuration.discriminatorEpochs = discriminatorEpochs!
        // Few validation images: the quantile rule would sit on one of them.
        configuration.validationFraction = 0.2
        let logger = Logger(label: "rstpm.demo", factory: { StreamLogHandler.standardError(label: $0) })
        let teachers = try TeacherSet.pretrained(teacher1: configuration.teacher1, teacher2: configuration.teacher2, weightsDirectory: weights)
        let images = try TrainingImages.load(from: data, width: inputSize, height: inputSize)
        print("training the demo model (\(configuration.teacher1) + \(configuration.teacher2) teachers, \(inputSize)x\(inputSize), \(studentEpochs) + \(discriminatorEpochs!) epochs)")
        let trainer = try RSTPMTrainer(configuration: configuration, teachers: teachers, data: images, output: model,
                                       textures: try CombinedTextureSource.standard(directory: nil), logger: logger)
        let bar = ProgressLine()
        let trained = try trainer.run { bar.show($0) }
        bar.finish()
        print(String(format: "demo model written to %@ in %.0f s; threshold %.5g (%@)", model.path, trained.manifest.training.seconds,
                     trained.threshold, trained.manifest.threshold.statement))
    }

    private func configurationText(line: URL, model: URL, metrics: URL) -> String {
        func folder(_ name: String) -> String { line.appendingPathComponent(name).path }
        return """
        # Written by `rstpm demo`: one inspection line on the demo folders.
        instance: demo
        metrics_file: \(metrics.path)
        drain_timeout_seconds: 30
        lines:
          - name: demo-fabric
            inbox: \(folder("inbox"))
            work: \(folder("work"))
            outbox: \(folder("outbox"))
            archive: \(folder("archive"))
            quarantine: \(folder("quarantine"))
            model: \(model.path)
            poll_interval_seconds: 0.5
            settle_interval_seconds: 0.5
            processed_inputs: archive
            batch_size: 4

        """
    }

    private func startDaemon(config: URL, weights: URL, log: URL) throws -> Process {
        let binary = rstpmd.map { URL(fileURLWithPath: $0) }
            ?? Bundle.main.executableURL!.resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("rstpmd")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ValidationError("\(binary.path) is not an executable; build it (swift build -c release) or pass --rstpmd")
        }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--config", config.path, "--weights-dir", weights.path]
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = process.standardError
        try process.run()
        return process
    }

    /// Names whose `<name>.json` is in the outbox and not yet shown.
    private func newVerdicts(in outbox: URL, excluding shown: Set<String>) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outbox.path)) ?? []
        return names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.map { String($0.dropLast(5)) }.filter { !shown.contains($0) }.sorted()
    }

    private func readVerdict(_ url: URL) -> (verdict: String, score: String, threshold: String)? {
        guard let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        let score = (object["score"] as? NSNumber).map { String(format: "%.5g", $0.doubleValue) } ?? "-"
        let threshold = ((object["threshold"] as? [String: Any])?["value"] as? NSNumber).map { String(format: "%.5g", $0.doubleValue) } ?? "-"
        return ((object["verdict"] as? String) ?? "?", score, threshold)
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP. rstpmd, in the same process group, gets Ctrl-C too and
/// drains; after SIGTERM or a closed terminal the demo stops it, so no daemon is left behind.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }

    func install() -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM, SIGHUP].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in lock.lock(); value = true; lock.unlock() }
            source.resume()
            return source
        }
    }
}
