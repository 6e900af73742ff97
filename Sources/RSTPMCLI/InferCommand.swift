import ArgumentParser
import Backbones
import Checkpoints
import ContinuousLearning
import DaemonSupport
import Evaluation
import Foundation
import Imaging
import InspectionDaemon
import RSTPM
import TensorEngine

/// `rstpm infer`: anomaly maps and verdicts for images with a trained bundle.
struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "infer", abstract: "Inspect images with a trained model: heatmap PNG and JSON verdict per image.")

    @Option(help: "Model bundle directory written by `rstpm train`.")
    var model: String

    @Option(help: "Output folder for <name>.heatmap.png (heatmap) and <name>.json (verdict), <name> the image's file name as rstpmd names its outputs; an image whose name an earlier image of the run took, or whose outputs would replace an input, gets <stem>-1.<ext> (-2, ...).")
    var out: String

    @OptionGroup var engine: EngineOptions

    @Option(help: "Images per network batch.")
    var batchSize = 4

    @Flag(help: "Draw the score and the verdict into the heatmap's top-left corner.")
    var label = false

    @Option(help: "Also evaluate on CATEGORY/test (MVTec AD layout): image and pixel AUROC of the final, S-T and D maps.")
    var category: String?

    @Argument(help: "PNG or JPEG images.")
    var images: [String] = []

    func validate() throws {
        if images.isEmpty && category == nil { throw ValidationError("give at least one image or --category") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        engine.configureEngine()
        let model = try RSTPMModel.load(bundle: URL(fileURLWithPath: self.model), weightsDirectory: engine.weightsDirectory)
        var failures = 0
        let outFolder = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: outFolder, withIntermediateDirectories: true)
        var names = OutputNames(outFolder: outFolder, inputs: images)
        let modelIdentity = ModelIdentity(identifier: model.modelID, version: model.manifest.createdAt)
        let instance = ProcessInfo.processInfo.hostName
        for start in stride(from: 0, to: images.count, by: batchSize) {
            let paths = Array(images[start..<min(images.count, start + batchSize)])
            let decodeStart = Date()
            let received = wallClockNanoseconds()
            let decoded = try paths.map { try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: $0)) }
            let decodeMilliseconds = Date().timeIntervalSince(decodeStart) * 1000 / Double(paths.count)
            let results = model.inspect(images: decoded)
            for (path, (image, result)) in zip(paths, zip(decoded, results)) {
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
                    file: path, sha256: try sha256Hex(of: URL(fileURLWithPath: path)),
                    size: .init(bytes: Int(try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64 ?? 0), width: image.width, height: image.height),
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
        if let category { try evaluate(model: model, category: URL(fileURLWithPath: category), outFolder: outFolder) }
        if failures > 0 { throw ExitCode(1) }
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

    /// Image and pixel AUROC over a category's test set, for the final map and its two parts.
    private func evaluate(model: RSTPMModel, category: URL, outFolder: URL) throws {
        let dataset = try MVTecCategory(root: category)
        var scores: [[Float]] = [[], [], []], labels: [Int] = [], correct = 0
        var pixels = [PixelMetricsAccumulator](repeating: PixelMetricsAccumulator(width: model.inputWidth, height: model.inputHeight), count: 3)
        let started = Date()
        for start in stride(from: 0, to: dataset.testSamples.count, by: batchSize) {
            let samples = Array(dataset.testSamples[start..<min(dataset.testSamples.count, start + batchSize)])
            let results = model.inspect(images: try samples.map { try ImageNormalization.decode(contentsOf: $0.image, width: model.inputWidth, height: model.inputHeight) })
            for (sample, result) in zip(samples, results) {
                labels.append(sample.label)
                if result.isAnomalous == (sample.label == 1) { correct += 1 }
                // As `rstpm eval`: nearest resize, > 127 (so both evaluate alike).
                let mask = try sample.mask.map { try GroundTruthMask.load(contentsOf: $0, width: result.width, height: result.height) }
                for (index, (score, map)) in [(result.score, result.finalMap), (result.studentTeacherScore, result.studentTeacherMap),
                                              (result.discriminatorScore, result.discriminatorMap)].enumerated() {
                    scores[index].append(score)
                    try pixels[index].add(map: map, mask: mask)
                }
            }
        }
        var report: [String: Double] = ["test_images": Double(labels.count), "seconds": Date().timeIntervalSince(started),
                                        "threshold_accuracy": Double(correct) / Double(max(1, labels.count))]
        for (index, name) in ["final", "student_teacher", "discriminator"].enumerated() {
            report["\(name).image_auroc"] = try imageAUROC(scores: scores[index], labels: labels)
            report["\(name).pixel_auroc"] = try pixels[index].pixelAUROC()
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: outFolder.appendingPathComponent("evaluation.json"))
        for key in report.keys.sorted() { print("\(key)\t\(String(format: "%.4f", report[key]!))") }
    }
}
