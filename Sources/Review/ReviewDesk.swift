import Checkpoints
import ContinuousLearning
import DaemonSupport
import Foundation
import InspectionDaemon
import OperatorErrors
import SystemPackage

/// One verdict as the queue shows it.
public struct QueueItem: Sendable {
    public var item: String
    public var verdict: Verdict
    /// The archived input is there to show and to answer with.
    public var hasImage: Bool
    public var hasHeatmap: Bool
    /// The live answer (not undone), if any.
    public var answer: ReviewRecord?

    /// How far the score lies from the threshold, relative to it: 0 is the most uncertain.
    /// Error verdicts (no score) sort last.
    public var uncertainty: Double {
        guard let score = verdict.score, let threshold = verdict.threshold?.value, threshold > 0 else { return .infinity }
        return abs(Double(score) - Double(threshold)) / Double(threshold)
    }
}

/// Which verdicts the queue lists.
public struct QueueFilter: Sendable {
    /// Error verdicts have no score to judge by; they are listed when asked for.
    public var decisions: Set<Verdict.Decision> = [.ok, .defect]
    public var minimumScore: Float?
    public var maximumScore: Float?
    /// Days `YYYY-MM-DD` (UTC, of `decided_at`), inclusive.
    public var fromDay: String?
    public var toDay: String?
    public enum Answered: String, Sendable { case no, yes, all }
    public var answered: Answered = .no
    public var limit = 200

    public init() {}

    func admits(_ item: QueueItem) -> Bool {
        guard decisions.contains(item.verdict.verdict) else { return false }
        if let minimumScore, (item.verdict.score ?? -.infinity) < minimumScore { return false }
        if let maximumScore, (item.verdict.score ?? .infinity) > maximumScore { return false }
        let day = String(item.verdict.decidedAt.prefix(10))
        if let fromDay, day < fromDay { return false }
        if let toDay, day > toDay { return false }
        switch answered {
        case .no: return item.answer == nil
        case .yes: return item.answer != nil
        case .all: return true
        }
    }
}

/// Who answers, as the server established it.
public struct Reviewer: Sendable, Equatable {
    public var name: String
    public var authenticated: Bool

    public init(name: String, authenticated: Bool) {
        self.name = name
        self.authenticated = authenticated
    }
}

/// One line's verdicts, answers and log. Answers are serialised by a lock: at most one is in
/// flight per line, so after a crash only the log's last record can be half done, and `open`
/// finishes it.
///
/// An answer is first validated (the verdict exists, its archived input is there with the
/// digest the verdict names), then recorded in the log (fsync), then carried out: the input is
/// hard-linked (or copied, temporary name, fsync, rename) into accepted/ or defects/ as
/// `<sha256>.<ext>`, the name learning itself uses, so doing it twice yields one file. The
/// archive is only ever read.
public final class ReviewDesk: @unchecked Sendable {
    public let line: LineConfiguration
    let lineFiles: LineFiles
    let log: ReviewLog
    private let lock = NSLock()
    private var cache: [String: (modified: Int64, verdict: Verdict?)] = [:]
    let clock: () -> Date

    public init(line: LineConfiguration, stateDirectory: FilePath, syscalls: any Syscalls = SystemCalls(), clock: @escaping () -> Date = Date.init) {
        self.line = line
        self.lineFiles = LineFiles(line: line, syscalls: syscalls)
        self.log = ReviewLog(path: stateDirectory.appending("review-\(line.name).jsonl"), syscalls: syscalls)
        self.clock = clock
    }

    var files: FileOperations { lineFiles.files }

    /// Reads the log and finishes its last answer if a crash interrupted it.
    public func open() throws {
        try lock.withLock {
            try log.load()
            if let last = log.records.last, log.completedID != last.id { try finish(last) }
        }
    }

    // MARK: reading

    /// Every verdict in the outbox with its live answer; verdict files are parsed once per
    /// modification.
    public func allItems() throws -> [QueueItem] {
        try lock.withLock {
            let names = try lineFiles.verdictNames()
            var present = Set<String>()
            for (item, modified) in names {
                present.insert(item)
                if cache[item]?.modified != modified { cache[item] = (modified, lineFiles.verdict(item)) }
            }
            for item in cache.keys where !present.contains(item) { cache[item] = nil }
            let answers = liveAnswers()
            return cache.compactMap { item, entry in
                entry.verdict.map {
                    QueueItem(item: item, verdict: $0, hasImage: $0.verdict != .error && lineFiles.archivedInput(item) != nil,
                              hasHeatmap: lineFiles.heatmap(of: $0) != nil, answer: answers[item])
                }
            }
        }
    }

    /// The queue: admitted items, most uncertain first, newest first among equals.
    public func queue(_ filter: QueueFilter) throws -> [QueueItem] {
        let admitted = try allItems().filter(filter.admits)
        let sorted = admitted.sorted {
            $0.uncertainty != $1.uncertainty ? $0.uncertainty < $1.uncertainty : $0.verdict.decidedAt > $1.verdict.decidedAt
        }
        return Array(sorted.prefix(max(0, filter.limit)))
    }

    public var records: [ReviewRecord] { lock.withLock { log.records } }

    /// The bytes of the archived input of `item`.
    public func image(_ item: String) throws -> (bytes: [UInt8], name: String) {
        guard let path = lineFiles.archivedInput(item) else {
            throw OperatorError(.notFound, path: item, problem: "no archived input for this item", hint: "only inputs in the line's archive can be shown")
        }
        return (try lineFiles.read(path, maximumBytes: line.maximumInputBytes), path.lastComponent?.string ?? item)
    }

    /// The heatmap PNG of `item`.
    public func heatmap(_ item: String) throws -> [UInt8] {
        guard let verdict = lineFiles.verdict(item), let path = lineFiles.heatmap(of: verdict) else {
            throw OperatorError(.notFound, path: item, problem: "no heatmap for this item", hint: "error verdicts have none")
        }
        return try lineFiles.read(path, maximumBytes: line.maximumInputBytes)
    }

    // MARK: answering

    /// Records and carries out an answer. A retry with the same `requestID` returns the first
    /// record and changes nothing.
    public func answer(_ item: String, _ answer: ReviewRecord.Answer, label: String? = nil, note: String? = nil,
                       reviewer: Reviewer, requestID: String) throws -> ReviewRecord {
        precondition(answer != .undo, "undo goes through undo(_:)")
        return try lock.withLock {
            if let earlier = try retried(requestID, item: item) { return earlier }
            if let live = liveAnswers()[item] {
                throw OperatorError(.conflict, path: item, problem: "already answered \(live.answer.rawValue) by \(live.who) at \(live.at)",
                                  hint: "undo that answer first")
            }
            guard let verdict = lineFiles.verdict(item) else {
                throw OperatorError(.notFound, path: item, problem: "no verdict \(item).json in \(line.outbox)", hint: "reload the queue")
            }
            var storedAs: String?
            if answer != .skip {
                let (_, key) = try destination(of: answer)
                guard verdict.verdict != .error, let input = lineFiles.archivedInput(item) else {
                    throw OperatorError(.conflict, path: item, problem: "the input is not in the archive \(line.archive?.string ?? "(none configured)")",
                                      hint: "only archived inputs can be accepted or kept as defects; answer skip")
                }
                let bytes = try lineFiles.read(input, maximumBytes: line.maximumInputBytes)
                guard sha256Hex(of: bytes) == verdict.sha256 else {
                    throw OperatorError(.conflict, path: input.string, problem: "the archived file is not the one judged (its SHA-256 differs from the verdict's)",
                                      hint: "the archive was changed; answer skip")
                }
                storedAs = "\(key)/" + TrainingStore.acceptedFileName(digest: verdict.sha256, originalName: verdict.file)
            }
            let record = ReviewRecord(
                id: requestID, at: iso8601(nanosecondsSinceEpoch: Int64(clock().timeIntervalSince1970 * 1e9)), who: reviewer.name,
                authenticated: reviewer.authenticated, line: line.name, item: item, file: verdict.file, sha256: verdict.sha256,
                verdict: verdict.verdict, score: verdict.score, threshold: verdict.threshold?.value, modelVersion: verdict.model.version,
                answer: answer, label: label, note: note, storedAs: storedAs, undoes: nil)
            try log.append(record)
            try finish(record)
            return record
        }
    }

    /// Takes back the live answer of `item`: removes its file from accepted/ or defects/ (unless
    /// another live answer put the same image there). Refused once learning has taken an
    /// accepted image into its training store.
    public func undo(_ item: String, reviewer: Reviewer, requestID: String) throws -> ReviewRecord {
        try lock.withLock {
            if let earlier = try retried(requestID, item: item) { return earlier }
            guard let live = liveAnswers()[item] else {
                throw OperatorError(.conflict, path: item, problem: "no answer to undo", hint: "reload the queue")
            }
            if live.answer == .normal, let stored = live.storedAs, try storedFile(stored).flatMap({ try files.syscalls.lstat($0) }) == nil {
                throw OperatorError(.conflict, path: stored, problem: "learning has already taken this image into the training store",
                                  hint: "it can no longer be undone here; roll back the model (`rstpm model rollback`) if a retrain used it")
            }
            var record = live
            record.id = requestID
            record.at = iso8601(nanosecondsSinceEpoch: Int64(clock().timeIntervalSince1970 * 1e9))
            record.who = reviewer.name
            record.authenticated = reviewer.authenticated
            record.answer = .undo
            record.label = nil
            record.note = nil
            record.undoes = live.id
            try log.append(record)
            try finish(record)
            return record
        }
    }

    // MARK: on the lock

    /// The first record with `requestID`; finishing it again if it is the last one (its
    /// effect may have been cut short).
    private func retried(_ requestID: String, item: String) throws -> ReviewRecord? {
        guard let index = log.records.lastIndex(where: { $0.id == requestID }) else { return nil }
        let record = log.records[index]
        guard record.item == item else {
            throw OperatorError(.conflict, path: item, problem: "request id \(requestID) was already used for \(record.item)", hint: "send a new request id")
        }
        if index == log.records.count - 1, log.completedID != record.id { try finish(record) }
        return record
    }

    /// The answer in force per item: the last answer not undone.
    private func liveAnswers() -> [String: ReviewRecord] {
        var live: [String: ReviewRecord] = [:]
        for record in log.records {
            if record.answer == .undo {
                if live[record.item]?.id == record.undoes { live[record.item] = nil }
            } else {
                live[record.item] = record
            }
        }
        return live
    }

    private func destination(of answer: ReviewRecord.Answer) throws -> (FilePath, String) {
        guard let learning = line.learning else {
            throw OperatorError(.conflict, path: line.name, problem: "the line has no `learning:` block, so there is no accepted/ or defects/ folder",
                              hint: "add lines[].learning with accepted: and defects: to rstpmd.yaml")
        }
        if answer == .normal { return (learning.accepted, "accepted") }
        guard let defects = learning.defects else {
            throw OperatorError(.conflict, path: line.name, problem: "the line's learning block has no `defects:` folder",
                              hint: "add lines[].learning.defects to rstpmd.yaml")
        }
        return (defects, "defects")
    }

    /// `accepted/NAME` or `defects/NAME` of a record as a path.
    private func storedFile(_ storedAs: String) throws -> FilePath? {
        let parts = storedAs.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2, let name = LineFiles.plainName(parts[1]) else { return nil }
        let (folder, _) = try destination(of: parts[0] == "accepted" ? .normal : .defect)
        return folder.appending(name)
    }

    /// Carries out the log's last record and notes that it is done, so that a later start does
    /// not carry it out again (an accepted image that learning has since taken and not kept
    /// would otherwise be put back).
    private func finish(_ record: ReviewRecord) throws {
        try carryOut(record)
        try log.markCompleted(record.id)
    }

    /// Makes the files agree with `record` (idempotent): an answer's image is in its folder, an
    /// undone answer's image is not (unless another live answer holds it). A normal answer's
    /// image that learning already took is not put back.
    private func carryOut(_ record: ReviewRecord) throws {
        switch record.answer {
        case .skip:
            return
        case .normal, .defect:
            guard let stored = record.storedAs, let target = try storedFile(stored) else { return }
            guard try files.syscalls.lstat(target) == nil else { return }
            if record.answer == .normal, takenByLearning(record.sha256) { return }
            guard let input = lineFiles.archivedInput(record.item) else {
                throw OperatorError(.conflict, path: record.item, problem: "the archived input is gone", hint: "answer again once it is back, or skip")
            }
            try place(input, sha256: record.sha256, at: target)
        case .undo:
            guard let stored = record.storedAs, let target = try storedFile(stored) else { return }
            let stillNeeded = liveAnswers().values.contains { $0.storedAs == stored }
            if !stillNeeded, try files.syscalls.lstat(target) != nil {
                try files.syscalls.unlink(target)
                try files.syncDirectory(target.removingLastComponent())
            }
        }
    }

    /// A hard link of the archived input, else a durable copy; never a move.
    private func place(_ input: FilePath, sha256: String, at target: FilePath) throws {
        do {
            try files.syscalls.hardLink(input, to: target)
        } catch Errno.fileExists {
            return
        } catch {
            // Another file system or mount (EXDEV), or not allowed (EPERM): copy instead.
            let bytes = try lineFiles.read(input, maximumBytes: line.maximumInputBytes)
            guard sha256Hex(of: bytes) == sha256 else {
                throw OperatorError(.conflict, path: input.string, problem: "the archived file changed", hint: "answer skip")
            }
            try files.writeDurably(bytes, to: target)
            return
        }
        try files.syncDirectory(target.removingLastComponent())
    }

    private func takenByLearning(_ sha256: String) -> Bool {
        guard let store = line.learning?.trainingStore else { return false }
        return (try? TrainingStore.storedDigests(root: store, syscalls: files.syscalls).contains(sha256)) ?? false
    }
}
