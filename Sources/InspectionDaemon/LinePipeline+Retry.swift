// LinePipeline's retries: a transient error leaves the input in work/ to be tried again
// with exponential backoff.
import DaemonSupport
import Foundation
import SystemPackage

extension LinePipeline {
    /// Backoff 1 s, 2 s, 4 s ... up to 5 minutes; the input stays in work/ meanwhile. `entry`:
    /// an input whose name is not UTF-8, `name` then its escaped spelling.
    func scheduleRetry(_ name: String, entry: FilePath.Component? = nil, now: Int64, stage: String, error: Error, summary: inout PassSummary) {
        stateLock.lock()
        let previous = if let entry { undecodableRetries[entry] } else { retries[name] }
        var retry = previous ?? Retry(attempts: 0, notBefore: now)
        let delaySeconds = min(Double(1 << min(retry.attempts, 9)), 300)
        retry.attempts += 1
        retry.notBefore = now + Int64(delaySeconds * 1e9)
        if let entry { undecodableRetries[entry] = retry } else { retries[name] = retry }
        stateLock.unlock()
        summary.retrying += 1
        metrics.increment("rstpmd_retries_total", labels: ["line": configuration.name, "stage": stage])
        logger.event(.retrying, .error, "\(name): \(stage) failed (\(error)); kept in the work directory, retry in \(Int(delaySeconds)) s", [
            "image.path": "\(entry.map { workDirectory.appending($0) } ?? workDirectory.appending(name))", "errno": "\(error)", "attempt": "\(retry.attempts)",
        ])
    }

    /// nil: the input left work/ (decided, quarantined or gone), so its crash count and second
    /// look go too.
    func setRetry(_ retry: Retry?, for name: String) {
        stateLock.lock()
        retries[name] = retry
        if retry == nil {
            crashCounts[name] = nil
            secondLooks[name] = nil
        }
        stateLock.unlock()
    }
}
