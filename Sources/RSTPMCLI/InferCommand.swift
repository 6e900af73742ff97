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
        let modelIdentity = ModelIdentity(identifier: model.modelID, version: model.manifest.createdAt, precision: Engine.precision.rawValue)
        let instance = ProcessInfo.processInfo.hostName
        for start in stride(from: 0, to: inputs.count, by: batchSize) {
            let decodeStart = Date()
            let received = wallClockNanoseconds()
            // One unreadable or undecodable file is reported and skipped; the others go on.
            var batch: [DecodedInput] = []
            for path in inputs[start..<min(inputs.count, start + batchSize)] {
                do {
                    batch.append(try DecodedInput(path: path, width: model.inputWidth, height: model.inputHeight))
                } catch {
                    skipped += 1
                    FileHandle.standardError.write(Data("skipped \(error)\n".utf8))
                }
            }
            guard !batch.isEmpty else { continue }
            let decodeMilliseconds = Date().timeIntervalSince(decodeStart) * 1000 / Double(batch.count)
            let results = model.inspect(images: batch.map(\.modelInput))
            for (input, result) in zip(batch, results) {
                let path = input.path, image = input.original
                // As rstpmd's inference_failure: a model that yields NaN or infinity has no
                // verdict to give (JSON cannot even hold the score); say so, naming the model.
                guard result.score.isFinite, result.finalMap.allSatisfy(\.isFinite) else {
                    failures += 1
                    let message = "\(path): inference_failure: the anomaly map is not finite (score \(result.score)) with model \(model.modelID) (\(self.model))"
                    FileHandle.standardError.write(Data((message + "; hint: the model's weights hold NaN or infinity, retrain it\n").utf8))
                    continue
                }
                let name = names.take(for: path)
                let heatmapName = fittingFileName(name, suffix: ".heatmap.png")
                let heatmapStart = Date()
                let scale: ClosedRange<Float> = 0...max(2 * result.threshold, .leastNormalMagnitude)
                var heatmap = Heatmap.render8(map: result.finalMap, mapWidth: result.width, mapHeight: result.height, over: image,
                                              threshold: result.threshold, scale: scale)
                if label {
                    Heatmap.drawLabel(score: result.score, threshold: result.threshold, isDefect: result.isAnomalous,
                                      into: &heatmap, width: image.width, height: image.height)
                }
                let png = try PNGEncoder.encode(rgb8: heatmap, width: image.width, height: image.height, text: Heatmap.textChunks(
                    model: model.modelID, score: result.score, threshold: result.threshold, isDefect: result.isAnomalous, scale: scale))
                let heatmapMilliseconds = Date().timeIntervalSince(heatmapStart) * 1000
                let writeStart = Date()
                try png.write(to: outFolder.appendingPathComponent(heatmapName))
                let writeMilliseconds = Date().timeIntervalSince(writeStart) * 1000
                // rstpmd's verdict (docs/verdict.md), encoded by the same code.
                let (regions, truncated) = RegionExtractor.regions(
                    map: result.finalMap, mapWidth: result.width, mapHeight: result.height,
                    imageWidth: image.width, imageHeight: image.height, threshold: result.threshold)
                let verdict = Verdict(
                    file: path, sha256: sha256Hex(of: input.bytes),
                    size: .init(bytes: input.bytes.count, width: image.width, height: image.height),
                    receivedAt: iso8601(nanosecondsSinceEpoch: received), decidedAt: iso8601(nanosecondsSinceEpoch: wallClockNanoseconds()),
                    line: "rstpm-infer", instance: instance, model: modelIdentity, verdict: result.isAnomalous ? .defect : .ok,
                    score: result.score, threshold: .init(value: result.threshold, source: .model),
                    regions: regions, regionsTruncated: truncated, heatmap: heatmapName,
                    timingsMilliseconds: .init(decode: decodeMilliseconds, infer: result.timings.preprocessMilliseconds + result.timings.networkMilliseconds,
                                               heatmap: heatmapMilliseconds, write: writeMilliseconds),
                    error: nil)
                try Data(verdict.encoded()).write(to: outFolder.appendingPathComponent(fittingFileName(name, suffix: ".json")))
                print("\(path)\t\(verdict.verdict.rawValue)\tscore \(result.score)\tthreshold \(result.threshold)")
            }
        }
        if let category { try evaluate(model: model, category: category, outFolder: outFolder) }
        if skipped > 0 {
            FileHandle.standardError.write(Data("\(skipped) of \(inputs.count) image(s) skipped (see above); exit status 1\n".utf8))
        }
        if failures > 0 || skipped > 0 { throw ExitCode(1) }
    }

    /// One input read once: its bytes (hashed for the verdict), the model's input decoded as
    /// training and `eval` decode it (a large JPEG DCT-scaled towards the input size), and the
    /// full-size original the heatmap is drawn over (the same image for every other file).
    struct DecodedInput {
        let path: String
        let bytes: [UInt8]
        let modelInput: RGBImage
        let original: RGBImage

        init(path: String, width: Int, height: Int) throws {
            let url = URL(fileURLWithPath: path)
            self.path = path
            bytes = [UInt8](try ImageDecoder.read(url))
            modelInput = try ImageNormalization.decode(contentsOf: url, width: width, height: height)
            original = bytes.first == 0xFF ? try ImageDecoder.decode(data: Data(bytes), name: path) : modelInput
        }
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
