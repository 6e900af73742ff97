// ContinuousLearning: rstpmd keeps learning from images people accept as normal.
//
// Per line, images dropped into `accepted/` (by people, or by `AutoAcceptor` from low-scoring
// `ok` verdicts) go into a `TrainingStore`: deduplicated by SHA-256, split by digest into a
// training pool and a held-out pool, capped by reservoir sampling that reserves a share for the
// original training images. A `LearningLine` starts the trainer (an external `rstpm train`
// command) as a low-priority child process when enough new images arrived and the clock is in
// the configured window, or on request; the finished candidate goes through the gate (its
// false-reject rate on held-out normals and AUROC on known defects against the current model's,
// scored by a `CandidateEvaluator`), becomes the next version in the line's `ModelStore`, and is
// put into service by switching the store's `current` link. The daemon watches that link and
// swaps the model without a restart.
//
// Every file goes through `Syscalls` (this module holds the daemon's file-system layer), so the
// crash tests of the daemon apply here too.
import Foundation
import SystemPackage

/// A line's `learning:` settings in rstpmd.yaml.
public struct LearningConfiguration: Sendable, Equatable {
    /// Where people (or other systems) put images they confirmed normal.
    public var accepted: FilePath
    /// Known defective images; the gate compares AUROC on them when there are any.
    public var defects: FilePath?
    /// The training store's folder (index, pools, snapshot, request and attempt files).
    public var trainingStore: FilePath
    /// The images the first model was trained on; copied into the store at the first start.
    public var originals: FilePath?
    /// The trainer command, absolute program path first; `{data}` is replaced by the training
    /// snapshot folder and `{out}` by the candidate bundle folder.
    public var trainer: [String]
    /// Appended when a candidate folder from an interrupted run exists.
    public var resumeArguments: [String]
    /// Accepted images since the last run that make a run due inside the window.
    public var minimumNewImages: Int
    /// Local time in which due runs start; nil for any time.
    public var window: TimeWindow?
    public var storeSettings: TrainingStoreSettings
    public var gate: GatePolicy
    /// Versions kept in the model store (the current one is always kept).
    public var keepVersions: Int
    /// Copy `ok` images whose score is below this quantile of recent `ok` scores into
    /// accepted/; nil (the default) for none.
    public var autoAcceptQuantile: Double?
    /// Threads the trainer may use (`RSTPM_THREADS`, `OPENBLAS_NUM_THREADS`, `OMP_NUM_THREADS`).
    public var trainerThreads: Int
    /// First wait after a failed run; doubles per failure up to an hour.
    public var retryDelaySeconds: Double

    public init(
        accepted: FilePath, defects: FilePath? = nil, trainingStore: FilePath, originals: FilePath? = nil, trainer: [String],
        resumeArguments: [String] = ["--resume"], minimumNewImages: Int = 50, window: TimeWindow? = nil,
        storeSettings: TrainingStoreSettings = TrainingStoreSettings(), gate: GatePolicy = GatePolicy(), keepVersions: Int = 5,
        autoAcceptQuantile: Double? = nil, trainerThreads: Int = 1, retryDelaySeconds: Double = 60
    ) {
        self.accepted = accepted
        self.defects = defects
        self.trainingStore = trainingStore
        self.originals = originals
        self.trainer = trainer
        self.resumeArguments = resumeArguments
        self.minimumNewImages = minimumNewImages
        self.window = window
        self.storeSettings = storeSettings
        self.gate = gate
        self.keepVersions = keepVersions
        self.autoAcceptQuantile = autoAcceptQuantile
        self.trainerThreads = trainerThreads
        self.retryDelaySeconds = retryDelaySeconds
    }
}
