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
import Logging
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

/// rstpmd's journal events, the daemon's and learning's alike. Each has a fixed 128-bit
/// MESSAGE_ID, so operators can select one kind with `journalctl MESSAGE_ID=...` whatever the
/// message text says; journald consumers depend on them, so they never change.
public enum JournalEvent: String, CaseIterable, Sendable {
    // The daemon's lines and service.
    case started = "be66c60759b14810b48cf8db62453298"
    case verdict = "7cfe5971ae814086862510b581359fab"
    case quarantined = "7bc0243fd47d4a4dae5d0eb250777a3a"
    case retrying = "9bdb7eb8048b440daf715220125063c3"
    /// Not decodable at the first look; looked at again once it stays unchanged.
    case secondLook = "3d3ee6a638344a0fab65d9c67629639e"
    case claimLost = "31d2acc80bf1480a8f69bd34d6469ad4"
    case recovered = "945e0543389c4779bde38b46a8492ea6"
    case reloaded = "bf822c631eab460eb1e8a3191fa21ef4"
    case reloadFailed = "b1d11b61f09e4666926ddb2d5b6bf421"
    case stopping = "23a54459597e4582ab0c57039a57a152"
    case watcherFailed = "467c635b6d3a47fe94dee7aa4334462d"
    case metricsFailed = "0090dbb0f521432fae100eb09c1ce031"
    case ignoredEntry = "acc667b9209a4bd8bbc40a1470c3714e"

    // Continuous learning.
    case accepted = "8981890d098f44b98472c8372cf93f3d"
    case trainingStarted = "725090e5dacd4ba2a6fb77cf0a414788"
    case trainingProgress = "dcb149832fdc4603a4d3410c7ae02c40"
    case trainingFailed = "ecd57e9ed29c4be69ff57784f508bdb6"
    case gateAccepted = "ced21c2b65954d2eb15aff6c092bff83"
    case gateRejected = "aae1231617344618805aefa5158929b2"
    case modelSwapped = "3879078299f5465fbbd298f41bfc501a"
    case learningFailed = "07ede1a81a214950b88b034fb2fb44ce"

    /// The metadata value for the `MESSAGE_ID` journal field.
    public var messageID: Logger.MetadataValue { .string(rawValue) }
}

extension Logger {
    /// Logs one journal event with its MESSAGE_ID and structured fields.
    public func event(_ event: JournalEvent, _ level: Logger.Level, _ message: @autoclosure () -> Logger.Message, _ fields: Logger.Metadata = [:],
                      file: String = #fileID, function: String = #function, line: UInt = #line) {
        var metadata = fields
        metadata["MESSAGE_ID"] = event.messageID
        log(level: level, message(), metadata: metadata, file: file, function: function, line: line)
    }
}
