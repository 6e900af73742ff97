// LinePipeline and disk space: the `min_free_space` floor that stops claims, and retention
// rounds on their own queue.
import DaemonSupport
import Foundation
import Synchronization
import SystemPackage

extension LinePipeline {
    /// The folders whose file systems the floor watches (the inbox shares work/'s).
    var spaceWatchedFolders: [(name: String, path: FilePath)] {
        [("work", configuration.work), ("outbox", configuration.outbox)] + (configuration.archive.map { [("archive", $0)] } ?? [])
            + [("quarantine", configuration.quarantine)]
    }

    /// Why the line claims nothing now (a folder's file system below `min_free_space`), or nil.
    public var intakePauseReason: String? { space.withLock { $0.intakePause } }

    /// Whether the line may claim: checks every folder's file system against the floor (a
    /// statvfs each, cheap beside a batch) and records the free space. Below the floor claims
    /// stop; they resume once every file system is 5 % above it, so that a line hovering at
    /// the floor does not flap. Each change is logged once, counted, and shown in STATUS.
    /// What is already in work/ is still inspected: its outputs are small beside a backlog.
    func intakeAllowed() -> Bool {
        var low: [String] = []
        var devices: Set<UInt64> = []
        var largestFloor: Int64 = 0
        let pausedBefore = intakePauseReason != nil
        for (name, path) in spaceWatchedFolders {
            guard let space = try? files.syscalls.fileSystemSpace(path) else { continue }
            metrics.set("rstpmd_free_bytes", labels: ["line": configuration.name, "folder": name], to: Double(space.availableBytes))
            guard let floor = configuration.minimumFreeSpace else { continue }
            // One message per file system, under the first folder on it.
            if let device = (try? files.syscalls.lstat(path))??.device, !devices.insert(device).inserted { continue }
            let floorBytes = floor.bytes(ofFileSystemSize: space.totalBytes)
            largestFloor = max(largestFloor, floorBytes)
            let needed = pausedBefore ? floorBytes + floorBytes / 20 : floorBytes
            if space.availableBytes < needed {
                low.append("\(name) \(path) has \(Self.describeBytes(space.availableBytes)) free, min_free_space is \(Self.describeBytes(floorBytes))")
            }
        }
        metrics.set("rstpmd_min_free_bytes", labels: ["line": configuration.name], to: Double(largestFloor))
        let reason = low.isEmpty ? nil : low.joined(separator: "; ")
        space.withLock { $0.intakePause = reason }
        if let reason, !pausedBefore {
            metrics.set("rstpmd_intake_paused", labels: ["line": configuration.name], to: 1)
            metrics.increment("rstpmd_intake_pauses_total", labels: ["line": configuration.name])
            logger.event(.intakePaused, .warning, "claiming no more inputs: \(reason); they wait in the inbox, and claiming resumes by itself once space is back",
                         ["image.path": "\(configuration.inbox)"])
            requestRetention()
        } else if reason == nil && pausedBefore {
            metrics.set("rstpmd_intake_paused", labels: ["line": configuration.name], to: 0)
            logger.event(.intakeResumed, .notice, "free space is back above min_free_space: claiming inputs again", ["image.path": "\(configuration.inbox)"])
        }
        return reason == nil
    }

    static func describeBytes(_ bytes: Int64) -> String {
        ByteCountFormatter.string(fromByteCount: bytes, countStyle: .binary)
    }

    // MARK: retention

    /// Starts a retention round on `retentionQueue` unless one runs or the last began less than
    /// `retentionIntervalNanoseconds` ago; `requestRetention` skips the wait.
    public func pruneIfDue(now: Int64) {
        guard !configuration.retention.isEmpty else { return }
        let due = space.withLock { state in
            let due = !state.retentionRunning
                && (state.retentionRequested || state.lastRetention.map { now - $0 >= Self.retentionIntervalNanoseconds } ?? true)
            if due { state.retentionRunning = true; state.retentionRequested = false; state.lastRetention = now }
            return due
        }
        guard due else { return }
        retentionQueue.async {
            self.prune()
            self.space.withLock { $0.retentionRunning = false }
        }
    }

    /// Asks for a retention round at the next housekeeping (the floor was just reached).
    func requestRetention() {
        space.withLock { $0.retentionRequested = true }
    }

    /// One retention round now, on the calling queue; `--once` and tests call it directly.
    @discardableResult
    public func prune() -> [String: RetentionPruner.FolderReport] {
        guard !configuration.retention.isEmpty else { return [:] }
        let reports = RetentionPruner(configuration: configuration, syscalls: files.syscalls).prune(now: wallClockNanoseconds())
        for (folder, report) in reports.sorted(by: { $0.key < $1.key }) {
            let labels = ["line": configuration.name, "folder": folder]
            metrics.set("rstpmd_retained_bytes", labels: labels, to: Double(report.retainedBytes))
            metrics.increment("rstpmd_retention_removed_total", labels: labels.merging(["reason": "age"]) { $1 }, by: Double(report.removedForAge))
            metrics.increment("rstpmd_retention_removed_total", labels: labels.merging(["reason": "size"]) { $1 }, by: Double(report.removedForSize))
            metrics.increment("rstpmd_retention_removed_bytes_total", labels: labels, by: Double(report.removedBytes))
            if report.removedForAge + report.removedForSize > 0 {
                logger.event(.retentionPruned, .info, "\(folder): removed \(report.removedForAge) item(s) past max_age_days and \(report.removedForSize) over max_bytes (\(Self.describeBytes(report.removedBytes)))",
                             ["image.path": "\(folder == "outbox" ? configuration.outbox : folder == "archive" ? configuration.archive! : configuration.quarantine)",
                              "retention.folder": "\(folder)", "count": "\(report.removedForAge + report.removedForSize)"])
            }
            if report.keptForVerdict > 0 {
                logger.event(.retentionPruned, .debug, "\(folder): \(report.keptForVerdict) item(s) past a limit are kept while their verdicts are in the outbox",
                             ["retention.folder": "\(folder)", "count": "\(report.keptForVerdict)"])
            }
            for error in report.errors {
                logger.event(.retentionPruned, .warning, "\(folder): \(error)", ["retention.folder": "\(folder)"])
            }
        }
        return reports
    }
}
