// A line's three overlapping stages: a batch is read and prepared (decoded) on `prepareQueue`,
// inspected on the line's queue, and its outputs written on `outputQueue`.
import Checkpoints
import DaemonSupport
import Foundation
import Logging
import SystemPackage

/// One claimed input, read from work/ for a batch.
struct LoadedInput {
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

/// The stages overlap so that decoding, PNG work and fsync waits hide behind the network: the
/// next batch is prepared while the current one is inspected and the previous one's outputs
/// (heatmap render and encode, durable writes, disposal) are written. One batch at most is in
/// each stage; a pass waits for all of them before it returns, and a batch's inputs stay in
/// work/ (so a crash recovers them) and out of later batches until they are disposed of.
final class BatchStages {
    let configuration: LineConfiguration
    let workQueue: WorkQueue
    let writer: OutcomeWriter
    let model: ServingModel
    let metrics: MetricsRegistry
    let queue: DispatchQueue
    let prepareQueue: DispatchQueue
    let outputQueue: DispatchQueue
    let shouldStop: () -> Bool
    /// Called after each batch inspected (the watchdog's progress).
    let advance: () -> Void
    /// Called on `queue` when a model swap is taken, before the batch it serves.
    let modelSwapped: (_ new: AnyInspector, _ old: ModelIdentity) -> Void
    /// What `outputQueue` has done since the last drain; under `outputLock`.
    private var outputSummary = PassSummary()
    private let outputLock = NSLock()

    init(configuration: LineConfiguration, workQueue: WorkQueue, writer: OutcomeWriter, model: ServingModel, metrics: MetricsRegistry,
         queue: DispatchQueue, shouldStop: @escaping () -> Bool, advance: @escaping () -> Void,
         modelSwapped: @escaping (_ new: AnyInspector, _ old: ModelIdentity) -> Void) {
        self.configuration = configuration
        self.workQueue = workQueue
        self.writer = writer
        self.model = model
        self.metrics = metrics
        self.queue = queue
        self.outputQueue = DispatchQueue(label: "rstpmd.line.\(configuration.name).outputs")
        self.prepareQueue = DispatchQueue(label: "rstpmd.line.\(configuration.name).prepare")
        self.shouldStop = shouldStop
        self.advance = advance
        self.modelSwapped = modelSwapped
    }

    /// A batch read from work/ whose `prepare` runs on `prepareQueue`. Its inputs are in flight
    /// until their outputs are done or the batch is abandoned.
    final class Batch {
        /// Their `sha256` is set by the time `preparing` is left.
        var loaded: [LoadedInput]
        let started: Int64
        let preparer: AnyInspector
        /// The serving model's generation when the batch was started.
        let generation: Int
        let preparing = DispatchGroup()
        /// Written on `prepareQueue` before `preparing` is left.
        var prepared: PreparedBatch?
        /// One input that was in flight at a crash, run with nothing beside it.
        let isolated: Bool

        init(loaded: [LoadedInput], started: Int64, preparer: AnyInspector, generation: Int, isolated: Bool) {
            self.loaded = loaded
            self.started = started
            self.preparer = preparer
            self.generation = generation
            self.isolated = isolated
        }
    }

    /// Inspects the due work items batch by batch, each prepared one batch ahead; `claimMore`
    /// (a pass's inbox claims) is asked for one more batch each time. The first batch is a
    /// single input: the network starts after one decode instead of a whole batch's, while the
    /// next batch decodes beside it.
    func processWork(now: Int64, summary: inout PassSummary, claimMore: ((inout PassSummary) -> Void)? = nil) {
        var next = startBatch(now: now, limit: 1, summary: &summary)
        while let batch = next {
            if shouldStop() {
                abandon(batch)
                break
            }
            claimMore?(&summary)
            // An input that was in flight at a crash runs alone: nothing else is prepared,
            // inspected or written beside it, so a second crash names it alone.
            next = shouldStop() || batch.isolated ? nil : startBatch(now: now, summary: &summary)
            inspect(batch, now: now, summary: &summary)
            if batch.isolated {
                drainOutputs(summary: &summary)
                if !shouldStop() { next = startBatch(now: now, limit: 1, summary: &summary) }
            }
            if next == nil && !shouldStop(), let claimMore {
                // Files that arrived during this batch (a burst still being copied in).
                claimMore(&summary)
                next = startBatch(now: now, limit: 1, summary: &summary)
            }
            advance()
        }
    }

    /// Waits for the outputs in flight and adds what they did to `summary`.
    func drainOutputs(summary: inout PassSummary) {
        outputQueue.sync {}
        outputLock.lock()
        summary.decided += outputSummary.decided
        summary.quarantined += outputSummary.quarantined
        summary.retrying += outputSummary.retrying
        outputSummary = PassSummary()
        outputLock.unlock()
    }

    /// The end of a pass: every output written, and the queue depth as it then is.
    func finishOutputs(summary: inout PassSummary) {
        drainOutputs(summary: &summary)
        summary.queueDepth = workQueue.recordDepth(fallback: summary.queueDepth)
    }

    /// Reads the next batch of due work items and starts preparing it; nil when nothing is due.
    func startBatch(now: Int64, limit: Int? = nil, summary: inout PassSummary) -> Batch? {
        while true {
            let started = monotonicNanoseconds()
            let items: [WorkQueue.Item]
            do {
                items = try workQueue.items()
            } catch {
                workQueue.logger.event(.watcherFailed, .error, "cannot read work directory", ["image.path": "\(workQueue.directory)", "error": "\(error)"])
                return nil
            }
            let (due, isolated) = workQueue.due(items, now: now)
            if due.isEmpty { return nil }
            // Inputs that cannot be read are quarantined or wait for a retry: the next look
            // does not see them as due again.
            var loaded = load(Array(due.prefix(min(limit ?? configuration.batchSize, configuration.batchSize))), now: now, summary: &summary)
            if loaded.isEmpty { continue }
            for (index, isSecondLook) in workQueue.enterFlight(loaded.map(\.name)).enumerated() { loaded[index].isSecondLook = isSecondLook }
            // Before any decoding: a crash from here on is traced to these inputs.
            workQueue.writeInFlightRecord()
            let (preparer, generation) = model.current
            let batch = Batch(loaded: loaded, started: started, preparer: preparer, generation: generation, isolated: isolated)
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
    func abandon(_ batch: Batch) {
        batch.preparing.wait()
        workQueue.leaveFlight(batch.loaded.map(\.name))
        workQueue.writeInFlightRecord()
    }

    func load(_ items: [WorkQueue.Item], now: Int64, summary: inout PassSummary) -> [LoadedInput] {
        var loaded: [LoadedInput] = []
        for item in items {
            let (name, status) = (item.name, item.status)
            let path = workQueue.directory.appending(name)
            // Rename sets ctime, so a work file's ctime is its claim time, even after a restart.
            let received = status.changeNanoseconds
            guard status.kind == .regular else {
                let description = status.kind == .symbolicLink ? "a symbolic link" : status.kind == .directory ? "a directory" : "a FIFO, socket or device"
                writer.quarantine(name: name, sha256: nil, received: received, kind: "not_a_regular_file",
                                  message: "the input is \(description), not a regular file, and is never followed", hint: "put regular files in the inbox, not links", now: now, summary: &summary)
                continue
            }
            do {
                let bytes = try writer.files.readFile(path, maximumBytes: configuration.maximumInputBytes)
                loaded.append(LoadedInput(name: name, path: path, bytes: bytes, receivedNanoseconds: received, status: status))
            } catch Errno.fileTooLarge {
                writer.quarantine(name: name, sha256: nil, received: received, kind: "too_large",
                                  message: "the input has more than max_input_bytes = \(configuration.maximumInputBytes) bytes",
                                  hint: "raise lines[].max_input_bytes if such files are expected", now: now, summary: &summary)
            } catch Errno.tooManySymbolicLinkLevels {
                writer.quarantine(name: name, sha256: nil, received: received, kind: "not_a_regular_file",
                                  message: "the input is a symbolic link and is never followed", hint: "put regular files in the inbox, not links", now: now, summary: &summary)
            } catch Errno.noSuchFileOrDirectory {
                workQueue.finished(name)
            } catch {
                workQueue.scheduleRetry(name, now: now, stage: "read", error: error, summary: &summary)
            }
        }
        return loaded
    }

    /// Runs the batch through the serving model, then hands its outputs to `outputQueue`.
    func inspect(_ batch: Batch, now: Int64, summary: inout PassSummary) {
        if model.hasPending {
            // The outputs in flight log with the old model's metadata.
            drainOutputs(summary: &summary)
            if let (new, old) = model.takePending() { modelSwapped(new, old) }
        }
        batch.preparing.wait()
        let loaded = batch.loaded
        let (serving, generation) = model.current
        // A batch prepared by the model a swap replaced is prepared again by the new one.
        let prepared = batch.generation == generation ? batch.prepared! : serving.prepare(batch.prepared!.inputs)
        let results = prepared.inspect()
        // The previous batch's outputs ran during this inspection; one batch in flight at most.
        drainOutputs(summary: &summary)
        let modelIdentity = serving.modelIdentity
        outputQueue.async { [self] in
            CrashMarker.protectCurrentThread()
            var outputs = PassSummary()
            // Decided once per image: the heatmap's outline and the verdict take the same threshold.
            let decisions = results.map { result in (try? result.get()).map { VerdictPolicy.decide($0, on: configuration) } }
            let heatmaps = Self.renderHeatmaps(results, decisions: decisions, drawsLabel: configuration.heatmapLabel)
            let workNames = Set((try? writer.files.syscalls.listDirectory(workQueue.directory)) ?? [])
            for (index, input) in loaded.enumerated() {
                switch results[index] {
                case .success(let outcome):
                    writer.writeVerdict(input, outcome: outcome, decided: decisions[index]!, heatmap: heatmaps[index]!, model: modelIdentity,
                                        workNames: workNames, now: now, summary: &outputs)
                case .failure(let error) where error.mayBeIncomplete && !input.isSecondLook && workQueue.secondLookNanoseconds > 0:
                    workQueue.awaitSecondLook(input.name, status: input.status, error: error, now: now)
                case .failure(let error):
                    writer.quarantine(name: input.name, sha256: input.sha256, received: input.receivedNanoseconds, kind: error.kind, message: error.message,
                                      hint: "check the file opens in an image viewer; the daemon reads PNG, JPEG, BMP and TIFF", judgedBytes: input.bytes,
                                      now: now, summary: &outputs)
                }
            }
            workQueue.leaveFlight(loaded.map(\.name))
            outputLock.lock()
            outputSummary.decided += outputs.decided
            outputSummary.quarantined += outputs.quarantined
            outputSummary.retrying += outputs.retrying
            outputLock.unlock()
            workQueue.writeInFlightRecord()
            metrics.observe("rstpmd_batch_seconds", labels: ["line": configuration.name], seconds: Double(monotonicNanoseconds() - batch.started) / 1e9)
        }
    }

    /// A batch's heatmap figures, outlined at each image's decision threshold (labelled when the
    /// line says `heatmap_label: true`) and drawn on every core (the network may be idle: a
    /// batch's last outputs are what a burst waits for), each with its milliseconds.
    static func renderHeatmaps(_ results: [Result<InspectionOutcome, InspectionError>], decisions: [VerdictDecision?],
                               drawsLabel: Bool) -> [Result<(png: [UInt8], milliseconds: Double), Error>?] {
        var heatmaps = [Result<(png: [UInt8], milliseconds: Double), Error>?](repeating: nil, count: results.count)
        heatmaps.withUnsafeMutableBufferPointer { slots in
            DispatchQueue.concurrentPerform(iterations: results.count) { index in
                guard case .success(let outcome) = results[index], let decision = decisions[index] else { return }
                let start = monotonicNanoseconds()
                slots[index] = Result { (try outcome.renderHeatmapPNG(decision.threshold.value, drawsLabel), Double(monotonicNanoseconds() - start) / 1e6) }
            }
        }
        return heatmaps
    }
}
