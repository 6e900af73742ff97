import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage

/// The only files of a line the station reads: verdicts and heatmaps in the outbox, inputs in
/// the archive. Every name is one path component checked here (no `/`, no NUL, not `.` or
/// `..`, not hidden), every file must be a regular file by lstat and is opened with
/// O_NOFOLLOW, so whatever a URL or a verdict's `heatmap` field says, nothing outside these two
/// folders is reached, and a symbolic link inside them is refused rather than followed.
struct LineFiles {
    let line: LineConfiguration
    let files: FileOperations

    /// Verdicts and heatmaps are small; archived inputs are capped like the daemon caps them.
    static let maximumVerdictBytes = 1 << 20

    init(line: LineConfiguration, syscalls: any Syscalls) {
        self.line = line
        self.files = FileOperations(syscalls: syscalls)
    }

    /// `name` when it is a plain file name in a folder, else nil.
    static func plainName(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 255, !name.hasPrefix("."), !name.contains("/"), !name.contains("\0"),
              FilePath.Component(name)?.kind == .regular
        else { return nil }
        return name
    }

    /// The path of a regular file called `name` directly inside `folder`, or nil.
    func regularFile(_ name: String, in folder: FilePath) -> FilePath? {
        guard let name = Self.plainName(name) else { return nil }
        let path = folder.appending(name)
        guard (try? files.syscalls.lstat(path))??.kind == .regular else { return nil }
        return path
    }

    func read(_ path: FilePath, maximumBytes: Int) throws -> [UInt8] {
        try files.readFile(path, maximumBytes: maximumBytes)
    }

    /// The verdict file names in the outbox (`<item>.json`), with their modification times.
    func verdictNames() throws -> [(item: String, modified: Int64)] {
        var names: [(String, Int64)] = []
        for name in try files.syscalls.listDirectory(line.outbox) where name.hasSuffix(".json") && Self.plainName(name) != nil {
            guard let status = try files.syscalls.lstat(line.outbox.appending(name)), status.kind == .regular else { continue }
            names.append((String(name.dropLast(5)), status.modificationNanoseconds))
        }
        return names
    }

    /// The verdict of `item`, or nil when there is none (or it is not a file, or not a verdict).
    func verdict(_ item: String) -> Verdict? {
        guard let path = regularFile(item + ".json", in: line.outbox),
              let bytes = try? read(path, maximumBytes: Self.maximumVerdictBytes)
        else { return nil }
        return try? JSONDecoder().decode(Verdict.self, from: Data(bytes))
    }

    /// The heatmap `verdict` names, when it is a file of the outbox.
    func heatmap(of verdict: Verdict) -> FilePath? {
        verdict.heatmap.flatMap { regularFile($0, in: line.outbox) }
    }

    /// The archived input of `item`: archived under the name its outputs carry (`item`), or,
    /// for a name shortened to fit (docs/verdict.md, "Long names"), the archive file whose
    /// shortened name is `item`. Nil without an archive or when it is gone.
    func archivedInput(_ item: String) -> FilePath? {
        guard let archive = line.archive else { return nil }
        if let path = regularFile(item, in: archive) { return path }
        guard item.utf8.count + ".json".utf8.count >= 240, let names = try? files.syscalls.listDirectory(archive) else { return nil }
        for name in names where fittingFileName(name, suffix: ".json") == item + ".json" {
            return regularFile(name, in: archive)
        }
        return nil
    }
}
