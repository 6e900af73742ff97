import DaemonSupport
import Foundation
import SystemPackage

/// Auto-acceptance (off by default): copies an `ok` image into accepted/ when its score is below
/// the configured quantile of the line's recent `ok` scores, so the store follows slow drift
/// without anyone sorting images. Only clearly normal images qualify: those near the threshold
/// never do. Thread-safe.
public final class AutoAcceptor: @unchecked Sendable {
    public let accepted: FilePath
    public let quantile: Double
    /// Recent `ok` scores the quantile is taken over.
    public let windowSize: Int
    /// No image is accepted before this many `ok` scores were seen.
    public let minimumObservations: Int
    let files: FileOperations
    private let lock = NSLock()
    private var recent: [Float] = []
    private var next = 0

    public init(accepted: FilePath, quantile: Double, windowSize: Int = 1000, minimumObservations: Int = 100, syscalls: any Syscalls = SystemCalls()) {
        precondition(quantile > 0 && quantile < 1 && windowSize > 0, "invalid auto-acceptance settings")
        self.accepted = accepted
        self.quantile = quantile
        self.windowSize = windowSize
        self.minimumObservations = min(minimumObservations, windowSize)
        self.files = FileOperations(syscalls: syscalls)
    }

    /// Records an `ok` score and copies the image when it qualifies. Returns whether it did.
    @discardableResult
    public func consider(fileName: String, bytes: [UInt8], sha256: String, score: Float) throws -> Bool {
        lock.lock()
        let qualifies = recent.count >= minimumObservations && score < Self.quantile(recent, quantile)
        if recent.count < windowSize { recent.append(score) } else { recent[next] = score }
        next = (next + 1) % windowSize
        lock.unlock()
        guard qualifies else { return false }
        try files.writeDurably(bytes, to: accepted.appending(TrainingStore.storedName(digest: sha256, originalName: fileName)))
        return true
    }

    /// The `q` quantile of `values` (the lower of the two neighbours, no interpolation).
    static func quantile(_ values: [Float], _ q: Double) -> Float {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
    }
}
