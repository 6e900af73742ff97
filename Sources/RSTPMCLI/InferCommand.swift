import ArgumentParser
import Backbones
import Checkpoints
import ContinuousLearning
import DaemonSupport
import Evaluation
import Foundation
import Imaging
import InspectionDaemon
import OperatorErrors
import RSTPM
import TensorEngine

/// `rstpm infer`: anomaly maps and verdicts for images with a trained bundle.
struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer", abstract: "Inspect images with a trained model: heatmap PNG and JSON verdict per image.",
        discussion: "A file that cannot be read or decoded is reported and skipped; the others are inspected, and the exit status is then 1.")

    @Option(help: "Model bundle directory written by `rstpm train`.")
    var model: String

    @Option(help: "Output folder for <name>.heatmap.png (heatmap) and <name>.json (verdict), <name> the image's file name as rstpmd names its outputs; an image whose name an earlier image of the run took, or whose outputs would replace an input, gets <stem>-1.<ext> (-2, ...).")
    var out: String

    @OptionGroup var engine: EngineOptions

    @OptionGroup var precision: PrecisionOptions

    @Option(help: "Images per network batch.")
    var batchSize = 4

    @Flag(help: "Draw the score and the verdict into the heatmap's top-left corner.")
    var label = false

    @Option(help: "Also evaluate on CATEGORY/test (MVTec AD layout) as `rstpm eval` does, for the S-T, D and full maps; writes evaluation.json.")
    var category: String?

    @Argument(help: "Images (PNG, JPEG, BMP or TIFF) or folders: a folder gives the images directly inside it, by name, not its subfolders, nor the *.heatmap.png infer wrote.")
    var images: [String] = []

    func validate() throws {
        if images.isEmpty && category == nil { throw ValidationError("give at least one image or --category") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let inputs = try Self.expand(images)
        engine.configureEngine()
        precision.configureEngine()
        let model = try RSTPMModel.load(bundle: URL(fileURLWithPath: self.model), weightsDirectory: engine.weightsDirectory)
        var failures = 0, skipped = 0
        let outFolder = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: outFolder, withIntermediateDirectories: true)
        var names = OutputNames(outFolder: outFolder, inputs: inputs)
        // The daemon's inspector around the same model: its heatmap (at the image's own size here)
        // and its checks, from the same `prepare` and `inspect` as rstpmd, `eval` and training.
        let inspector = RSTPMInspector(model: model, imageLimits: .default, heatmapResolution: .original)
        let instance = ProcessInfo.processInfo.hostName
        for start in stride(from: 0, to: inputs.count, by: batchSize) {
            // One unreadable or undecodable file is reported and skipped; the others go on.
            var batch: [(input: ModelInput, bytes: [UInt8], received: Int64, decodeMilliseconds: Double)] = []
            for path in inputs[start..<min(inputs.count, start + batchSize)] {
                let received = wallClockNanoseconds(), decodeStart = monotonicNanoseconds()
                do {
                    let bytes = [UInt8](try ImageDecoder.read(URL(fileURLWithPath: path)))
                    let input = try model.prepare(bytes, name: path)
                    batch.append((input, bytes, received, Double(monotonicNanoseconds() - decodeStart) / 1e6))
                } catch {
                    skipped += 1
                    FileHandle.standardError.write(Data("skipped \(error)\n".utf8))
                }
            }
            for (item, inspection) in zip(batch, model.inspect(batch.map(\.input))) {
                let path = item.input.name
                // As rstpmd's inference_failure: a model that yields NaN or infinity has no
                // verdict to give (JSON cannot even hold the score); say so, naming the model.
                guard case .success(let outcome) = inspector.outcome(item.input, inspection, decodeMilliseconds: item.decodeMilliseconds) else {
                    failures += 1
                    let message = "\(path): inference_failure: the anomaly map is not finite (score \(inspection.score)) with model \(model.modelID) (\(self.model))"
                    FileHandle.standardError.write(Data((message + "; hint: the model's weights hold NaN or infinity, retrain it\n").utf8))
                    continue
                }
                let name = names.take(for: path)
                let heatmapName = fittingFileName(name, suffix: ".heatmap.png")
                let heatmapStart = monotonicNanoseconds()
                let png = try outcome.renderHeatmapPNG(outcome.threshold, label)
                let heatmapMilliseconds = Double(monotonicNanoseconds() - heatmapStart) / 1e6
                let writeStart = monotonicNanoseconds()
                try Data(png).write(to: outFolder.appendingPathComponent(heatmapName))
                let writeMilliseconds = Double(monotonicNanoseconds() - writeStart) / 1e6
                // rstpmd's verdict (docs/verdict.md), decided and encoded by the same code.
                let decision = VerdictPolicy.decide(score: outcome.score, modelThreshold: outcome.threshold, thresholdOverride: nil)
                let (regions, truncated) = RegionExtractor.regions(
                    map: outcome.anomalyMap, mapWidth: outcome.mapWidth, mapHeight: outcome.mapHeight,
                    imageWidth: outcome.imageWidth, imageHeight: outcome.imageHeight, threshold: outcome.threshold)
                let verdict = Verdict(
                    file: path, sha256: sha256Hex(of: item.bytes),
                    size: .init(bytes: item.bytes.count, width: outcome.imageWidth, height: outcome.imageHeight),
                    receivedAt: iso8601(nanosecondsSinceEpoch: item.received), decidedAt: iso8601(nanosecondsSinceEpoch: wallClockNanoseconds()),
                    line: "rstpm-infer", instance: instance, model: inspector.modelIdentity,
                    verdict: decision.verdict, score: outcome.score, threshold: decision.threshold,
                    regions: regions, regionsTruncated: truncated, heatmap: heatmapName,
                    timingsMilliseconds: .init(decode: outcome.timings.decodeMilliseconds, infer: outcome.timings.inferMilliseconds,
                                               heatmap: heatmapMilliseconds, write: writeMilliseconds),
                    error: nil)
                try Data(verdict.encoded()).write(to: outFolder.appendingPathComponent(fittingFileName(name, suffix: ".json")))
                print("\(path)\t\(verdict.verdict.rawValue)\tscore \(outcome.score)\tthreshold \(outcome.threshold)")
            }
        }
        if let category { try evaluate(model: model, category: category, outFolder: outFolder) }
        if skipped > 0 {
            FileHandle.standardError.write(Data("\(skipped) of \(inputs.count) image(s) skipped (see above); exit status 1\n".utf8))
        }
        if failures > 0 || skipped > 0 { throw ExitCode(1) }
    }

    /// The arguments with each folder replaced by the images directly inside it, sorted by name
    /// (not recursive: an --out folder inside it is not read back). Files are kept as given,
    /// whatever their name: the decoder goes by the content.
    static func expand(_ arguments: [String]) throws -> [String] {
        var paths: [String] = []
        for argument in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory), isDirectory.boolValue else {
                paths.append(argument)
                continue
            }
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: argument) } catch {
                throw OperatorError(.unreadable, path: argument, problem: "cannot list the folder (\(error.localizedDescription))", hint: "check its permissions")
            }
            let images = names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".heatmap.png") && ImageDecoder.hasImageExtension(URL(fileURLWithPath: $0)) }
                .sorted().map { (argument as NSString).appendingPathComponent($0) }
                .filter { var folder: ObjCBool = false; return !(FileManager.default.fileExists(atPath: $0, isDirectory: &folder) && folder.boolValue) }
            guard !images.isEmpty else {
                throw OperatorError(.empty, path: argument, problem: "the folder holds no .png, .jpg, .jpeg, .bmp, .tif or .tiff file",
                                 hint: "name the images, or pass the folder that holds them (subfolders are not searched)")
            }
            paths += images
        }
        return paths
    }

    /// The output names of one run, as rstpmd's: `<name>.heatmap.png` and `<name>.json`, `<name>`
    /// the input's file name, or `<stem>-N.<ext>` when an earlier input of the run took that name
    /// or one of the two outputs would be an input. Nothing the run writes replaces an input or
    /// another of its outputs.
    struct OutputNames {
        let outFolder: String
        let inputPaths: Set<String>
        var taken: Set<String> = []

        init(outFolder: URL, inputs: [String]) {
            self.outFolder = Self.resolved(outFolder.path)
            inputPaths = Set(inputs.map(Self.resolved))
        }

        static func resolved(_ path: String) -> String {
            URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        }

        mutating func take(for input: String) -> String {
            let name = (input as NSString).lastPathComponent
            let stem = (name as NSString).deletingPathExtension
            let ext = (name as NSString).pathExtension
            var index = 0
            while true {
                let candidate = index == 0 ? name : fittingFileName("\(stem)-\(index)", suffix: ext.isEmpty ? "" : "." + ext)
                index += 1
                let outputs = [fittingFileName(candidate, suffix: ".heatmap.png"), fittingFileName(candidate, suffix: ".json")]
                if taken.contains(candidate) || outputs.contains(where: { inputPaths.contains(Self.resolved(outFolder + "/" + $0)) }) { continue }
                taken.insert(candidate)
                return candidate
            }
        }
    }

    /// `--category`: `rstpm eval`'s own evaluation of the category (its tables printed, the
    /// category's report written as evaluation.json).
    private func evaluate(model: RSTPMModel, category: String, outFolder: URL) throws {
        let eval = try EvalCommand.parse(["--data", category, "--model", self.model, "--batch-size", "\(batchSize)"])
        let report = try eval.evaluate(model: model, modelPath: self.model, category: try MVTecCategory(root: URL(fileURLWithPath: category)))
        for map in report.maps { print(map.table.rendered(), terminator: "\n\n") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: outFolder.appendingPathComponent("evaluation.json"))
    }
}
