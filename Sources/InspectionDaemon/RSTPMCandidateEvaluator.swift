import ContinuousLearning
import DaemonSupport
import Foundation
import SystemPackage

/// The learning gate's scores from a real RSTPM bundle: each image goes through the same
/// `RSTPMInspector` path as an inspected input (decode, batch, Eq. 1 score), at the bundle's
/// own calibrated threshold. An image that cannot be read or decoded scores NaN and the gate
/// leaves it out.
public final class RSTPMCandidateEvaluator: CandidateEvaluator {
    public let weightsDirectory: URL
    public let batchSize: Int
    let files = FileOperations(syscalls: SystemCalls())

    public init(weightsDirectory: URL, batchSize: Int = 4) {
        self.weightsDirectory = weightsDirectory
        self.batchSize = batchSize
    }

    public func scores(bundle: FilePath, images: [FilePath]) throws -> BundleScores {
        let inspector = try RSTPMInspector(bundle: bundle, weightsDirectory: weightsDirectory)
        var scores: [Float] = []
        for start in stride(from: 0, to: images.count, by: batchSize) {
            var inputs: [InspectionInput] = []
            var unreadable: Set<Int> = []
            for (offset, path) in images[start..<min(start + batchSize, images.count)].enumerated() {
                if let bytes = try? files.readFile(path, maximumBytes: 256 << 20) {
                    inputs.append(InspectionInput(fileName: path.lastComponent?.string ?? "", path: path, bytes: bytes))
                } else {
                    unreadable.insert(offset)
                }
            }
            var results = inspector.inspect(inputs).makeIterator()
            for offset in 0..<min(batchSize, images.count - start) {
                if unreadable.contains(offset) {
                    scores.append(.nan)
                } else if case .success(let outcome)? = results.next() {
                    scores.append(outcome.score)
                } else {
                    scores.append(.nan)
                }
            }
        }
        return BundleScores(scores: scores, threshold: inspector.model.threshold)
    }
}
