import ContinuousLearning
import DaemonSupport
import Foundation
import Logging
import Synchronization
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

/// One line, put together from its parts: the `InboxWatcher` notices complete files, the
/// `WorkQueue` claims them into this instance's work directory and keeps their retry and crash
/// state, the `BatchStages` prepare, inspect and write batches overlapped, `VerdictPolicy`
/// decides each image, and the `OutcomeWriter` writes verdicts, quarantines and disposes. The
/// model that serves is a `ServingModel`, swapped between batches. Passes run on `queue`; the
/// public methods that take `now` are synchronous so tests can drive them step by step.
///
/// This file holds the parts, the pass, model swap and watchdog progress; the disk-space floor
/// and retention are in `+Space`, crash recovery in `+Recovery`, claiming in `+Intake`.
public final class LinePipeline {
    public let configuration: LineConfiguration
    public let instance: String
    public let queue: DispatchQueue
    let watcher: InboxWatcher
    let workQueue: WorkQueue
    let writer: OutcomeWriter
    private(set) var stages: BatchStages!
    let model: ServingModel
    let files: FileOperations
    let metrics: MetricsRegistry
    var logger: Logger
    let clock: () -> Int64

    /// The watchdog's view: a counter that moves whenever a batch or pass completes, and
    /// whether a pass runs. Read from the watchdog check on another queue.
    private let progressState = Mutex<(counter: UInt64, busy: Bool)>((0, false))
    private let stopRequested = Mutex(false)

    struct SpaceState {
        /// Why claims are paused for lack of space, or nil.
        var intakePause: String?
        var retentionRunning = false
        var retentionRequested = false
        var lastRetention: Int64?
    }
    let space = Mutex(SpaceState())
    /// Retention rounds run here, so that walking a large archive never delays inspection.
    let retentionQueue: DispatchQueue
    static let retentionIntervalNanoseconds: Int64 = 60 * 1_000_000_000

    public init(
        configuration: LineConfiguration, instance: String, inspector: any Inspector,
        syscalls: any Syscalls = SystemCalls(), metrics: MetricsRegistry = MetricsRegistry(),
        logger: Logger, clock: @escaping () -> Int64 = monotonicNanoseconds, autoAcceptor: AutoAcceptor? = nil
    ) {
        let served = AnyInspector(inspector)
        self.configuration = configuration
        self.instance = instance
        self.model = ServingModel(served)
        self.files = FileOperations(syscalls: syscalls)
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "line"] = .string(configuration.name)
        logger[metadataKey: "model"] = .string("\(served.modelIdentity.identifier)@\(served.modelIdentity.version)")
        self.logger = logger
        self.clock = clock
        self.queue = DispatchQueue(label: "rstpmd.line.\(configuration.name)")
        self.retentionQueue = DispatchQueue(label: "rstpmd.line.\(configuration.name).retention", qos: .utility)
        let scanner = InboxScanner(
            inbox: configuration.inbox, settleNanoseconds: Int64(configuration.settleIntervalSeconds * 1e9), syscalls: syscalls,
            leaveOutbox: configuration.processedInputs == .leave ? configuration.outbox : nil)
        self.watcher = InboxWatcher(scanner: scanner, pollIntervalSeconds: configuration.pollIntervalSeconds, queue: queue, logger: logger)
        self.workQueue = WorkQueue(
            directory: configuration.work.appending(instance), inbox: configuration.inbox,
            inFlightRecordPath: configuration.work.appending(".rstpmd-\(instance)-in-flight.json"), lineName: configuration.name,
            settleIntervalSeconds: configuration.settleIntervalSeconds, files: files, metrics: metrics, logger: logger)
        self.writer = OutcomeWriter(configuration: configuration, instance: instance, workQueue: workQueue, model: model, files: files,
                                    metrics: metrics, logger: logger, autoAcceptor: autoAcceptor)
        stages = BatchStages(
            configuration: configuration, workQueue: workQueue, writer: writer, model: model, metrics: metrics, queue: queue,
            shouldStop: { [unowned self] in shouldStop }, advance: { [unowned self] in advance() },
            modelSwapped: { [unowned self] in modelSwapped(to: $0, from: $1) })
        declareMetrics()
    }

    public var scanner: InboxScanner { watcher.scanner }
    public var workDirectory: FilePath { workQueue.directory }
    var secondLookNanoseconds: Int64 { workQueue.secondLookNanoseconds }

    /// Every series of this line that exists before its first input: the counters at 0, the
    /// model, the threshold, intake not paused, and the daemon's start as the last verdict.
    func declareMetrics() {
        let line = ["line": configuration.name]
        metrics.declare(line: configuration.name)
        recordModel(model.current.inspector)
        metrics.set("rstpmd_intake_paused", labels: line, to: 0)
        if metrics.gauge("rstpmd_last_verdict_timestamp_seconds", labels: line) == nil {
            metrics.set("rstpmd_last_verdict_timestamp_seconds", labels: line, to: Double(wallClockNanoseconds()) / 1e9)
        }
    }

    /// `rstpmd_model_info` and `rstpmd_threshold` for the model that serves the line.
    func recordModel(_ inspector: AnyInspector) {
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

    /// Starts the watcher: a pass at every poll tick and after inotify events.
    public func start() {
        stopRequested.withLock { $0 = false }
        watcher.start { [weak self] in self?.runPass() }
    }

    /// Stops watching and asks a running pass to stop after its current batch.
    public func requestStop() {
        watcher.stop()
        stopRequested.withLock { $0 = true }
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

    var shouldStop: Bool { stopRequested.withLock { $0 } }

    // MARK: model swap

    /// Serves `inspector` from the next batch on; the running batch finishes with the old one.
    /// Callable from any queue.
    public func replaceInspector(_ inspector: any Inspector) {
        model.replace(with: AnyInspector(inspector))
    }

    /// The identity of the model that serves the next batch.
    public var modelIdentity: ModelIdentity { model.nextIdentity }

    /// On `queue`, between batches, with the outputs drained: the parts log the new model.
    private func modelSwapped(to new: AnyInspector, from old: ModelIdentity) {
        recordModel(new)
        let identity = new.modelIdentity
        let label = Logger.MetadataValue.string("\(identity.identifier)@\(identity.version)")
        logger[metadataKey: "model"] = label
        watcher.logger[metadataKey: "model"] = label
        workQueue.logger[metadataKey: "model"] = label
        writer.logger[metadataKey: "model"] = label
        logger.event(.modelSwapped, .notice, "now serving \(identity.identifier)@\(identity.version) (was \(old.identifier)@\(old.version))",
                     ["version": "\(identity.version)", "previous_version": "\(old.version)"])
    }

    // MARK: watchdog

    /// A counter that moves whenever a batch or pass completes, and whether a pass runs.
    public var progress: (counter: UInt64, busy: Bool) { progressState.withLock { $0 } }

    private func advance() {
        progressState.withLock { $0.counter &+= 1 }
    }

    /// Inputs in work/ waiting for their second look (`--once` waits for them).
    public var inputsAwaitingSecondLook: Int { workQueue.awaitingSecondLook }

    /// Inputs in this instance's work directory after the last pass.
    public var queueDepth: Int { workQueue.depth }

    // MARK: one pass

    /// Scans the inbox, claims what is complete, and processes this instance's work directory.
    /// Call on `queue` (or from a test that owns the pipeline).
    @discardableResult
    public func pass(now: Int64) -> PassSummary {
        progressState.withLock { $0.busy = true }
        CrashMarker.protectCurrentThread()
        defer { progressState.withLock { $0.busy = false; $0.counter &+= 1 } }
        var summary = PassSummary()
        // Claim one batch at a time (and one more for each batch inspected), so daemons sharing
        // the inbox share the work too.
        claimBatch(now: now, summary: &summary)
        stages.processWork(now: now, summary: &summary) { self.claimBatch(now: now, summary: &$0) }
        stages.finishOutputs(summary: &summary)
        return summary
    }

    /// Where `CrashMarker` leaves its mark for this line.
    public var crashMarkerPath: FilePath { configuration.work.appending(".rstpmd-\(instance)-crashed") }
}
