import ArgumentParser
import Backbones
import Evaluation
import Foundation
import Imaging
import RSTPM
import TensorEngine

/// `rstpm eval`: the paper's metrics of a trained model on the test set of one or more
/// categories (MVTec AD layout), for the S-T map, the discriminator map and the full Eq. 1 map;
/// optionally an HTML report with report.json.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate trained models on MVTec AD categories: image AUROC, pixel AUROC, AUPRO, F1-max.",
        discussion: """
        Pair each --data CATEGORY_DIR with a --model MODEL_DIR in order (one model per product), or give one \
        --model for every --data. With several categories a mean row per map is printed, as in the paper's tables.
        """
    )

    @Option(name: .customLong("model"), help: "Model bundle directory written by `rstpm train` (repeat, one per --data).")
    var models: [String] = []

    @Option(name: .customLong("data"), help: "Category folder of the MVTec AD layout: test/<type>/, ground_truth/<type>/ (repeatable).")
    var categories: [String] = []

    @Option(help: "Write index.html (self-contained), report.json and scores.csv into this folder.")
    var report: String?

    @OptionGroup var engine: EngineOptions

    @OptionGroup var precision: PrecisionOptions

    @Option(help: "Images per network batch (the time per image is the batch's time divided by its size).")
    var batchSize = 1

    @Option(help: "Good and defective worst cases shown in the report's image rows, each (a large number shows every test image).")
    var worst = 4

    @Option(help: "False positive rate up to which the PRO curve is integrated.")
    var fprLimit = 0.3

    func validate() throws {
        if categories.isEmpty { throw ValidationError("give at least one --data CATEGORY_DIR") }
        if models.isEmpty { throw ValidationError("give a --model MODEL_DIR (one for all categories, or one per --data)") }
        if models.count != 1 && models.count != categories.count {
            throw ValidationError("\(models.count) --model for \(categories.count) --data: give one model, or one per category in the same order")
        }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if worst < 0 { throw ValidationError("--worst must not be negative") }
        if !(fprLimit > 0 && fprLimit <= 1) { throw ValidationError("--fpr-limit must be in (0, 1]") }
    }

    func run() throws {
        engine.configureEngine()
        let precision = self.precision.configureEngine()
        print("precision \(precision.rawValue) (inference convolutions; f32 is the reference)\n")
        let weightsDirectory = engine.weightsDirectory
        // List every data set first: a wrong folder should fail before minutes of inference.
        let datasets = try categories.map { try MVTecCategory(root: URL(fileURLWithPath: $0)) }
        var loaded: [String: RSTPMModel] = [:]
        var reports: [CategoryReport] = []
        for (index, dataset) in datasets.enumerated() {
            let modelPath = models.count == 1 ? models[0] : models[index]
            let model = try loaded[modelPath] ?? RSTPMModel.load(bundle: URL(fileURLWithPath: modelPath), weightsDirectory: weightsDirectory)
            loaded[modelPath] = model
            let category = try evaluate(model: model, modelPath: modelPath, category: dataset)
            reports.append(category)
            for map in category.maps { print(map.table.rendered(), terminator: "\n\n") }
            let timing = category.timing
            print(String(format: "inference time per image: mean %.1f ms, median %.1f ms, p95 %.1f ms (%@)",
                         timing.meanMilliseconds, timing.medianMilliseconds, timing.p95Milliseconds, timing.note))
            print("threshold \(model.threshold) (\(model.manifest.threshold.statement))")
            if let point = category.operatingPoint { print(point.headline) }
            print("")
        }
        let evaluation = EvaluationReport(title: "rstpm eval: " + reports.map(\.category).joined(separator: ", "), categories: reports,
                                          precision: precision.rawValue)
        for table in evaluation.summaries { print(table.rendered(), terminator: "\n\n") }
        if let report {
            try HTMLReport.write(evaluation, to: URL(fileURLWithPath: report))
            print("report written to \(report)/\(HTMLReport.pageFileName), \(HTMLReport.jsonFileName) and \(HTMLReport.csvFileName)")
        }
    }

    /// Inspects every test image, timing decode + preprocessing + networks per image.
    private var showsProgress: Bool { isatty(STDERR_FILENO) != 0 }

    func evaluate(model: RSTPMModel, modelPath: String, category: MVTecCategory) throws -> CategoryReport {
        var builder = CategoryReportBuilder(category: category, mapNames: ["S-T", "D", "full"], width: model.inputWidth,
                                            height: model.inputHeight, modelPath: modelPath, modelID: model.modelID,
                                            threshold: ImageScore.decimal(model.threshold), thresholdStatement: model.manifest.threshold.statement,
                                            fprLimit: fprLimit)
        let samples = category.testSamples
        for start in stride(from: 0, to: samples.count, by: batchSize) {
            let batch = Array(samples[start..<min(samples.count, start + batchSize)])
            let decodeStart = Date()
            let inputs = try batch.map { try model.prepare(ImageDecoder.read($0.image), name: $0.image.path) }
            let decodeMilliseconds = Date().timeIntervalSince(decodeStart) * 1000 / Double(batch.count)
            for (sample, result) in zip(batch, model.inspect(inputs)) {
                let milliseconds = decodeMilliseconds + result.networkMilliseconds
                try builder.add(sample: sample, maps: [result.studentTeacherMap, result.discriminatorMap, result.finalMap],
                                scores: [result.studentTeacherScore, result.discriminatorScore, result.score], milliseconds: milliseconds)
            }
            // A progress line only on a terminal: in a log a carriage return glues the counts together.
            if showsProgress { FileHandle.standardError.write(Data("\r\(category.name): \(builder.count)/\(samples.count) images".utf8)) }
        }
        if showsProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        let note = "decode + resize + networks, batch \(batchSize), \(Engine.threadCount) threads"
        return try builder.build(timingNote: note, worstCount: worst)
    }
}
