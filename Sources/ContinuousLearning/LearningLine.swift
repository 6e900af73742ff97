import DaemonSupport
import Foundation
import Logging
import SystemPackage

/// What one `tick` did.
public struct LearningTick: Sendable, Equatable {
    public var ingest = IngestSummary()
    /// A trainer child was started by this tick.
    public var startedTraining = false
    /// It was started with the resume arguments (an interrupted candidate existed).
    public var resumed = false
    /// Why no run started (nil when one started or one is running).
    public var waiting: String?

    public init() {}
}

/// A run in progress, kept in `<training store>/attempt.json` until the gate decides, so that a
/// daemon restarted after a crash resumes it (and stops a trainer it left behind).
struct TrainingAttempt: Codable, Equatable {
    var attempts: Int
    /// The store's accepted count when the snapshot was taken.
    var snapshotThrough: Int
    var snapshotImages: Int
    var startedAt: String
    var processID: Int32?
    var processStartTicks: UInt64?

    enum CodingKeys: String, CodingKey {
        case attempts
        case snapshotThrough = "snapshot_through"
        case snapshotImages = "snapshot_images"
        case startedAt = "started_at"
        case processID = "process_id"
        case processStartTicks = "process_start_ticks"
    }
}

/// One line's learning cycle: ingest accepted images, start the trainer when due, gate the
/// candidate, number it, put it into service when it passes. Everything runs on `queue`; the
/// public methods hop onto it, so the daemon's housekeeping and tests can call them.
public final class LearningLine: @unchecked Sendable {
    public let lineName: String
    public let configuration: LearningConfiguration
    public let models: ModelStore
    public let store: TrainingStore
    public let queue: DispatchQueue
    let evaluator: any CandidateEvaluator
    let files: FileOperations
    let logger: Logger
    let clock: () -> Date
    let timeZone: TimeZone

    private var trainer: TrainerProcess?
    /// Set by `stop`: the trainer's end is then expected, not a failure.
    private var stopping = false
    private var failures = 0
    private var notBefore: Date?
    // Read by the status line from other queues.
    private let statusLock = NSLock()
    private var statusText = ""
    private var lastProgressLog = Date.distantPast

    public static let requestFileName = "retrain.request"
    static let attemptFileName = "attempt.json"

    public init(lineName: String, configuration: LearningConfiguration, modelStore: FilePath, evaluator: any CandidateEvaluator,
                syscalls: any Syscalls = SystemCalls(), logger: Logger, clock: @escaping () -> Date = Date.init,
                timeZone: TimeZone = .current, randomBelow: @escaping (Int) -> Int = { Int.random(in: 0..<$0) }) {
        self.lineName = lineName
        self.configuration = configuration
        self.models = ModelStore(root: modelStore, syscalls: syscalls)
        self.store = TrainingStore(root: configuration.trainingStore, settings: configuration.storeSettings, syscalls: syscalls, randomBelow: randomBelow)
        self.evaluator = evaluator
        self.files = FileOperations(syscalls: syscalls)
        var logger = logger
        logger[metadataKey: "line"] = .string(lineName)
        self.logger = logger
        self.clock = clock
        self.timeZone = timeZone
        self.queue = DispatchQueue(label: "rstpmd.learning.\(lineName)")
    }

    var requestPath: FilePath { configuration.trainingStore.appending(Self.requestFileName) }
    var attemptPath: FilePath { configuration.trainingStore.appending(Self.attemptFileName) }

    /// Opens the stores (seeding the originals at the first start) and stops a trainer that a
    /// crashed daemon left running, so that the next run owns the candidate folder alone.
    public func prepare() throws {
        try queue.sync {
            try files.createDirectories(configuration.trainingStore)
            try files.createDirectories(configuration.accepted)
            try models.emptyTrash()
            try store.open()
            if let originals = configuration.originals, !store.isSeeded {
                let count = try store.seed(originals: originals)
                logger.event(.accepted, .notice, "training store seeded with \(count) original image(s)", ["image.path": "\(originals)", "count": "\(count)"])
            }
            if var attempt = readAttempt(), let processID = attempt.processID, let ticks = attempt.processStartTicks {
                if TrainerProcess.isRunning(processID: processID, startTicks: ticks) {
                    logger.event(.trainingFailed, .warning, "stopping trainer \(processID) left by a previous daemon; the run resumes", ["pid": "\(processID)"])
                    _ = kill(-processID, SIGKILL)
                    let deadline = Date().addingTimeInterval(10)
                    while TrainerProcess.isRunning(processID: processID, startTicks: ticks) && Date() < deadline { usleep(20_000) }
                }
                attempt.processID = nil
                attempt.processStartTicks = nil
                try writeAttempt(attempt)
            }
            setStatus(idleStatus())
        }
    }

    /// Asks for a run now, whatever the window and the count (`rstpm retrain`, SIGUSR1).
    public static func requestRetrain(trainingStore: FilePath, syscalls: any Syscalls = SystemCalls()) throws {
        try FileOperations(syscalls: syscalls).writeDurably(Array("requested \(iso8601Now())\n".utf8), to: trainingStore.appending(requestFileName))
    }

    /// Whether a run was requested and not yet decided.
    public var isRetrainRequested: Bool { (try? files.syscalls.lstat(requestPath)) != nil }

    /// Ingests accepted/, then starts the trainer if a run is due.
    @discardableResult
    public func tick() -> LearningTick {
        queue.sync { tickOnQueue() }
    }

    /// `tick` without waiting (the daemon's housekeeping).
    public func tickAsync() {
        queue.async { _ = self.tickOnQueue() }
    }

    /// The trainer's process id while one runs.
    public var trainerProcessID: pid_t? { queue.sync { trainer?.processID } }

    /// Waits until no trainer runs and its candidate has been decided; false on timeout.
    public func waitUntilIdle(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if queue.sync(execute: { trainer == nil }) { return true }
            usleep(10_000)
        }
        return false
    }

    /// One line for STATUS=.
    public var status: String {
        statusLock.lock(); defer { statusLock.unlock() }
        return statusText
    }

    /// SIGTERM to the trainer's group, SIGKILL after `timeout`; the candidate folder stays so the
    /// run resumes at the next start.
    public func stop(timeout: TimeInterval = 5) {
        guard let trainer = queue.sync(execute: { () -> TrainerProcess? in stopping = true; return trainer }) else { return }
        trainer.send(SIGTERM)
        if trainer.wait(timeout: .now() + timeout) == nil {
            trainer.send(SIGKILL)
            _ = trainer.wait(timeout: .now() + 5)
        }
        queue.sync {}
    }

    // MARK: on the queue

    private func tickOnQueue() -> LearningTick {
        var tick = LearningTick()
        do {
            tick.ingest = try store.ingest(from: configuration.accepted)
            let summary = tick.ingest
            if summary.added + summary.duplicates + summary.dropped > 0 {
                logger.event(.accepted, .info, "accepted \(summary.added) image(s) (\(summary.duplicates) duplicate(s), \(summary.dropped) not sampled, \(summary.evicted) replaced)", [
                    "added": "\(summary.added)", "duplicates": "\(summary.duplicates)", "dropped": "\(summary.dropped)",
                    "evicted": "\(summary.evicted)", "new_since_training": "\(store.newImagesSinceTraining)",
                ])
            }
        } catch {
            logger.event(.learningFailed, .error, "cannot take accepted images into the training store: \(error)", ["image.path": "\(configuration.accepted)"])
            // The index on disk is the truth; forget what this pass changed in memory.
            try? store.open()
        }
        guard trainer == nil, !stopping else { return tick }
        let now = clock()
        let attempt = readAttempt()
        let requested = isRetrainRequested
        if let notBefore, now < notBefore, !requested {
            tick.waiting = "retrying a failed run after \(iso8601(notBefore))"
        } else if !requested && !(configuration.window?.contains(now, timeZone: timeZone) ?? true) {
            tick.waiting = "outside the training window \(configuration.window!)"
        } else if !requested && attempt == nil && store.newImagesSinceTraining < configuration.minimumNewImages {
            tick.waiting = "\(store.newImagesSinceTraining) of \(configuration.minimumNewImages) new accepted images"
        } else {
            do {
                tick.resumed = try startTraining(continuing: attempt)
                tick.startedTraining = true
            } catch {
                recordFailure("cannot start training: \(error)")
                tick.waiting = "the trainer could not start"
            }
        }
        if !tick.startedTraining { setStatus(idleStatus()) }
        return tick
    }

    /// Returns whether it resumed an interrupted candidate.
    private func startTraining(continuing previous: TrainingAttempt?) throws -> Bool {
        var attempt: TrainingAttempt
        if var previous, try files.syscalls.lstat(store.snapshotPath) != nil {
            previous.attempts += 1
            attempt = previous
        } else {
            try models.discardCandidate()
            let images = try store.makeSnapshot()
            attempt = TrainingAttempt(attempts: 1, snapshotThrough: store.acceptedTotal, snapshotImages: images, startedAt: Self.iso8601Now())
        }
        let resume = try files.syscalls.lstat(models.candidatePath) != nil
        var arguments = configuration.trainer.map {
            $0.replacingOccurrences(of: "{data}", with: store.snapshotPath.string).replacingOccurrences(of: "{out}", with: models.candidatePath.string)
        }
        if resume { arguments += configuration.resumeArguments }
        let threads = "\(configuration.trainerThreads)"
        let process = try TrainerProcess(
            arguments: arguments, environment: ["RSTPM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads],
            onLine: { [weak self] line in self?.trainerSaid(line) },
            onExit: { [weak self] termination in
                guard let self else { return }
                self.queue.async { self.trainingEnded(termination) }
            })
        trainer = process
        attempt.processID = process.processID
        attempt.processStartTicks = TrainerProcess.startTime(of: process.processID)
        try writeAttempt(attempt)
        logger.event(.trainingStarted, .notice, "training started (\(resume ? "resuming" : "new") run, attempt \(attempt.attempts), \(attempt.snapshotImages) image(s))", [
            "pid": "\(process.processID)", "attempt": "\(attempt.attempts)", "images": "\(attempt.snapshotImages)", "resume": "\(resume)",
        ])
        setStatus("training (attempt \(attempt.attempts), \(attempt.snapshotImages) images)")
        return resume
    }

    private func trainerSaid(_ line: String) {
        let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return }
        setStatus("training: " + String(text.prefix(120)))
        // One progress line every 30 s to the journal at info; every line at debug.
        statusLock.lock()
        let now = Date()
        let loud = now.timeIntervalSince(lastProgressLog) >= 30
        if loud { lastProgressLog = now }
        statusLock.unlock()
        logger.event(.trainingProgress, loud ? .info : .debug, "trainer: \(text)")
    }

    private func trainingEnded(_ termination: TrainerTermination) {
        trainer = nil
        guard var attempt = readAttempt() else { return }
        attempt.processID = nil
        attempt.processStartTicks = nil
        try? writeAttempt(attempt)
        if stopping {
            logger.event(.trainingFailed, .notice, "trainer stopped with the daemon (\(termination)); the run resumes at the next start")
            setStatus("training stopped")
            return
        }
        guard termination.succeeded else {
            recordFailure("trainer \(termination); the next attempt resumes the candidate")
            return
        }
        guard (try? files.syscalls.lstat(models.candidatePath.appending("manifest.json"))) != nil else {
            recordFailure("trainer exited with status 0 but wrote no manifest.json in \(models.candidatePath)")
            return
        }
        do {
            try gate(attempt)
            failures = 0
            notBefore = nil
        } catch {
            recordFailure("gate failed: \(error)")
        }
        setStatus(idleStatus())
    }

    /// Scores held-out normals and known defects with the candidate and the current model,
    /// decides, numbers the candidate, and switches `current` when it passed.
    private func gate(_ attempt: TrainingAttempt) throws {
        let normals = store.images(in: .heldOut)
        var defects: [FilePath] = []
        if let folder = configuration.defects {
            for name in try files.syscalls.listDirectory(folder).sorted() where !name.hasPrefix(".") {
                if try files.syscalls.lstat(folder.appending(name))?.kind == .regular { defects.append(folder.appending(name)) }
            }
        }
        let images = normals + defects
        setStatus("gating the candidate on \(normals.count) held-out and \(defects.count) defect image(s)")
        let candidate = try GateFigures(scores: evaluator.scores(bundle: models.candidatePath, images: images), normalCount: normals.count)
        let serving = try models.current()
        let current = try serving.map { try GateFigures(scores: evaluator.scores(bundle: $0.path, images: images), normalCount: normals.count) }
        let (decision, reason) = GateRecord.decide(candidate: candidate, current: current, heldOutImages: normals.count, policy: configuration.gate)
        let record = GateRecord(
            decision: decision, reason: reason, line: lineName, candidate: candidate, current: current, currentVersion: serving?.name,
            heldOutImages: normals.count, defectImages: defects.count, trainingImages: attempt.snapshotImages, policy: configuration.gate,
            decidedAt: Self.iso8601Now())
        try files.writeDurably(record.encoded(), to: models.candidatePath.appending(GateRecord.fileName))
        let version = try models.commitCandidate()
        var fields: Logger.Metadata = [
            "version": "\(version.name)", "current_version": "\(serving?.name ?? "none")", "decision": "\(decision.rawValue)",
            "false_reject_rate": "\(candidate.falseRejectRate)", "current_false_reject_rate": "\(current.map { "\($0.falseRejectRate)" } ?? "none")",
            "held_out": "\(normals.count)", "defects": "\(defects.count)",
        ]
        if let auroc = candidate.auroc { fields["auroc"] = "\(auroc)" }
        if let auroc = current?.auroc { fields["current_auroc"] = "\(auroc)" }
        if decision == .accepted {
            try models.activate(version.name)
            logger.event(.gateAccepted, .notice, "\(version.name) replaces \(serving?.name ?? "nothing"): \(reason)", fields)
        } else {
            logger.event(.gateRejected, .warning, "\(version.name) rejected, \(serving?.name ?? "nothing") keeps serving: \(reason)", fields)
        }
        try store.markTrained(through: attempt.snapshotThrough)
        try? files.syscalls.unlink(requestPath)
        try files.syscalls.unlink(attemptPath)
        try files.syncDirectory(configuration.trainingStore)
        let removed = try models.prune(keeping: configuration.keepVersions)
        if !removed.isEmpty { logger.info("removed old model version(s) \(removed.joined(separator: ", "))") }
    }

    private func recordFailure(_ message: String) {
        failures += 1
        let delay = min(configuration.retryDelaySeconds * pow(2, Double(failures - 1)), 3600)
        notBefore = clock().addingTimeInterval(delay)
        logger.event(.trainingFailed, .error, "\(message); next attempt in \(Int(delay)) s (or on request)", ["failures": "\(failures)"])
        setStatus("training failed (\(failures)x), retry in \(Int(delay)) s")
    }

    private func idleStatus() -> String {
        let serving = (try? models.current())??.name ?? "none"
        return "model \(serving), \(store.newImagesSinceTraining) new accepted"
    }

    private func setStatus(_ text: String) {
        statusLock.lock(); statusText = text; statusLock.unlock()
    }

    private func readAttempt() -> TrainingAttempt? {
        guard let bytes = try? files.readFile(attemptPath, maximumBytes: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(TrainingAttempt.self, from: Data(bytes))
    }

    private func writeAttempt(_ attempt: TrainingAttempt) throws {
        try files.writeDurably(Array(try JSONEncoder().encode(attempt)), to: attemptPath)
    }

    static func iso8601Now() -> String { iso8601(Date()) }
}

/// ISO 8601 UTC with seconds, for records and messages.
func iso8601(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
}
