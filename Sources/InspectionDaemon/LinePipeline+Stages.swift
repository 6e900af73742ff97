// LinePipeline's three overlapping stages: a batch is read and prepared on `prepareQueue`,
// inspected on `queue`, and its outputs written on `outputQueue`.
import Checkpoints
import DaemonSupport
import Foundation
import SystemPackage

extension LinePipeline {
    /// Inspects the due work items batch by batch. Each batch is read and handed to the
    /// inspector's `prepare` (decoding) on `prepareQueue` one batch ahead, so that it runs while
    /// the network works on the batch before; `claimMore` (a pass's inbox claims) is asked for one
    /// more batch each time. The first batch is a single input: the network starts after one
    /// decode instead of a whole batch's, while the next batch decodes beside it.
    func processWork(now: Int64, summary: inout PassSummary, claimMore: ((inout PassSummary) -> Void)? = nil) {
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

    func recordQueueDepth(fallback: Int, summary: inout PassSummary) {
        let undecodable = (try? files.syscalls.listDirectoryComponents(workDirectory).filter { !$0.isUTF8 }.count) ?? 0
        let depth = ((try? workItems().count) ?? fallback) + undecodable
        summary.queueDepth = depth
        metrics.set("rstpmd_queue_depth", labels: ["line": configuration.name], to: Double(depth))
        progressLock.lock(); lastQueueDepth = depth; progressLock.unlock()
    }

    /// Waits for the outputs in flight and adds what they did to `summary`.
    func drainOutputs(summary: inout PassSummary) {
        outputQueue.sync {}
        stateLock.lock()
        summary.decided += outputSummary.decided
        summary.quarantined += outputSummary.quarantined
        summary.retrying += outputSummary.retrying
        outputSummary = PassSummary()
        stateLock.unlock()
    }

    /// The end of a pass: every output written, and the queue depth as it then is.
    func finishOutputs(summary: inout PassSummary) {
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
    func waitsForSecondLook(_ item: (name: String, status: FileStatus), now: Int64) -> Bool {
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
    func startBatch(now: Int64, limit: Int? = nil, summary: inout PassSummary) -> Batch? {
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
    func abandon(_ batch: Batch) {
        batch.preparing.wait()
        stateLock.lock(); inputsInFlight.subtract(batch.loaded.map(\.name)); stateLock.unlock()
        writeInFlightRecord()
    }

    func load(_ items: [(name: String, status: FileStatus)], now: Int64, summary: inout PassSummary) -> [Loaded] {
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
    func inspect(_ batch: Batch, now: Int64, summary: inout PassSummary) {
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
                               hint: "check the file opens in an image viewer; the daemon reads PNG, JPEG, BMP and TIFF", judgedBytes: input.bytes,
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

    /// A batch's heatmap figures, outlined at the line's decision threshold (labelled when the
    /// line says `heatmap_label: true`) and drawn on every
    /// core (the network may be idle: a batch's last outputs are what a burst waits for), each
    /// with its milliseconds.
    static func renderHeatmaps(_ results: [Result<InspectionOutcome, InspectionError>], line: LineConfiguration) -> [Result<(png: [UInt8], milliseconds: Double), Error>?] {
        var heatmaps = [Result<(png: [UInt8], milliseconds: Double), Error>?](repeating: nil, count: results.count)
        heatmaps.withUnsafeMutableBufferPointer { slots in
            DispatchQueue.concurrentPerform(iterations: results.count) { index in
                guard case .success(let outcome) = results[index] else { return }
                let start = monotonicNanoseconds()
                let threshold = Verdict.Threshold(deciding: outcome, on: line).value
                slots[index] = Result { (try outcome.renderHeatmapPNG(threshold, line.heatmapLabel), Double(monotonicNanoseconds() - start) / 1e6) }
            }
        }
        return heatmaps
    }
}
