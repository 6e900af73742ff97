import Checkpoints
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
    private var retries: [String: Retry] = [:]
    /// The same for inputs whose names are not UTF-8, by the names' bytes; under `stateLock`.
    private var undecodableRetries: [FilePath.Component: Retry] = [:]
    /// Inputs in work/ that were in flight when the daemon crashed, with how many times; each is
    /// inspected alone, and one found at `crashLimit` crashes is quarantined. Under `stateLock`.
    private var crashCounts: [String: Int] = [:]
    /// An input in flight at this many crashes is not tried again.
    static let crashLimit = 2
    /// Inputs in work/ that could not be decoded at the first look, waiting for the second;
    /// under `stateLock`.
    private var secondLooks: [String: SecondLook] = [:]
    /// The second look waits until the input has stayed unchanged this long: four settle
    /// intervals, for writers that pause longer than one. Without a settle interval files are
    /// complete when they appear, and the first look is the last.
    let secondLookNanoseconds: Int64
    /// Serialises writes of the in-flight record.
    private let inFlightRecordLock = NSLock()
    /// Inputs of the batches being prepared, inspected or written, and what `outputQueue` has
    /// done since the last drain; under `stateLock`.
    private var inputsInFlight: Set<String> = []
    private var outputSummary = PassSummary()
    private let stateLock = NSLock()
    private let outputQueue: DispatchQueue
    private let prepareQueue: DispatchQueue
    private var stopRequested = false
    private var timer: DispatchSourceTimer?
    private var inotifySource: DispatchSourceRead?
    /// The inotify descriptor while watching (-1 otherwise); read only on `queue`.
    private var inotifyDescriptor: Int32 = -1

    // Read from the watchdog check on another queue.
    private let progressLock = NSLock()
    private var progressCounter: UInt64 = 0
    private var busy = false
    private var lastQueueDepth = 0
    private var pendingInspector: (any Inspector)?

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
        self.scanner = InboxScanner(
            inbox: configuration.inbox, settleNanoseconds: Int64(configuration.settleIntervalSeconds * 1e9), syscalls: syscalls,
            leaveOutbox: configuration.processedInputs == .leave ? configuration.outbox : nil)
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

    private func startInotify() {
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else {
            logger.event(.watcherFailed, .warning, "inotify unavailable; polling only", ["errno": "\(Errno(rawValue: errno))"])
            return
        }
        let mask = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR)
        guard inotify_add_watch(descriptor, configuration.inbox.string, mask) >= 0 else {
            logger.event(.watcherFailed, .warning, "cannot watch inbox with inotify; polling only",
                         ["image.path": "\(configuration.inbox)", "errno": "\(Errno(rawValue: errno))"])
            close(descriptor)
            return
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        source.setEventHandler { [weak self] in
            guard let self else { return }
            if self.noteInotifyEvents() { self.runPass() }
        }
        source.setCancelHandler { [weak self] in
            self?.inotifyDescriptor = -1
            close(descriptor)
        }
        // Queued before the source can fire, and never racing a pass that the timer started.
        queue.async { self.inotifyDescriptor = descriptor }
        source.resume()
        inotifySource = source
    }

    /// Reads the pending inotify events and notes the files renamed into the inbox; true when
    /// there were events. Also called within a pass before each claim, so that a burst still
    /// arriving joins the running pass instead of waiting for the next one. Call on `queue`.
    private func noteInotifyEvents() -> Bool {
        let descriptor = inotifyDescriptor
        guard descriptor >= 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var sawEvent = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            var offset = 0
            while offset + 16 <= count {
                let mask = buffer.withUnsafeBytes { $0.load(fromByteOffset: offset + 4, as: UInt32.self) }
                let length = Int(buffer.withUnsafeBytes { $0.load(fromByteOffset: offset + 12, as: UInt32.self) })
                let nameBytes = buffer[(offset + 16)..<min(offset + 16 + length, count)].prefix { $0 != 0 }
                if mask & UInt32(IN_MOVED_TO) != 0, let name = String(validating: Array(nameBytes), as: UTF8.self) {
                    scanner.noteMovedIn(name)
                }
                sawEvent = true
                offset += 16 + length
            }
        }
        return sawEvent
    }

    private func runPass() {
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

    private func takePendingInspector() {
        progressLock.lock()
        let pending = pendingInspector
        let old = inspector.modelIdentity
        if let pending { inspector = pending }
        pendingInspector = nil
        progressLock.unlock()
        guard let pending else { return }
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

    private func advance() {
        progressLock.lock(); progressCounter &+= 1; progressLock.unlock()
    }

    private var shouldStop: Bool {
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

    private func claimBatch(now: Int64, summary: inout PassSummary) {
        guard !shouldStop else { return }
        _ = noteInotifyEvents()
        var claimedNow = 0
        do {
            for name in try scanner.scan(now: now) where claimedNow < configuration.batchSize && !shouldStop {
                if claim(name) { claimedNow += 1 } else { summary.claimsLost += 1 }
            }
            // Never inspected, so not part of a batch: claimed like any input, then quarantined.
            for entry in scanner.completeUndecodable where !shouldStop {
                if claim(entry, forget: { scanner.forget(undecodable: entry) }) { summary.claimed += 1 } else { summary.claimsLost += 1 }
            }
        } catch {
            logger.event(.watcherFailed, .error, "cannot read inbox", ["image.path": "\(configuration.inbox)", "error": "\(error)"])
        }
        reportIgnoredEntries()
        summary.claimed += claimedNow
        quarantineUndecodableEntries(now: now, summary: &summary)
    }

    /// Inbox entries that are never taken, each logged once while it stays, and counted.
    private func reportIgnoredEntries() {
        for (name, kind) in scanner.newlyIgnored {
            let reason: String
            switch kind {
            case "symbolic_link": reason = "is a symbolic link; links are never followed"
            case "directory": reason = "is a directory"
            default: reason = "is not a regular file (a FIFO, socket or device)"
            }
            metrics.increment("rstpmd_inbox_ignored_total", labels: ["line": configuration.name, "kind": kind])
            logger.event(.ignoredEntry, .warning, "\(name) \(reason): it stays in the inbox, never inspected",
                         ["image.path": "\(configuration.inbox.appending(name))", "entry.kind": "\(kind)"])
        }
    }

    /// Everything in the work directory, as at start after a crash: outputs are idempotent.
    @discardableResult
    public func recover(now: Int64) -> PassSummary {
        CrashMarker.protectCurrentThread()
        let pending = (try? workItems()) ?? []
        if !pending.isEmpty {
            logger.event(.recovered, .notice, "recovering \(pending.count) input(s) left in the work directory", ["count": "\(pending.count)", "image.path": "\(workDirectory)"])
            metrics.increment("rstpmd_recovered_total", labels: ["line": configuration.name], by: Double(pending.count))
        }
        removeStaleTemporaryFiles()
        var summary = PassSummary()
        quarantineUndecodableEntries(now: now, summary: &summary)
        quarantineCrashSuspects(pending: pending, now: now, summary: &summary)
        processWork(now: now, summary: &summary)
        finishOutputs(summary: &summary)
        return summary
    }

    /// What a crash left: when the crash marker is there, every input of the in-flight record
    /// still in work/ counts one more crash, and the suspects are inspected alone from now on.
    /// Without the marker (SIGKILL, SIGTERM, power cut; or a reload, the daemon being alive)
    /// nothing counts: those inputs are simply retried, and earlier counts are kept.
    private func accountForCrash() {
        let crashed = (try? files.syscalls.lstat(crashMarkerPath)) != nil
        var record = readInFlightRecord()
        let present = Set(((try? workItems()) ?? []).map(\.name))
        if crashed {
            for name in record.inFlight where present.contains(name) { record.crashes[name, default: 0] += 1 }
        }
        stateLock.lock(); crashCounts = record.crashes.filter { present.contains($0.key) }; stateLock.unlock()
        // Nothing is in flight until the first batch; a stale list would be blamed for a crash
        // before it.
        writeInFlightRecord(inFlight: [])
        guard crashed else { return }
        try? files.syscalls.unlink(crashMarkerPath)
        logger.event(.recovered, .error, "the daemon crashed (fatal signal) with \(record.inFlight.count) input(s) of this line in flight; they are inspected alone now",
                     ["count": "\(record.inFlight.count)", "image.path": "\(workDirectory)"])
    }

    /// Inputs present at `crashLimit` crashes go to quarantine as `crashed_inspection`.
    private func quarantineCrashSuspects(pending: [(name: String, status: FileStatus)], now: Int64, summary: inout PassSummary) {
        stateLock.lock(); let counts = crashCounts; stateLock.unlock()
        for (name, status) in pending.sorted(by: { $0.name < $1.name }) {
            guard let count = counts[name], count >= Self.crashLimit else { continue }
            quarantine(name: name, sha256: nil, received: status.changeNanoseconds, kind: "crashed_inspection",
                       message: "the daemon crashed \(count) times while this input was being inspected; it is not tried again",
                       hint: "keep the file for a bug report (journalctl -u rstpmd shows the crashes); move it back to the inbox to try again",
                       now: now, summary: &summary)
        }
    }

    /// The inputs being inspected and the crash counts, kept on disk so the next start sees
    /// what was in flight when the process died.
    private struct InFlightRecord: Codable {
        var inFlight: [String] = []
        var crashes: [String: Int] = [:]
    }

    /// Beside the instance's work directory, not in it: work/<instance> holds inputs only.
    private var inFlightRecordPath: FilePath { configuration.work.appending(".rstpmd-\(instance)-in-flight.json") }

    /// Where `CrashMarker` leaves its mark for this line.
    public var crashMarkerPath: FilePath { configuration.work.appending(".rstpmd-\(instance)-crashed") }

    private func readInFlightRecord() -> InFlightRecord {
        guard let bytes = try? files.readFile(inFlightRecordPath, maximumBytes: 64 << 20),
              let record = try? JSONDecoder().decode(InFlightRecord.self, from: Data(bytes))
        else { return InFlightRecord() }
        return record
    }

    /// Writes the record durably (a crash right after must find it): before a batch starts,
    /// and when inputs leave the flight, so an input waiting for a retry is not blamed for a
    /// crash in another's inspection.
    private func writeInFlightRecord(inFlight: Set<String>? = nil) {
        inFlightRecordLock.lock(); defer { inFlightRecordLock.unlock() }
        stateLock.lock()
        let record = InFlightRecord(inFlight: (inFlight ?? inputsInFlight).sorted(), crashes: crashCounts)
        stateLock.unlock()
        do {
            try files.writeDurably(Array(try JSONEncoder().encode(record)), to: inFlightRecordPath)
        } catch {
            logger.event(.retrying, .warning, "cannot write the in-flight record: \(error); a crash now would not be traced to its input",
                         ["image.path": "\(inFlightRecordPath)", "errno": "\(error)"])
        }
    }

    /// Temporary files a crash left behind (`.<name>.rstpmd.tmp`), once no writer can still
    /// own them: in the outbox and quarantine older than ten minutes, since other daemons may
    /// share them; in this instance's work directory (copies of judged inputs) all of them.
    private func removeStaleTemporaryFiles() {
        let sharedCutoff = wallClockNanoseconds() - 600 * 1_000_000_000
        for (directory, cutoff) in [(configuration.outbox, sharedCutoff), (configuration.quarantine, sharedCutoff), (workDirectory, Int64.max)] {
            for name in (try? files.syscalls.listDirectory(directory)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".rstpmd.tmp") {
                let path = directory.appending(name)
                if let status = try? files.syscalls.lstat(path), status.kind == .regular, status.modificationNanoseconds < cutoff {
                    try? files.syscalls.unlink(path)
                }
            }
        }
    }

    /// Claims `name` by renaming it into the work directory. Losing the race to another daemon
    /// (ENOENT) is normal. A same-named file still in work/ waits in the inbox.
    func claim(_ name: String) -> Bool {
        guard let entry = FilePath.Component(name) else { return false }
        return claim(entry) { scanner.forget(name) }
    }

    /// `claim` by the name's bytes; `forget` tells the scanner that the name left the inbox.
    private func claim(_ entry: FilePath.Component, forget: () -> Void) -> Bool {
        let source = configuration.inbox.appending(entry)
        let destination = workDirectory.appending(entry)
        if (try? files.syscalls.lstat(destination)) != nil { return false }
        do {
            try files.syscalls.rename(source, to: destination)
            forget()
            return true
        } catch Errno.noSuchFileOrDirectory {
            forget()
            metrics.increment("rstpmd_claims_lost_total", labels: ["line": configuration.name])
            logger.event(.claimLost, .debug, "another daemon claimed the input first", ["image.path": "\(source)"])
            return false
        } catch {
            logger.event(.retrying, .warning, "cannot claim input: \(error)", ["image.path": "\(source)", "errno": "\(error)"])
            return false
        }
    }

    /// Work items in claim order (ctime, then name).
    func workItems() throws -> [(name: String, status: FileStatus)] {
        var items: [(String, FileStatus)] = []
        for name in try files.syscalls.listDirectory(workDirectory) where !name.hasPrefix(".") {
            if let status = try? files.syscalls.lstat(workDirectory.appending(name)) { items.append((name, status)) }
        }
        return items.sorted { ($0.1.changeNanoseconds, $0.0) < ($1.1.changeNanoseconds, $1.0) }
    }

    /// Inspects the due work items batch by batch. Each batch is read and handed to the
    /// inspector's `prepare` (decoding) on `prepareQueue` one batch ahead, so that it runs while
    /// the network works on the batch before; `claimMore` (a pass's inbox claims) is asked for one
    /// more batch each time. The first batch is a single input: the network starts after one
    /// decode instead of a whole batch's, while the next batch decodes beside it.
    private func processWork(now: Int64, summary: inout PassSummary, claimMore: ((inout PassSummary) -> Void)? = nil) {
        var next = startBatch(now: now, limit: 1, summary: &summary)
        while let batch = next {
            if shouldStop {
                abandon(batch)
                break
            }
            claimMore?(&summary)
            // An input that was in flight at a crash runs alone: nothing else is prepared,
            // inspected or written beside it, so a second crash names it alone.
            next = shouldStop || batch.isolated ? nil : startBatch(now: now, summary: &summary)
            inspect(batch, now: now, summary: &summary)
            if batch.isolated {
                drainOutputs(summary: &summary)
                if !shouldStop { next = startBatch(now: now, limit: 1, summary: &summary) }
            }
            if next == nil && !shouldStop, let claimMore {
                // Files that arrived during this batch (a burst still being copied in).
                claimMore(&summary)
                next = startBatch(now: now, limit: 1, summary: &summary)
            }
            advance()
        }
    }

    private func recordQueueDepth(fallback: Int, summary: inout PassSummary) {
        let undecodable = (try? files.syscalls.listDirectoryComponents(workDirectory).filter { !$0.isUTF8 }.count) ?? 0
        let depth = ((try? workItems().count) ?? fallback) + undecodable
        summary.queueDepth = depth
        metrics.set("rstpmd_queue_depth", labels: ["line": configuration.name], to: Double(depth))
        progressLock.lock(); lastQueueDepth = depth; progressLock.unlock()
    }

    /// Waits for the outputs in flight and adds what they did to `summary`.
    private func drainOutputs(summary: inout PassSummary) {
        outputQueue.sync {}
        stateLock.lock()
        summary.decided += outputSummary.decided
        summary.quarantined += outputSummary.quarantined
        summary.retrying += outputSummary.retrying
        outputSummary = PassSummary()
        stateLock.unlock()
    }

    /// The end of a pass: every output written, and the queue depth as it then is.
    private func finishOutputs(summary: inout PassSummary) {
        drainOutputs(summary: &summary)
        recordQueueDepth(fallback: summary.queueDepth, summary: &summary)
    }

    struct Loaded {
        var name: String
        var path: FilePath
        var bytes: [UInt8]
        /// Filled on `prepareQueue` beside the decode, off the line's critical path.
        var sha256 = ""
        var receivedNanoseconds: Int64
        /// lstat before the read: what the second look compares against.
        var status: FileStatus
        /// Its first look found it undecodable; this one decides.
        var isSecondLook = false
    }

    /// An input that could not be decoded at the first look, as it was then or last changed.
    struct SecondLook {
        var size: Int64
        var modification: Int64
        var unchangedSince: Int64
    }

    /// Whether `item` still waits for its second look: until its size and mtime have stayed the
    /// same for `secondLookNanoseconds` (a writer that keeps its descriptor open writes into the
    /// claimed file). Call under `stateLock`.
    private func waitsForSecondLook(_ item: (name: String, status: FileStatus), now: Int64) -> Bool {
        guard var look = secondLooks[item.name] else { return false }
        if look.size != item.status.size || look.modification != item.status.modificationNanoseconds {
            look = SecondLook(size: item.status.size, modification: item.status.modificationNanoseconds, unchangedSince: now)
            secondLooks[item.name] = look
        }
        return now - look.unchangedSince < secondLookNanoseconds
    }

    /// A batch read from work/ whose `prepare` runs on `prepareQueue`. Its inputs are in
    /// `inputsInFlight` until their outputs are done or the batch is abandoned.
    final class Batch {
        /// Their `sha256` is set by the time `preparing` is left.
        var loaded: [Loaded]
        let started: Int64
        let preparer: any Inspector
        let preparing = DispatchGroup()
        /// Written on `prepareQueue` before `preparing` is left.
        var prepared: PreparedInputs?
        /// One input that was in flight at a crash, run with nothing beside it.
        let isolated: Bool

        init(loaded: [Loaded], started: Int64, preparer: any Inspector, isolated: Bool = false) {
            self.loaded = loaded
            self.started = started
            self.preparer = preparer
            self.isolated = isolated
        }
    }

    /// Reads the next batch of due work items (those not in flight, not waiting for a retry)
    /// and starts preparing it; nil when nothing is due.
    private func startBatch(now: Int64, limit: Int? = nil, summary: inout PassSummary) -> Batch? {
        while true {
            let started = monotonicNanoseconds()
            let items: [(name: String, status: FileStatus)]
            do {
                items = try workItems()
            } catch {
                logger.event(.watcherFailed, .error, "cannot read work directory", ["image.path": "\(workDirectory)", "error": "\(error)"])
                return nil
            }
            stateLock.lock()
            // An input removed from work/ while it waited has no second look coming.
            let present = Set(items.map(\.name))
            secondLooks = secondLooks.filter { present.contains($0.key) }
            var due = items.filter {
                !inputsInFlight.contains($0.name) && (retries[$0.name]?.notBefore ?? .min) <= now && !waitsForSecondLook($0, now: now)
            }
            // A crash suspect goes alone, once nothing else is in flight; until then the others go.
            let suspects = due.filter { crashCounts[$0.name] != nil }
            let isolated = !suspects.isEmpty && inputsInFlight.isEmpty
            if isolated { due = [suspects[0]] } else if !suspects.isEmpty { due.removeAll { crashCounts[$0.name] != nil } }
            stateLock.unlock()
            if due.isEmpty { return nil }
            // Inputs that cannot be read are quarantined or wait for a retry: the next look
            // does not see them as due again.
            var loaded = load(Array(due.prefix(min(limit ?? configuration.batchSize, configuration.batchSize))), now: now, summary: &summary)
            if loaded.isEmpty { continue }
            stateLock.lock()
            for index in loaded.indices { loaded[index].isSecondLook = secondLooks[loaded[index].name] != nil }
            inputsInFlight.formUnion(loaded.map(\.name))
            stateLock.unlock()
            // Before any decoding: a crash from here on is traced to these inputs.
            writeInFlightRecord()
            let batch = Batch(loaded: loaded, started: started, preparer: inspector, isolated: isolated)
            let inputs = loaded.map { InspectionInput(fileName: $0.name, path: $0.path, bytes: $0.bytes) }
            batch.preparing.enter()
            prepareQueue.async {
                CrashMarker.protectCurrentThread()
                for index in batch.loaded.indices { batch.loaded[index].sha256 = sha256Hex(of: batch.loaded[index].bytes) }
                batch.prepared = batch.preparer.prepare(inputs)
                batch.preparing.leave()
            }
            return batch
        }
    }

    /// A batch that will not be inspected in this pass (stop requested): it stays in work/.
    private func abandon(_ batch: Batch) {
        batch.preparing.wait()
        stateLock.lock(); inputsInFlight.subtract(batch.loaded.map(\.name)); stateLock.unlock()
        writeInFlightRecord()
    }

    private func load(_ items: [(name: String, status: FileStatus)], now: Int64, summary: inout PassSummary) -> [Loaded] {
        var loaded: [Loaded] = []
        for (name, status) in items {
            let path = workDirectory.appending(name)
            // Rename sets ctime, so a work file's ctime is its claim time, even after a restart.
            let received = status.changeNanoseconds
            guard status.kind == .regular else {
                let description = status.kind == .symbolicLink ? "a symbolic link" : status.kind == .directory ? "a directory" : "a FIFO, socket or device"
                quarantine(name: name, sha256: nil, received: received, kind: "not_a_regular_file",
                           message: "the input is \(description), not a regular file, and is never followed", hint: "put regular files in the inbox, not links", now: now, summary: &summary)
                continue
            }
            do {
                let bytes = try files.readFile(path, maximumBytes: configuration.maximumInputBytes)
                loaded.append(Loaded(name: name, path: path, bytes: bytes, receivedNanoseconds: received, status: status))
            } catch Errno.fileTooLarge {
                quarantine(name: name, sha256: nil, received: received, kind: "too_large",
                           message: "the input has more than max_input_bytes = \(configuration.maximumInputBytes) bytes",
                           hint: "raise lines[].max_input_bytes if such files are expected", now: now, summary: &summary)
            } catch Errno.tooManySymbolicLinkLevels {
                quarantine(name: name, sha256: nil, received: received, kind: "not_a_regular_file",
                           message: "the input is a symbolic link and is never followed", hint: "put regular files in the inbox, not links", now: now, summary: &summary)
            } catch Errno.noSuchFileOrDirectory {
                setRetry(nil, for: name)
            } catch {
                scheduleRetry(name, now: now, stage: "read", error: error, summary: &summary)
            }
        }
        return loaded
    }

    /// Runs the batch through the inspector, then hands its outputs to `outputQueue`.
    private func inspect(_ batch: Batch, now: Int64, summary: inout PassSummary) {
        progressLock.lock(); let swapping = pendingInspector != nil; progressLock.unlock()
        // The outputs in flight log with the old model's metadata.
        if swapping { drainOutputs(summary: &summary) }
        takePendingInspector()
        batch.preparing.wait()
        let loaded = batch.loaded
        // A batch prepared by the model this one replaced is prepared again.
        let prepared = batch.preparer === inspector ? batch.prepared! : inspector.prepare(batch.prepared!.inputs)
        let results = inspector.inspect(prepared: prepared)
        precondition(results.count == loaded.count, "inspector returned \(results.count) results for \(loaded.count) inputs")
        // The previous batch's outputs ran during this inspection; one batch in flight at most.
        drainOutputs(summary: &summary)
        let model = inspector.modelIdentity
        outputQueue.async { [self] in
            CrashMarker.protectCurrentThread()
            var outputs = PassSummary()
            let heatmaps = Self.renderHeatmaps(results, line: configuration)
            let workNames = Set((try? files.syscalls.listDirectory(workDirectory)) ?? [])
            for ((input, result), heatmap) in zip(zip(loaded, results), heatmaps) {
                switch result {
                case .success(let outcome):
                    decide(input, outcome: outcome, heatmap: heatmap!, model: model, workNames: workNames, now: now, summary: &outputs)
                case .failure(let error) where error.mayBeIncomplete && !input.isSecondLook && secondLookNanoseconds > 0:
                    awaitSecondLook(input, error: error, now: now)
                case .failure(let error):
                    quarantine(name: input.name, sha256: input.sha256, received: input.receivedNanoseconds, kind: error.kind, message: error.message,
                               hint: "check the file opens in an image viewer; the daemon reads PNG and JPEG", judgedBytes: input.bytes,
                               now: now, summary: &outputs)
                }
            }
            stateLock.lock()
            inputsInFlight.subtract(loaded.map(\.name))
            outputSummary.decided += outputs.decided
            outputSummary.quarantined += outputs.quarantined
            outputSummary.retrying += outputs.retrying
            stateLock.unlock()
            writeInFlightRecord()
            metrics.observe("rstpmd_batch_seconds", labels: ["line": configuration.name], seconds: Double(monotonicNanoseconds() - batch.started) / 1e9)
        }
    }

    /// A batch's heatmap figures, outlined at the line's decision threshold and drawn on every
    /// core (the network may be idle: a batch's last outputs are what a burst waits for), each
    /// with its milliseconds.
    private static func renderHeatmaps(_ results: [Result<InspectionOutcome, InspectionError>], line: LineConfiguration) -> [Result<(png: [UInt8], milliseconds: Double), Error>?] {
        var heatmaps = [Result<(png: [UInt8], milliseconds: Double), Error>?](repeating: nil, count: results.count)
        heatmaps.withUnsafeMutableBufferPointer { slots in
            DispatchQueue.concurrentPerform(iterations: results.count) { index in
                guard case .success(let outcome) = results[index] else { return }
                let start = monotonicNanoseconds()
                let threshold = Verdict.Threshold(deciding: outcome, on: line).value
                slots[index] = Result { (try outcome.renderHeatmapPNG(threshold), Double(monotonicNanoseconds() - start) / 1e6) }
            }
        }
        return heatmaps
    }

    private func decide(_ input: Loaded, outcome: InspectionOutcome, heatmap: Result<(png: [UInt8], milliseconds: Double), Error>,
                        model: ModelIdentity, workNames: Set<String>, now: Int64, summary: inout PassSummary) {
        let decisionThreshold = Verdict.Threshold(deciding: outcome, on: configuration)
        let threshold = decisionThreshold.value
        let (regions, truncated) = RegionExtractor.regions(
            map: outcome.anomalyMap, mapWidth: outcome.mapWidth, mapHeight: outcome.mapHeight,
            imageWidth: outcome.imageWidth, imageHeight: outcome.imageHeight, threshold: threshold)
        let decision: Verdict.Decision = outcome.score >= threshold ? .defect : .ok
        do {
            // Left in the inbox, the input keeps its name, and the inbox scan finds its verdict by it.
            let outputName = configuration.processedInputs == .leave
                ? input.name
                : try self.outputName(for: input.name, sha256: input.sha256, received: input.receivedNanoseconds, otherWorkNames: workNames.subtracting([input.name]))
            let heatmapName = fittingFileName(outputName, suffix: ".heatmap.png")
            let (heatmapPNG, heatmapMilliseconds) = try heatmap.get()
            let writeStart = monotonicNanoseconds()
            try files.writeDurably(heatmapPNG, to: configuration.outbox.appending(heatmapName))
            let writeMilliseconds = Double(monotonicNanoseconds() - writeStart) / 1e6
            let verdict = Verdict(
                file: input.name, sha256: input.sha256,
                size: .init(bytes: input.bytes.count, width: outcome.imageWidth, height: outcome.imageHeight),
                receivedAt: iso8601(nanosecondsSinceEpoch: input.receivedNanoseconds),
                decidedAt: iso8601(nanosecondsSinceEpoch: wallClockNanoseconds()),
                line: configuration.name, instance: instance, model: model, verdict: decision,
                score: outcome.score, threshold: decisionThreshold,
                regions: regions, regionsTruncated: truncated, heatmap: heatmapName,
                timingsMilliseconds: .init(decode: outcome.timings.decodeMilliseconds, infer: outcome.timings.inferMilliseconds,
                                           heatmap: heatmapMilliseconds, write: writeMilliseconds),
                error: nil)
            // The verdict goes last: its presence says the heatmap is complete too.
            try files.writeDurably(verdict.encoded(), to: configuration.outbox.appending(fittingFileName(outputName, suffix: ".json")))
            if decision == .ok, let autoAcceptor {
                do {
                    try autoAcceptor.consider(fileName: input.name, bytes: input.bytes, sha256: input.sha256, score: outcome.score)
                } catch {
                    // Learning is best effort; the verdict is what must not be lost.
                    logger.event(.learningFailed, .warning, "\(input.name): cannot copy to accepted/: \(error)", ["image.path": "\(autoAcceptor.accepted)"])
                }
            }
            try dispose(input.name, as: outputName)
            setRetry(nil, for: input.name)
            summary.decided += 1
            metrics.increment("rstpmd_inputs_total", labels: ["line": configuration.name, "verdict": decision.rawValue])
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "decode"], seconds: outcome.timings.decodeMilliseconds / 1e3)
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "infer"], seconds: outcome.timings.inferMilliseconds / 1e3)
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "heatmap"], seconds: heatmapMilliseconds / 1e3)
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "write"], seconds: writeMilliseconds / 1e3)
            logger.event(.verdict, decision == .defect ? .notice : .info, "\(input.name): \(decision.rawValue) (score \(outcome.score), threshold \(threshold))", [
                "image.path": "\(configuration.inbox.appending(input.name))", "score": "\(outcome.score)", "verdict": "\(decision.rawValue)",
                "threshold": "\(threshold)", "regions": "\(regions.count)", "sha256": "\(input.sha256)",
            ])
        } catch {
            scheduleRetry(input.name, now: now, stage: "write", error: error, summary: &summary)
        }
    }

    /// Keeps an input that could not be decoded in work/ for a second look: a writer that paused
    /// longer than the settle interval may still be writing it.
    private func awaitSecondLook(_ input: Loaded, error: InspectionError, now: Int64) {
        stateLock.lock()
        secondLooks[input.name] = SecondLook(size: input.status.size, modification: input.status.modificationNanoseconds, unchangedSince: now)
        stateLock.unlock()
        logger.event(.secondLook, .info, "\(input.name): \(error.message); looked at again once it has stayed unchanged for \(Double(secondLookNanoseconds) / 1e9) s, in case it is still being written",
                     ["image.path": "\(input.path)", "error.kind": "\(error.kind)"])
    }

    /// Archive, delete or leave a decided input. Once the rename or unlink is done the input is
    /// decided; a failing directory fsync after it only risks the input reappearing in work/
    /// after a power cut, where it is inspected again with the same outputs, so it is logged.
    private func dispose(_ name: String, as outputName: String) throws {
        let path = workDirectory.appending(name)
        var touched = [workDirectory]
        switch configuration.processedInputs {
        case .archive:
            let archive = configuration.archive!
            // `outputName` was free when it was chosen; should another daemon sharing the archive
            // have taken it since, the input still gets a free name rather than replace that one.
            let destination = archive.appending(outputName)
            try files.syscalls.rename(path, to: try files.syscalls.lstat(destination) == nil ? destination : availablePath(in: archive, for: outputName))
            touched.append(archive)
        case .delete:
            try files.syscalls.unlink(path)
        case .leave:
            try files.syscalls.rename(path, to: configuration.inbox.appending(name))
            touched.append(configuration.inbox)
        }
        for directory in touched {
            do {
                try files.syncDirectory(directory)
            } catch {
                logger.event(.retrying, .warning, "\(name): fsync of \(directory) failed (\(error)); a power cut may bring the input back to work/",
                             ["image.path": "\(directory)", "errno": "\(error)"])
            }
        }
    }

    /// Moves an input to quarantine with `<name>.error.json` and writes an `error` verdict to the
    /// outbox. If any of that fails the input stays in work/ and is retried. With `judgedBytes`
    /// (the bytes an inspection judged) the input in work/ is first replaced by a copy of them:
    /// a writer that still holds the file open writes into the replaced file, never into the
    /// quarantine, so the quarantined file keeps matching its record. `entry`: an input whose
    /// name is not UTF-8, `name` then its escaped spelling.
    private func quarantine(name: String, entry: FilePath.Component? = nil, sha256: String?, received: Int64, kind: String, message: String, hint: String,
                            judgedBytes: [UInt8]? = nil, now: Int64, summary: inout PassSummary) {
        let source = entry.map { workDirectory.appending($0) } ?? workDirectory.appending(name)
        do {
            if let judgedBytes { try files.writeDurably(judgedBytes, to: source) }
            let otherWorkNames = Set(try files.syscalls.listDirectory(workDirectory)).subtracting(entry == nil ? [name] : [])
            let storedName = try outputName(for: name, sha256: sha256 ?? "", received: received, otherWorkNames: otherWorkNames)
            let destination = configuration.quarantine.appending(storedName)
            let record = QuarantineRecord(
                file: name, sha256: sha256, originalNameHex: entry.map { $0.bytes.map { String(format: "%02x", $0) }.joined() },
                line: configuration.name, instance: instance,
                quarantinedAt: iso8601(nanosecondsSinceEpoch: wallClockNanoseconds()), kind: kind, message: message, hint: hint)
            try files.writeDurably(record.encoded(), to: configuration.quarantine.appending(fittingFileName(storedName, suffix: ".error.json")))
            let verdict = Verdict(
                file: name, sha256: sha256 ?? "", size: .init(bytes: Int((try? files.syscalls.lstat(source))??.size ?? 0), width: nil, height: nil),
                receivedAt: iso8601(nanosecondsSinceEpoch: received), decidedAt: iso8601(nanosecondsSinceEpoch: wallClockNanoseconds()),
                line: configuration.name, instance: instance, model: inspector.modelIdentity, verdict: .error, score: nil, threshold: nil,
                regions: [], regionsTruncated: false, heatmap: nil, timingsMilliseconds: .init(decode: 0, infer: 0, heatmap: 0, write: 0),
                error: .init(kind: kind, message: message))
            try files.writeDurably(verdict.encoded(), to: configuration.outbox.appending(fittingFileName(storedName, suffix: ".json")))
            try files.syscalls.rename(source, to: destination)
            try files.syncDirectory(configuration.quarantine)
            try files.syncDirectory(workDirectory)
            if let entry {
                stateLock.lock(); undecodableRetries[entry] = nil; stateLock.unlock()
            } else {
                setRetry(nil, for: name)
            }
            summary.quarantined += 1
            metrics.increment("rstpmd_inputs_total", labels: ["line": configuration.name, "verdict": "error"])
            logger.event(.quarantined, .warning, "\(name): quarantined: \(message)", [
                "image.path": "\(destination)", "verdict": "error", "error.kind": "\(kind)",
            ])
        } catch {
            scheduleRetry(name, entry: entry, now: now, stage: "quarantine", error: error, summary: &summary)
        }
    }

    /// Claimed inputs whose names are not UTF-8 go to quarantine as `non_utf8_name`, never
    /// inspected: no verdict or record could carry their names. They are stored under the name
    /// escaped (`caf%E9.png`), and the record keeps the original bytes.
    private func quarantineUndecodableEntries(now: Int64, summary: inout PassSummary) {
        let entries: [FilePath.Component]
        do {
            entries = try files.syscalls.listDirectoryComponents(workDirectory).filter { !$0.isUTF8 }
        } catch {
            logger.event(.watcherFailed, .error, "cannot read work directory", ["image.path": "\(workDirectory)", "error": "\(error)"])
            return
        }
        for entry in entries {
            stateLock.lock(); let due = (undecodableRetries[entry]?.notBefore ?? .min) <= now; stateLock.unlock()
            guard due, let status = try? files.syscalls.lstat(workDirectory.appending(entry)) else { continue }
            quarantine(name: escapedFileName(entry.bytes), entry: entry, sha256: nil, received: status.changeNanoseconds, kind: "non_utf8_name",
                       message: "the file name is not UTF-8, so no verdict or output name could carry it; the record keeps its bytes",
                       hint: "rename it to UTF-8 (e.g. convmv -f latin1 -t utf8) and put it back in the inbox to have it inspected",
                       now: now, summary: &summary)
        }
    }

    /// Backoff 1 s, 2 s, 4 s ... up to 5 minutes; the input stays in work/ meanwhile. `entry`:
    /// an input whose name is not UTF-8, `name` then its escaped spelling.
    private func scheduleRetry(_ name: String, entry: FilePath.Component? = nil, now: Int64, stage: String, error: Error, summary: inout PassSummary) {
        stateLock.lock()
        let previous = if let entry { undecodableRetries[entry] } else { retries[name] }
        var retry = previous ?? Retry(attempts: 0, notBefore: now)
        let delaySeconds = min(Double(1 << min(retry.attempts, 9)), 300)
        retry.attempts += 1
        retry.notBefore = now + Int64(delaySeconds * 1e9)
        if let entry { undecodableRetries[entry] = retry } else { retries[name] = retry }
        stateLock.unlock()
        summary.retrying += 1
        metrics.increment("rstpmd_retries_total", labels: ["line": configuration.name, "stage": stage])
        logger.event(.retrying, .error, "\(name): \(stage) failed (\(error)); kept in the work directory, retry in \(Int(delaySeconds)) s", [
            "image.path": "\(entry.map { workDirectory.appending($0) } ?? workDirectory.appending(name))", "errno": "\(error)", "attempt": "\(retry.attempts)",
        ])
    }

    /// nil: the input left work/ (decided, quarantined or gone), so its crash count and second
    /// look go too.
    private func setRetry(_ retry: Retry?, for name: String) {
        stateLock.lock()
        retries[name] = retry
        if retry == nil {
            crashCounts[name] = nil
            secondLooks[name] = nil
        }
        stateLock.unlock()
    }

    /// The name an input's outputs take (verdict `<name>.json`, heatmap `<name>.heatmap.png`)
    /// and that it is archived or quarantined under: the name it arrived with, or `stem-N.ext`
    /// (N = 1, 2, ...) when an input of that name is already in the archive or the quarantine,
    /// the outbox holds another input's verdict of that name (with `processed_inputs: delete`
    /// nothing else keeps a decided input's name), or another input in work/ is called so. It is
    /// stable when an input is inspected again after a crash: the archive or quarantine name is
    /// taken only by the rename into it, the last step, and a verdict the input wrote before the
    /// crash is recognised as its own, so until the input is gone the same name comes out again.
    /// With `processed_inputs: leave` a decided input goes back to the inbox under its own name,
    /// and its outputs keep that name too.
    func outputName(for name: String, sha256: String, received: Int64, otherWorkNames: Set<String>) throws -> String {
        let candidates = sequence(state: 0) { (index: inout Int) -> String? in
            defer { index += 1 }
            // An escaped name can pass 255 bytes.
            if index == 0 { return fittingFileName(name, suffix: "") }
            let component = FilePath.Component(name)
            let stem = component?.stem ?? name
            let suffix = component?.extension.map { "." + $0 } ?? ""
            return index < 10_000 ? fittingFileName("\(stem)-\(index)", suffix: suffix) : nil
        }
        for candidate in candidates {
            if otherWorkNames.contains(candidate) { continue }
            if let archive = configuration.archive, configuration.processedInputs == .archive,
               try files.syscalls.lstat(archive.appending(candidate)) != nil { continue }
            if try files.syscalls.lstat(configuration.quarantine.appending(candidate)) != nil { continue }
            if configuration.processedInputs != .leave,
               try !outboxVerdict(fittingFileName(candidate, suffix: ".json"), isOwnFor: name, sha256: sha256, received: received) { continue }
            return candidate
        }
        throw Errno.fileExists
    }

    /// Whether the outbox's `verdictName` is free for this input: absent, not a verdict (it is
    /// replaced, as any output is), or the verdict this input wrote before a crash. Its own
    /// verdict names the same arrival name, bytes and instance and was decided after the input
    /// came into work/: an earlier input of that name was decided before it left work/, so
    /// before this one could be claimed.
    private func outboxVerdict(_ verdictName: String, isOwnFor name: String, sha256: String, received: Int64) throws -> Bool {
        let path = configuration.outbox.appending(verdictName)
        let largestVerdict = 1 << 20
        guard let status = try files.syscalls.lstat(path) else { return true }
        guard status.kind == .regular && status.size <= largestVerdict else { return true }
        let bytes = try files.readFile(path, maximumBytes: largestVerdict)
        guard let verdict = try? JSONDecoder().decode(Verdict.self, from: Data(bytes)) else { return true }
        // Both times are ISO 8601 UTC of one fixed width, so they compare as strings.
        return verdict.file == name && verdict.sha256 == sha256 && verdict.instance == instance
            && verdict.decidedAt >= iso8601(nanosecondsSinceEpoch: received)
    }

    /// `name` in `directory`, or `stem-N.ext` when that is taken.
    private func availablePath(in directory: FilePath, for name: String) throws -> FilePath {
        let candidate = directory.appending(name)
        if try files.syscalls.lstat(candidate) == nil { return candidate }
        let component = FilePath.Component(name)
        let stem = component?.stem ?? name
        let suffix = component?.extension.map { "." + $0 } ?? ""
        for index in 1..<10_000 {
            let path = directory.appending(fittingFileName("\(stem)-\(index)", suffix: suffix))
            if try files.syscalls.lstat(path) == nil { return path }
        }
        throw Errno.fileExists
    }
}
