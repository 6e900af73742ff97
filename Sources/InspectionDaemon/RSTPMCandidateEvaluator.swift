import ContinuousLearning
import DaemonSupport
import Foundation
import RSTPM
import SystemPackage

/// The learning gate's scores from a real RSTPM bundle: each image goes through the model's one
/// entry point (`RSTPMModel.prepare`, then `inspect` in batches), as an inspected input does in
/// rstpmd, with the daemon's image limits, at the bundle's own calibrated threshold. An image
/// that cannot be read or decoded, or whose map is not finite, scores NaN and the gate leaves it out.
public final class RSTPMCandidateEvaluator: CandidateEvaluator {
    public let weightsDirectory: URL
    public let batchSize: Int
    let files = FileOperations(syscalls: SystemCalls())

    public init(weightsDirectory: URL, batchSize: Int = 4) {
        self.weightsDirectory = weightsDirectory
        self.batchSize = batchSize
    }

    public func scores(bundle: FilePath, images: [FilePath]) throws -> BundleScores {
        // Loaded as rstpmd loads a line's model, so a refusal reads the same.
        let inspector = try RSTPMInspector(bundle: bundle, weightsDirectory: weightsDirectory)
        let model = inspector.model
        var scores: [Float] = []
        for start in stride(from: 0, to: images.count, by: batchSize) {
            let prepared = images[start..<min(start + batchSize, images.count)].map { path -> ModelInput? in
                guard let bytes = try? files.readFile(path, maximumBytes: 256 << 20) else { return nil }
                return try? model.prepare(bytes, name: path.string, limits: inspector.imageLimits)
            }
            var inspections = model.inspect(prepared.compactMap { $0 }).makeIterator()
            for input in prepared {
                guard input != nil, let inspection = inspections.next() else { scores.append(.nan); continue }
                scores.append(inspection.score.isFinite && inspection.finalMap.allSatisfy(\.isFinite) ? inspection.score : .nan)
            }
        }
        return BundleScores(scores: scores, threshold: model.threshold)
    }
}
