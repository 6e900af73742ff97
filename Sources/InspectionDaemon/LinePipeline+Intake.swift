// LinePipeline's intake: what the watcher's scanner finds complete is claimed into the work
// queue, a batch at a time, unless the disk-space floor pauses claims.
import DaemonSupport
import Foundation
import SystemPackage

extension LinePipeline {
    func claimBatch(now: Int64, summary: inout PassSummary) {
        guard !shouldStop else { return }
        watcher.noteEvents()
        var claimedNow = 0
        do {
            // Below the space floor nothing new is claimed; what is in work/ goes on.
            let scanned = intakeAllowed() ? try scanner.scan(now: now) : []
            for name in scanned where claimedNow < configuration.batchSize && !shouldStop {
                if workQueue.claim(name, forget: { scanner.forget(name) }) { claimedNow += 1 } else { summary.claimsLost += 1 }
            }
            // Never inspected, so not part of a batch: claimed like any input, then quarantined.
            for entry in scanner.completeUndecodable where !shouldStop && intakePauseReason == nil {
                if workQueue.claim(entry, forget: { scanner.forget(undecodable: entry) }) { summary.claimed += 1 } else { summary.claimsLost += 1 }
            }
        } catch {
            logger.event(.watcherFailed, .error, "cannot read inbox", ["image.path": "\(configuration.inbox)", "error": "\(error)"])
        }
        reportIgnoredEntries()
        summary.claimed += claimedNow
        writer.quarantineUndecodableEntries(now: now, summary: &summary)
    }

    /// Inbox entries that are never taken, each logged once while it stays, and counted.
    func reportIgnoredEntries() {
        for (name, kind) in scanner.newlyIgnored {
            let reason: String
            switch kind {
            case "symbolic_link": reason = "is a symbolic link; links are never followed"
            case "directory": reason = "is a directory"
            default: reason = "is not a regular file (a FIFO, socket or device)"
            }
            metrics.increment("rstpmd_inbox_ignored_total", labels: ["line": configuration.name, "kind": kind])
            logger.event(.ignoredEntry, .warning, "\(name) \(reason): it stays in the inbox, never inspected",
                         ["image.path": "\(configuration.inbox.appending(name))", "entry.kind": "\(kind)"])
        }
    }
}
