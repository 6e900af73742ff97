import ContinuousLearning
import DaemonSupport
import Foundation
import Logging
import SystemPackage

/// What one pass over a line did; tests and the status line read it.
public struct PassSummary: Sendable, Equatable {
    public var claimed = 0
    public var claimsLost = 0
    public var decided = 0
    public var quarantined = 0
    public var retrying = 0
    /// Inputs left in this instance's work directory after the pass.
    public var queueDepth = 0

    public init() {}
}

/// Claims, inspects and disposes of one line's inputs. Everything runs on `queue`; the public
/// methods that take `now` are synchronous so tests can drive them step by step.
///
/// The instance's work directory (`<work>/<instance>`) is the queue: a claimed file stays there
/// until its outputs are durable and it has been archived, deleted, left or quarantined. A
/// transient error (ENOSPC, EIO, ...) leaves it there to retry with backoff; a restart finds it
/// there again. Nothing is deleted on error.
///
/// Three stages overlap, so that decoding, PNG work and fsync waits hide behind the network:
/// the next batch is read and prepared (decoded) on `prepareQueue`, the current one is inspected
/// on `queue`, and the previous one's outputs (heatmap render and encode, durable writes,
/// disposal) are written on `outputQueue`. One batch at most is in each stage; every pass waits
/// for all of them before it returns, and a batch's inputs stay in work/ (so a crash recovers
/// them) and out of later batches until they are disposed of.
///
/// This file holds the state, watching, model swap, watchdog progress and the pass; the rest is
/// in extensions: intake (`+Inbox`), the stages (`+Stages`), verdicts, quarantine and disposal
/// (`+Outcomes`), retries (`+Retry`), crash recovery (`+Recovery`), and the disk-space floor
/// and retention (`+Space`). The state those read is therefore internal, not private.
public final class LinePipeline {
    public let configuration: LineConfiguration
    public let instance: String
    public let workDirectory: FilePath
    public let queue: DispatchQueue
    public let scanner: InboxScanner
    /// Replaced between batches when the line's model store switches version.
    private(set) var inspector: any Inspector
    let files: FileOperations
    let metrics: MetricsRegistry
    var logger: Logger
    let clock: () -> Int64
    /// Copies low-scoring `ok` images to accepted/ (learning's auto-acceptance), or nil.
    let autoAcceptor: AutoAcceptor?

    struct Retry { var attempts: Int; var notBefore: Int64 }
    /// Written by both queues; under `stateLock`.
    var retries: [String: Retry] = [:]
    /// The same for inputs whose names are not UTF-8, by the names' bytes; under `stateLock`.
    var undecodableRetries: [FilePath.Component: Retry] = [:]
    /// Inputs in work/ that were in flight when the daemon crashed, with how many times; each is
    /// inspected alone, and one found at `crashLimit` crashes is quarantined. Under `stateLock`.
    var crashCounts: [String: Int] = [:]
    /// An input in flight at this many crashes is not tried again.
    static let crashLimit = 2
    /// Inputs in work/ that could not be decoded at the first look, waiting for the second;
    /// under `stateLock`.
    var secondLooks: [String: SecondLook] = [:]
    /// The second look waits until the input has stayed unchanged this long: four settle
    /// intervals, for writers that pause longer than one. Without a settle interval files are
    /// complete when they appear, and the first look is the last.
    let secondLookNanoseconds: Int64
    /// Serialises writes of the in-flight record.
    let inFlightRecordLock = NSLock()
    /// Inputs of the batches being prepared, inspected or written, and what `outputQueue` has
    /// done since the last drain; under `stateLock`.
    var inputsInFlight: Set<String> = []
    var outputSummary = PassSummary()
    let stateLock = NSLock()
    let outputQueue: DispatchQueue
    let prepareQueue: DispatchQueue
    private var stopRequested = false
    var timer: DispatchSourceTimer?
    var inotifySource: DispatchSourceRead?
    /// The inotify descriptor while watching (-1 otherwise); read only on `queue`.
    var inotifyDescriptor: Int32 = -1

    // Read from the watchdog check on another queue.
    let progressLock = NSLock()
    private var progressCounter: UInt64 = 0
    private var busy = false
    var lastQueueDepth = 0
    var pendingInspector: (any Inspector)?
    /// Why claims are paused for lack of space, or nil; under `progressLock`.
    var intakePause: String?
    /// Retention rounds run here, so that walking a large archive never delays inspection.
    let retentionQueue: DispatchQueue
    /// Under `progressLock`.
    var retentionRunning = false
    var retentionRequested = false
    var lastRetention: Int64?
    static let retentionIntervalNanoseconds: Int64 = 60 * 1_000_000_000

    public init(
        configuration: LineConfiguration, instance: String, inspector: any Inspector,
        syscalls: any Syscalls = SystemCalls(), metrics: MetricsRegistry = MetricsRegistry(),
        logger: Logger, clock: @escaping () -> Int64 = monotonicNanoseconds, autoAcceptor: AutoAcceptor? = nil
    ) {
        self.configuration = configuration
        self.instance = instance
        self.workDirectory = configuration.work.appending(instance)
        self.inspector = inspector
        self.files = FileOperations(syscalls: syscalls)
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "line"] = .string(configuration.name)
        logger[metadataKey: "model"] = .string("\(inspector.modelIdentity.identifier)@\(inspector.modelIdentity.version)")
        self.logger = logger
        self.clock = clock
        self.autoAcceptor = autoAcceptor
        self.secondLookNanoseconds = Int64(4 * configuration.settleIntervalSeconds * 1e9)
        self.queue = DispatchQueue(label: "rstpmd.line.\(configuration.name)")
        self.outputQueue = DispatchQueue(label: "rstpmd.line.\(configuration.name).outputs")
        self.prepareQueue = DispatchQueue(label: "rstpmd.line.\(configuration.name).prepare")
        self.retentionQueue = DispatchQueue(label: "rstpmd.line.\(configuration.name).retention", qos: .utility)
        self.scanner = InboxScanner(
            inbox: configuration.inbox, settleNanoseconds: Int64(configuration.settleIntervalSeconds * 1e9), syscalls: syscalls,
            leaveOutbox: configuration.processedInputs == .leave ? configuration.outbox : nil)
        declareMetrics()
    }

    /// Every series of this line that exists before its first input: the counters at 0, the
    /// model, the threshold, intake not paused, and the daemon's start as the last verdict.
    func declareMetrics() {
        let line = ["line": configuration.name]
        metrics.declare(line: configuration.name)
        recordModel(inspector)
        metrics.set("rstpmd_intake_paused", labels: line, to: 0)
        if metrics.gauge("rstpmd_last_verdict_timestamp_seconds", labels: line) == nil {
            metrics.set("rstpmd_last_verdict_timestamp_seconds", labels: line, to: Double(wallClockNanoseconds()) / 1e9)
        }
    }

    /// `rstpmd_model_info` and `rstpmd_threshold` for the model that serves the line.
    func recordModel(_ inspector: any Inspector) {
        let identity = inspector.modelIdentity
        metrics.setInfo("rstpmd_model_info", labels: ["line": configuration.name, "model_id": identity.identifier, "version": identity.version,
                                                      "precision": identity.precision ?? "unknown"])
        if let threshold = configuration.thresholdOverride ?? inspector.modelThreshold {
            metrics.set("rstpmd_threshold", labels: ["line": configuration.name], to: Double(threshold))
        }
    }

    /// Creates this instance's work directory and reads what the last crash left, before the
    /// daemon installs its crash handlers again (a crash while other lines load their models
    /// must not be blamed on the inputs the previous run had in flight).
    public func prepare() throws {
        try files.createDirectories(workDirectory)
        accountForCrash()
    }

    // MARK: watching

    /// Starts the poll timer and, where the file system supports it, inotify.
    public func start() {
        progressLock.lock(); stopRequested = false; progressLock.unlock()
        let timer = DispatchSource.makeTimerSource(queue: queue)
        let interval = DispatchTimeInterval.milliseconds(Int(configuration.pollIntervalSeconds * 1000))
        timer.schedule(deadline: .now(), repeating: interval, leeway: .milliseconds(50))
        timer.setEventHandler { [weak self] in self?.runPass() }
        timer.resume()
        self.timer = timer
        startInotify()
    }

    /// Stops watching and asks a running pass to stop after its current batch.
    public func requestStop() {
        timer?.cancel()
        inotifySource?.cancel()
        timer = nil
        inotifySource = nil
        progressLock.lock(); stopRequested = true; progressLock.unlock()
    }

    /// Blocks until the line's queue is idle or `timeout` passes; true when idle.
    public func waitUntilIdle(timeout: DispatchTime) -> Bool {
        let group = DispatchGroup()
        group.enter()
        queue.async { group.leave() }
        return group.wait(timeout: timeout) == .success
    }

    func runPass() {
        let summary = pass(now: clock())
        if summary.claimed + summary.decided + summary.quarantined > 0 {
            logger.debug("pass", metadata: ["claimed": "\(summary.claimed)", "decided": "\(summary.decided)", "queue": "\(summary.queueDepth)"])
        }
    }

    // MARK: model swap

    /// Serves `inspector` from the next batch on; the running batch finishes with the old one.
    /// Callable from any queue.
    public func replaceInspector(_ inspector: any Inspector) {
        progressLock.lock(); pendingInspector = inspector; progressLock.unlock()
    }

    /// The identity of the model that serves the next batch.
    public var modelIdentity: ModelIdentity {
        progressLock.lock(); defer { progressLock.unlock() }
        return (pendingInspector ?? inspector).modelIdentity
    }

    func takePendingInspector() {
        progressLock.lock()
        let pending = pendingInspector
        let old = inspector.modelIdentity
        if let pending { inspector = pending }
        pendingInspector = nil
        progressLock.unlock()
        guard let pending else { return }
        recordModel(pending)
        logger[metadataKey: "model"] = .string("\(pending.modelIdentity.identifier)@\(pending.modelIdentity.version)")
        logger.event(.modelSwapped, .notice, "now serving \(pending.modelIdentity.identifier)@\(pending.modelIdentity.version) (was \(old.identifier)@\(old.version))",
                             ["version": "\(pending.modelIdentity.version)", "previous_version": "\(old.version)"])
    }

    // MARK: watchdog

    /// A counter that moves whenever a batch or pass completes.
    public var progress: (counter: UInt64, busy: Bool) {
        progressLock.lock(); defer { progressLock.unlock() }
        return (progressCounter, busy)
    }

    /// Inputs in work/ waiting for their second look (`--once` waits for them).
    public var inputsAwaitingSecondLook: Int {
        stateLock.lock(); defer { stateLock.unlock() }
        return secondLooks.count
    }

    /// Inputs in this instance's work directory after the last pass.
    public var queueDepth: Int {
        progressLock.lock(); defer { progressLock.unlock() }
        return lastQueueDepth
    }

    func advance() {
        progressLock.lock(); progressCounter &+= 1; progressLock.unlock()
    }

    var shouldStop: Bool {
        progressLock.lock(); defer { progressLock.unlock() }
        return stopRequested
    }

    // MARK: one pass

    /// Scans the inbox, claims what is complete, and processes this instance's work directory.
    /// Call on `queue` (or from a test that owns the pipeline).
    @discardableResult
    public func pass(now: Int64) -> PassSummary {
        progressLock.lock(); busy = true; progressLock.unlock()
        CrashMarker.protectCurrentThread()
        defer {
            progressLock.lock(); busy = false; progressCounter &+= 1; progressLock.unlock()
        }
        var summary = PassSummary()
        // Claim one batch at a time (and one more for each batch inspected), so daemons sharing
        // the inbox share the work too.
        claimBatch(now: now, summary: &summary)
        processWork(now: now, summary: &summary) { self.claimBatch(now: now, summary: &$0) }
        finishOutputs(summary: &summary)
        return summary
    }

    /// Beside the instance's work directory, not in it: work/<instance> holds inputs only.
    var inFlightRecordPath: FilePath { configuration.work.appending(".rstpmd-\(instance)-in-flight.json") }

    /// Where `CrashMarker` leaves its mark for this line.
    public var crashMarkerPath: FilePath { configuration.work.appending(".rstpmd-\(instance)-crashed") }

}
