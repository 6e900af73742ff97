// What becomes of an inspected input: its verdict and heatmap written durably, quarantine with
// `<name>.error.json`, and disposal (archive, delete or leave).
import ContinuousLearning
import DaemonSupport
import Foundation
import Logging
import SystemPackage

/// Writes a line's outputs. Every write is durable (temp, fsync, rename); a failure leaves the
/// input in work/ and schedules its retry in the `WorkQueue`. Runs on the line's output queue,
/// and on its queue for inputs quarantined before inspection.
public final class OutcomeWriter {
    let configuration: LineConfiguration
    let instance: String
    let workQueue: WorkQueue
    let model: ServingModel
    let files: FileOperations
    let metrics: MetricsRegistry
    var logger: Logger
    /// Copies low-scoring `ok` images to accepted/ (learning's auto-acceptance), or nil.
    let autoAcceptor: AutoAcceptor?

    public init(configuration: LineConfiguration, instance: String, workQueue: WorkQueue, model: ServingModel, files: FileOperations,
         metrics: MetricsRegistry, logger: Logger, autoAcceptor: AutoAcceptor?) {
        self.configuration = configuration
        self.instance = instance
        self.workQueue = workQueue
        self.model = model
        self.files = files
        self.metrics = metrics
        self.logger = logger
        self.autoAcceptor = autoAcceptor
    }

    var workDirectory: FilePath { workQueue.directory }

    /// Writes the heatmap, then the verdict (its presence says the heatmap is complete too),
    /// offers an `ok` input to learning, and disposes of the input.
    func writeVerdict(_ input: LoadedInput, outcome: InspectionOutcome, decided: VerdictDecision, heatmap: Result<(png: [UInt8], milliseconds: Double), Error>,
                      model: ModelIdentity, workNames: Set<String>, now: Int64, summary: inout PassSummary) {
        let threshold = decided.threshold.value
        let decision = decided.verdict
        let (regions, truncated) = RegionExtractor.regions(
            map: outcome.anomalyMap, mapWidth: outcome.mapWidth, mapHeight: outcome.mapHeight,
            imageWidth: outcome.imageWidth, imageHeight: outcome.imageHeight, threshold: threshold)
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
                score: outcome.score, threshold: decided.threshold,
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
            workQueue.finished(input.name)
            summary.decided += 1
            metrics.increment("rstpmd_inputs_total", labels: ["line": configuration.name, "verdict": decision.rawValue])
            metrics.set("rstpmd_last_verdict_timestamp_seconds", labels: ["line": configuration.name], to: Double(wallClockNanoseconds()) / 1e9)
            metrics.set("rstpmd_threshold", labels: ["line": configuration.name], to: Double(threshold))
            if threshold > 0 { metrics.observe("rstpmd_score_ratio", labels: ["line": configuration.name], value: Double(outcome.score / threshold)) }
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "decode"], seconds: outcome.timings.decodeMilliseconds / 1e3)
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "infer"], seconds: outcome.timings.inferMilliseconds / 1e3)
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "heatmap"], seconds: heatmapMilliseconds / 1e3)
            metrics.observe("rstpmd_stage_seconds", labels: ["line": configuration.name, "stage": "write"], seconds: writeMilliseconds / 1e3)
            logger.event(.verdict, decision == .defect ? .notice : .info, "\(input.name): \(decision.rawValue) (score \(outcome.score), threshold \(threshold))", [
                "image.path": "\(configuration.inbox.appending(input.name))", "score": "\(outcome.score)", "verdict": "\(decision.rawValue)",
                "threshold": "\(threshold)", "regions": "\(regions.count)", "sha256": "\(input.sha256)",
            ])
        } catch {
            workQueue.scheduleRetry(input.name, now: now, stage: "write", error: error, summary: &summary)
        }
    }

    /// Archive, delete or leave a decided input. Once the rename or unlink is done the input is
    /// decided; a failing directory fsync after it only risks the input reappearing in work/
    /// after a power cut, where it is inspected again with the same outputs, so it is logged.
    func dispose(_ name: String, as outputName: String) throws {
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
    public func quarantine(name: String, entry: FilePath.Component? = nil, sha256: String?, received: Int64, kind: String, message: String, hint: String,
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
                line: configuration.name, instance: instance, model: model.current.inspector.modelIdentity, verdict: .error, score: nil, threshold: nil,
                regions: [], regionsTruncated: false, heatmap: nil, timingsMilliseconds: .init(decode: 0, infer: 0, heatmap: 0, write: 0),
                error: .init(kind: kind, message: message))
            try files.writeDurably(verdict.encoded(), to: configuration.outbox.appending(fittingFileName(storedName, suffix: ".json")))
            try files.syscalls.rename(source, to: destination)
            try files.syncDirectory(configuration.quarantine)
            try files.syncDirectory(workDirectory)
            if let entry { workQueue.finished(undecodable: entry) } else { workQueue.finished(name) }
            summary.quarantined += 1
            metrics.increment("rstpmd_inputs_total", labels: ["line": configuration.name, "verdict": "error"])
            metrics.set("rstpmd_last_verdict_timestamp_seconds", labels: ["line": configuration.name], to: Double(wallClockNanoseconds()) / 1e9)
            logger.event(.quarantined, .warning, "\(name): quarantined: \(message)", [
                "image.path": "\(destination)", "verdict": "error", "error.kind": "\(kind)",
            ])
        } catch {
            workQueue.scheduleRetry(name, entry: entry, now: now, stage: "quarantine", error: error, summary: &summary)
        }
    }

    /// Claimed inputs whose names are not UTF-8 go to quarantine as `non_utf8_name`, never
    /// inspected: no verdict or record could carry their names. They are stored under the name
    /// escaped (`caf%E9.png`), and the record keeps the original bytes.
    func quarantineUndecodableEntries(now: Int64, summary: inout PassSummary) {
        let entries: [FilePath.Component]
        do {
            entries = try workQueue.undecodableEntries()
        } catch {
            logger.event(.watcherFailed, .error, "cannot read work directory", ["image.path": "\(workDirectory)", "error": "\(error)"])
            return
        }
        for entry in entries {
            guard workQueue.isDue(entry, now: now), let status = try? files.syscalls.lstat(workDirectory.appending(entry)) else { continue }
            quarantine(name: escapedFileName(entry.bytes), entry: entry, sha256: nil, received: status.changeNanoseconds, kind: "non_utf8_name",
                       message: "the file name is not UTF-8, so no verdict or output name could carry it; the record keeps its bytes",
                       hint: "rename it to UTF-8 (e.g. convmv -f latin1 -t utf8) and put it back in the inbox to have it inspected",
                       now: now, summary: &summary)
        }
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
    public func outputName(for name: String, sha256: String, received: Int64, otherWorkNames: Set<String>) throws -> String {
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
    func outboxVerdict(_ verdictName: String, isOwnFor name: String, sha256: String, received: Int64) throws -> Bool {
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
    func availablePath(in directory: FilePath, for name: String) throws -> FilePath {
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
