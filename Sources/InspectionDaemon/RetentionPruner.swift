import DaemonSupport
import Foundation
import SystemPackage

/// Removes the oldest of a line's outputs, archived and quarantined inputs once a folder passes
/// its `retention:` age or size. It never looks at the inbox or work/: an input there has no
/// verdict yet. What goes together goes together, and in an order that a crash between two
/// unlinks leaves nothing a reader could trip over:
///
/// - outbox: a verdict `<name>.json` with the heatmap it names. The verdict goes first (its
///   presence says the heatmap is complete, so a verdict never outlives its heatmap); a heatmap
///   left without verdict is removed once it is an hour old (younger, it may be an output being
///   written: the heatmap is written before its verdict).
/// - archive: an input. It stays while its verdict is in the outbox: whoever reads the verdict
///   may still fetch the image, so an image leaves only after its verdict has (by the outbox's
///   own retention or because a consumer took the verdict away).
/// - quarantine: an input with its `<name>.error.json`, input first; the same rule about its
///   `error` verdict in the outbox.
///
/// Folders are pruned in that order, and the outbox's removals are made durable (directory
/// fsync) before the archive's: a power cut must not bring back a verdict whose image is gone.
/// Files the daemon did not write (other suffixes in the outbox, names starting with '.') are
/// left alone.
public struct RetentionPruner {
    public let configuration: LineConfiguration
    let files: FileOperations
    /// A heatmap without verdict younger than this may be an output being written.
    static let orphanGraceNanoseconds: Int64 = 3600 * 1_000_000_000

    public init(configuration: LineConfiguration, syscalls: any Syscalls) {
        self.configuration = configuration
        self.files = FileOperations(syscalls: syscalls)
    }

    /// What one round did, per folder.
    public struct FolderReport: Sendable, Equatable {
        public var removedForAge = 0
        public var removedForSize = 0
        public var removedBytes: Int64 = 0
        /// Bytes left in the folder.
        public var retainedBytes: Int64 = 0
        /// Items over a limit kept because their verdict is still in the outbox.
        public var keptForVerdict = 0
        public var errors: [String] = []
    }

    /// Files that go together, oldest first by `time`.
    struct Item {
        var names: [String]
        var bytes: Int64
        /// Modification time (ns since the epoch) of the file that defines it.
        var time: Int64
        /// The outbox verdict whose presence keeps it, if any.
        var verdict: String?
        /// May be removed at all (a young heatmap without verdict may not).
        var removable = true
    }

    /// One round over the folders that have a limit; `now` in nanoseconds since the epoch.
    public func prune(now: Int64) -> [String: FolderReport] {
        var reports: [String: FolderReport] = [:]
        let retention = configuration.retention
        if let limit = retention.outbox {
            reports["outbox"] = prune(configuration.outbox, items: outboxItems(now: now), limit: limit, now: now)
        }
        if let limit = retention.archive, configuration.processedInputs == .archive, let archive = configuration.archive {
            reports["archive"] = prune(archive, items: inputItems(in: archive), limit: limit, now: now)
        }
        if let limit = retention.quarantine {
            reports["quarantine"] = prune(configuration.quarantine, items: inputItems(in: configuration.quarantine, recordSuffix: ".error.json"), limit: limit, now: now)
        }
        return reports
    }

    private func prune(_ folder: FilePath, items listing: Result<[Item], Error>, limit: RetentionLimit, now: Int64) -> FolderReport {
        var report = FolderReport()
        let items: [Item]
        switch listing {
        case .success(let found): items = found.sorted { ($0.time, $0.names[0]) < ($1.time, $1.names[0]) }
        case .failure(let error):
            report.errors.append("cannot read \(folder): \(error)")
            return report
        }
        var total = items.reduce(0) { $0 + $1.bytes }
        let oldest = limit.maximumAgeSeconds.map { now - Int64($0 * 1e9) }
        for item in items {
            let tooOld = oldest.map { item.time < $0 } ?? false
            let tooBig = limit.maximumBytes.map { total > $0 } ?? false
            guard tooOld || tooBig else { continue }  // not break: a later item may still be too old after a clock step
            guard item.removable else { continue }
            if let verdict = item.verdict, (try? files.syscalls.lstat(configuration.outbox.appending(verdict))) != nil {
                report.keptForVerdict += 1
                continue
            }
            do {
                for name in item.names {
                    do { try files.syscalls.unlink(folder.appending(name)) } catch Errno.noSuchFileOrDirectory {}
                }
                total -= item.bytes
                report.removedBytes += item.bytes
                if tooOld { report.removedForAge += 1 } else { report.removedForSize += 1 }
            } catch {
                report.errors.append("cannot remove \(folder.appending(item.names[0])): \(error)")
            }
        }
        report.retainedBytes = total
        if report.removedForAge + report.removedForSize > 0 {
            do { try files.syncDirectory(folder) } catch { report.errors.append("fsync of \(folder) failed: \(error)") }
        }
        return report
    }

    /// The regular files of `folder` not starting with '.', with their status.
    private func regularFiles(in folder: FilePath) throws -> [String: FileStatus] {
        var result: [String: FileStatus] = [:]
        for name in try files.syscalls.listDirectory(folder) where !name.hasPrefix(".") {
            if let status = try? files.syscalls.lstat(folder.appending(name)), status.kind == .regular { result[name] = status }
        }
        return result
    }

    /// Verdicts with their heatmaps, and heatmaps left without verdict.
    private func outboxItems(now: Int64) -> Result<[Item], Error> {
        Result {
            let found = try regularFiles(in: configuration.outbox)
            var claimed: Set<String> = []
            var items: [Item] = []
            for (name, status) in found where name.hasSuffix(".json") {
                var item = Item(names: [name], bytes: status.size, time: status.modificationNanoseconds)
                if let heatmap = heatmapName(ofVerdict: name), let heatmapStatus = found[heatmap] {
                    item.names.append(heatmap)
                    item.bytes += heatmapStatus.size
                    claimed.insert(heatmap)
                }
                items.append(item)
            }
            for (name, status) in found where name.hasSuffix(".heatmap.png") && !claimed.contains(name) {
                items.append(Item(names: [name], bytes: status.size, time: status.modificationNanoseconds,
                                  removable: now - status.modificationNanoseconds > Self.orphanGraceNanoseconds))
            }
            return items
        }
    }

    /// The heatmap a verdict names: `fittingFileName(outputName, ".heatmap.png")` as the line
    /// writes it; a verdict name cut to 255 bytes no longer spells its output name, so that one
    /// is read.
    private func heatmapName(ofVerdict name: String) -> String? {
        if name.utf8.count < 255 { return fittingFileName(String(name.dropLast(".json".count)), suffix: ".heatmap.png") }
        guard let data = try? files.readFile(configuration.outbox.appending(name), maximumBytes: 1 << 20),
              let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else { return nil }
        return object["heatmap"] as? String
    }

    /// Inputs (archive, quarantine) with their records (`recordSuffix`), each kept while the
    /// outbox holds its verdict; records left without input are items of their own.
    private func inputItems(in folder: FilePath, recordSuffix: String? = nil) -> Result<[Item], Error> {
        Result {
            let found = try regularFiles(in: folder)
            var claimed: Set<String> = []
            var items: [Item] = []
            for (name, status) in found where recordSuffix.map({ !name.hasSuffix($0) }) ?? true {
                var item = Item(names: [name], bytes: status.size, time: status.modificationNanoseconds, verdict: fittingFileName(name, suffix: ".json"))
                if let recordSuffix, case let record = fittingFileName(name, suffix: recordSuffix), let recordStatus = found[record] {
                    item.names.append(record)  // after the input: a record alone is harmless, an input without its reason is not
                    item.bytes += recordStatus.size
                    claimed.insert(record)
                }
                items.append(item)
            }
            if let recordSuffix {
                for (name, status) in found where name.hasSuffix(recordSuffix) && !claimed.contains(name) {
                    items.append(Item(names: [name], bytes: status.size, time: status.modificationNanoseconds))
                }
            }
            return items
        }
    }
}
