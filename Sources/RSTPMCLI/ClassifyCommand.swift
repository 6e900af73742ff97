import ArgumentParser
import Backbones
import Foundation
import Imaging
import RSTPM
import TensorEngine

/// `rstpm classify`: ImageNet top-5 of images with a pretrained backbone (a check that the
/// weights and the engine work end to end).
struct ClassifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "classify", abstract: "Print the top-5 ImageNet classes of images.")

    @Option(help: "Backbone: \(BackboneKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backbone: BackboneKind = .efficientNetLite0

    @Option(help: "Checkpoint file (default: the backbone's file in the weights directory).")
    var weights: String?

    @OptionGroup var engine: EngineOptions

    @OptionGroup var precision: PrecisionOptions

    @Argument(help: "Images (PNG, JPEG, BMP or TIFF).")
    var images: [String]

    func validate() throws {
        if images.isEmpty { throw ValidationError("give at least one image") }
    }

    func run() throws {
        engine.configureEngine()
        precision.configureEngine()
        let checkpoint = weights.map { URL(fileURLWithPath: $0) }
            ?? engine.weightsDirectory.appendingPathComponent(backbone.defaultCheckpointFileName)
        guard FileManager.default.fileExists(atPath: checkpoint.path) else {
            throw ValidationError("\(checkpoint.path) does not exist: run `rstpm weights fetch` (or pass --weights FILE)")
        }
        let network = try Backbone.pretrained(kind: backbone, checkpoint: checkpoint)
        network.setMode(.inference)
        network.foldBatchNorm()
        let size = backbone.nativeResolution
        for path in images {
            let input = try ModelInput.prepare(ImageDecoder.read(URL(fileURLWithPath: path)), name: path, width: size, height: size)
            let logits = network.logits(ModelInput.batch([input]))
            print(path)
            for (rank, entry) in topClasses(logits: logits.scalars, count: 5).enumerated() {
                let name = imageNetClassNames[entry.index].padding(toLength: 32, withPad: " ", startingAt: 0)
                print("  \(rank + 1). " + String(format: "%4d", entry.index) + " \(name) " + String(format: "%.4f", entry.probability))
            }
        }
    }
}
