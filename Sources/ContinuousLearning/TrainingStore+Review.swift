import DaemonSupport
import Foundation
import SystemPackage

/// What the review station reads about a training store without opening it for writing
/// (`open` tidies the folders; the station may only read them).
public struct TrainingStoreCounters: Sendable, Equatable {
    /// Accepted images taken in over the store's life.
    public var acceptedTotal: Int
    /// Accepted images taken in since the last gate decision.
    public var newImagesSinceTraining: Int
    /// A run was asked for (`rstpm retrain`) and not yet decided.
    public var retrainRequested: Bool
    /// A run is under way or was interrupted (its `attempt.json` exists).
    public var runInProgress: Bool
}

extension TrainingStore {
    /// The name an image gets in accepted/ (and in the store): `<sha256>.<ext>`. People's
    /// answers and `AutoAcceptor` use the same name, so the same image accepted twice is one file.
    public static func acceptedFileName(digest: String, originalName: String) -> String {
        storedName(digest: digest, originalName: originalName)
    }

    /// Reads the counters of the store at `root` without changing anything; nil when it has no index yet.
    public static func readCounters(root: FilePath, syscalls: any Syscalls = SystemCalls()) throws -> TrainingStoreCounters? {
        let files = FileOperations(syscalls: syscalls)
        let indexPath = root.appending("index.json")
        guard try syscalls.lstat(indexPath) != nil else { return nil }
        let index = try JSONDecoder().decode(Index.self, from: Data(try files.readFile(indexPath, maximumBytes: 256 << 20)))
        return TrainingStoreCounters(
            acceptedTotal: index.acceptedTotal, newImagesSinceTraining: index.acceptedTotal - index.trainedThrough,
            retrainRequested: try syscalls.lstat(root.appending(LearningLine.requestFileName)) != nil,
            runInProgress: try syscalls.lstat(root.appending(LearningLine.attemptFileName)) != nil)
    }
}

extension TrainingStore {
    /// The digests of the images the store at `root` holds, read without changing anything.
    public static func storedDigests(root: FilePath, syscalls: any Syscalls = SystemCalls()) throws -> Set<String> {
        let indexPath = root.appending("index.json")
        guard try syscalls.lstat(indexPath) != nil else { return [] }
        let bytes = try FileOperations(syscalls: syscalls).readFile(indexPath, maximumBytes: 256 << 20)
        return Set(try JSONDecoder().decode(Index.self, from: Data(bytes)).entries.map(\.sha256))
    }
}
