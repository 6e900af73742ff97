import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage

/// One line of a line's review log: an answer to one verdict, or the undoing of one.
public struct ReviewRecord: Codable, Sendable, Equatable {
    public enum Answer: String, Codable, Sendable, CaseIterable { case normal, defect, skip, undo }

    /// Chosen by the page for each click and sent again on a retry, so a retried answer is
    /// recorded once.
    public var id: String
    public var at: String
    public var who: String
    /// `who` was checked against the reviewer list (else it is the name the page sent).
    public var authenticated: Bool
    public var line: String
    /// The verdict's file name in the outbox without `.json`.
    public var item: String
    /// The input's name as it arrived, its digest and the model's decision, copied from the verdict.
    public var file: String
    public var sha256: String
    public var verdict: Verdict.Decision
    public var score: Float?
    public var threshold: Float?
    public var modelVersion: String
    public var answer: Answer
    public var label: String?
    public var note: String?
    /// Where the answer put the image: `accepted/<sha256>.<ext>` or `defects/<sha256>.<ext>`.
    public var storedAs: String?
    /// For `undo`: the id of the answer it takes back.
    public var undoes: String?

    enum CodingKeys: String, CodingKey {
        case id, at, who, authenticated, line, item, file, sha256, verdict, score, threshold
        case modelVersion = "model_version"
        case answer, label, note
        case storedAs = "stored_as"
        case undoes
    }
}

/// A line's append-only review log, `<state>/review-<line>.jsonl`: one JSON record per line,
/// each appended with a single write(2) and fsynced before the answer is confirmed. A record cut
/// short by a crash (no final newline) is skipped on reading, and the next append starts on a new
/// line, so the file is never rewritten. Beside it, `review-<line>.done` names the last record
/// whose files were put in place (written durably after them).
final class ReviewLog {
    let path: FilePath
    let files: FileOperations
    private(set) var records: [ReviewRecord] = []
    /// The id in the `.done` file.
    private(set) var completedID: String?
    private var endsWithNewline = true
    private var exists = false

    init(path: FilePath, syscalls: any Syscalls) {
        self.path = path
        self.files = FileOperations(syscalls: syscalls)
    }

    var completedPath: FilePath { FilePath(String(path.string.dropLast(".jsonl".count)) + ".done") }

    func markCompleted(_ id: String) throws {
        try files.writeDurably(Array(id.utf8), to: completedPath)
        completedID = id
    }

    func load() throws {
        records = []
        completedID = try files.syscalls.lstat(completedPath) == nil ? nil : String(decoding: try files.readFile(completedPath, maximumBytes: 256), as: UTF8.self)
        guard try files.syscalls.lstat(path) != nil else {
            exists = false
            endsWithNewline = true
            return
        }
        exists = true
        let bytes = try files.readFile(path, maximumBytes: 1 << 30)
        endsWithNewline = bytes.last.map { $0 == 0x0A } ?? true
        let decoder = JSONDecoder()
        // A line that does not decode is a record a crash cut short: skipped.
        records = bytes.split(separator: 0x0A, omittingEmptySubsequences: true).compactMap { try? decoder.decode(ReviewRecord.self, from: Data($0)) }
    }

    /// Appends `record` durably: O_APPEND, one write, fsync; the directory is fsynced when the
    /// file was created.
    func append(_ record: ReviewRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line: [UInt8] = endsWithNewline ? [] : [0x0A]
        line += Array(try encoder.encode(record))
        line.append(0x0A)
        let descriptor = try files.syscalls.open(path, .writeOnly, options: [.append, .create, .closeOnExec, .noFollow],
                                                 permissions: [.ownerReadWrite, .groupRead])
        do {
            try line.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = try files.syscalls.write(descriptor, UnsafeRawBufferPointer(rebasing: raw[offset...]))
                    if written <= 0 { throw Errno.ioError }
                    offset += written
                }
            }
            try files.syscalls.fsync(descriptor)
            try files.syscalls.close(descriptor)
        } catch {
            try? files.syscalls.close(descriptor)
            // Whatever reached the file may end without a newline; the next append starts a line.
            endsWithNewline = false
            throw error
        }
        if !exists {
            try files.syncDirectory(path.removingLastComponent())
            exists = true
        }
        endsWithNewline = true
        records.append(record)
    }
}
