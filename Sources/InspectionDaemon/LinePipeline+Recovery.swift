// LinePipeline after a crash: the crash counted against the inputs in flight (the work
// queue's in-flight record), and the temporary files a killed writer left.
import DaemonSupport
import Foundation
import SystemPackage

extension LinePipeline {
    /// Everything in the work directory, as at start after a crash: outputs are idempotent.
    @discardableResult
    public func recover(now: Int64) -> PassSummary {
        CrashMarker.protectCurrentThread()
        let pending = (try? workQueue.items()) ?? []
        if !pending.isEmpty {
            logger.event(.recovered, .notice, "recovering \(pending.count) input(s) left in the work directory", ["count": "\(pending.count)", "image.path": "\(workDirectory)"])
            metrics.increment("rstpmd_recovered_total", labels: ["line": configuration.name], by: Double(pending.count))
        }
        removeStaleTemporaryFiles()
        var summary = PassSummary()
        writer.quarantineUndecodableEntries(now: now, summary: &summary)
        quarantineCrashSuspects(pending: pending, now: now, summary: &summary)
        stages.processWork(now: now, summary: &summary)
        stages.finishOutputs(summary: &summary)
        return summary
    }

    /// Reads what the last crash left (the work queue's in-flight record), and counts the
    /// crash when `CrashMarker` left its mark: the suspects are inspected alone from now on.
    func accountForCrash() {
        let crashed = (try? files.syscalls.lstat(crashMarkerPath)) != nil
        let inFlight = workQueue.accountForCrash(crashed: crashed)
        guard crashed else { return }
        metrics.increment("rstpmd_crash_restarts_total", labels: ["line": configuration.name])
        try? files.syscalls.unlink(crashMarkerPath)
        logger.event(.recovered, .error, "the daemon crashed (fatal signal) with \(inFlight) input(s) of this line in flight; they are inspected alone now",
                     ["count": "\(inFlight)", "image.path": "\(workDirectory)"])
    }

    /// Inputs present at `WorkQueue.crashLimit` crashes go to quarantine as `crashed_inspection`.
    func quarantineCrashSuspects(pending: [WorkQueue.Item], now: Int64, summary: inout PassSummary) {
        let counts = workQueue.crashSuspectsAtLimit()
        for item in pending.sorted(by: { $0.name < $1.name }) {
            guard let count = counts[item.name] else { continue }
            writer.quarantine(name: item.name, sha256: nil, received: item.status.changeNanoseconds, kind: "crashed_inspection",
                              message: "the daemon crashed \(count) times while this input was being inspected; it is not tried again",
                              hint: "keep the file for a bug report (journalctl -u rstpmd shows the crashes); move it back to the inbox to try again",
                              now: now, summary: &summary)
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
