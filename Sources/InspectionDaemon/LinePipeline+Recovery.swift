// LinePipeline after a crash: the in-flight record, the inputs a crash is blamed on, and the
// temporary files a killed writer left.
import DaemonSupport
import Foundation
import SystemPackage

extension LinePipeline {
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
    func accountForCrash() {
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
        metrics.increment("rstpmd_crash_restarts_total", labels: ["line": configuration.name])
        try? files.syscalls.unlink(crashMarkerPath)
        logger.event(.recovered, .error, "the daemon crashed (fatal signal) with \(record.inFlight.count) input(s) of this line in flight; they are inspected alone now",
                     ["count": "\(record.inFlight.count)", "image.path": "\(workDirectory)"])
    }

    /// Inputs present at `crashLimit` crashes go to quarantine as `crashed_inspection`.
    func quarantineCrashSuspects(pending: [(name: String, status: FileStatus)], now: Int64, summary: inout PassSummary) {
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
    struct InFlightRecord: Codable {
        var inFlight: [String] = []
        var crashes: [String: Int] = [:]
    }

    func readInFlightRecord() -> InFlightRecord {
        guard let bytes = try? files.readFile(inFlightRecordPath, maximumBytes: 64 << 20),
              let record = try? JSONDecoder().decode(InFlightRecord.self, from: Data(bytes))
        else { return InFlightRecord() }
        return record
    }

    /// Writes the record durably (a crash right after must find it): before a batch starts,
    /// and when inputs leave the flight, so an input waiting for a retry is not blamed for a
    /// crash in another's inspection.
    func writeInFlightRecord(inFlight: Set<String>? = nil) {
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
    func removeStaleTemporaryFiles() {
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
}
