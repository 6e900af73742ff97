// LinePipeline's intake: inotify, claiming inputs by rename into the work directory, and
// listing what the work directory holds.
import DaemonSupport
import Foundation
import SystemPackage

extension LinePipeline {
    func startInotify() {
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else {
            logger.event(.watcherFailed, .warning, "inotify unavailable; polling only", ["errno": "\(Errno(rawValue: errno))"])
            return
        }
        let mask = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR)
        guard inotify_add_watch(descriptor, configuration.inbox.string, mask) >= 0 else {
            logger.event(.watcherFailed, .warning, "cannot watch inbox with inotify; polling only",
                         ["image.path": "\(configuration.inbox)", "errno": "\(Errno(rawValue: errno))"])
            close(descriptor)
            return
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        source.setEventHandler { [weak self] in
            guard let self else { return }
            if self.noteInotifyEvents() { self.runPass() }
        }
        source.setCancelHandler { [weak self] in
            self?.inotifyDescriptor = -1
            close(descriptor)
        }
        // Queued before the source can fire, and never racing a pass that the timer started.
        queue.async { self.inotifyDescriptor = descriptor }
        source.resume()
        inotifySource = source
    }

    /// Reads the pending inotify events and notes the files renamed into the inbox; true when
    /// there were events. Also called within a pass before each claim, so that a burst still
    /// arriving joins the running pass instead of waiting for the next one. Call on `queue`.
    func noteInotifyEvents() -> Bool {
        let descriptor = inotifyDescriptor
        guard descriptor >= 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var sawEvent = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            var offset = 0
            while offset + 16 <= count {
                let mask = buffer.withUnsafeBytes { $0.load(fromByteOffset: offset + 4, as: UInt32.self) }
                let length = Int(buffer.withUnsafeBytes { $0.load(fromByteOffset: offset + 12, as: UInt32.self) })
                let nameBytes = buffer[(offset + 16)..<min(offset + 16 + length, count)].prefix { $0 != 0 }
                if mask & UInt32(IN_MOVED_TO) != 0, let name = String(validating: Array(nameBytes), as: UTF8.self) {
                    scanner.noteMovedIn(name)
                }
                sawEvent = true
                offset += 16 + length
            }
        }
        return sawEvent
    }

    func claimBatch(now: Int64, summary: inout PassSummary) {
        guard !shouldStop else { return }
        _ = noteInotifyEvents()
        var claimedNow = 0
        do {
            // Below the space floor nothing new is claimed; what is in work/ goes on.
            let scanned = intakeAllowed() ? try scanner.scan(now: now) : []
            for name in scanned where claimedNow < configuration.batchSize && !shouldStop {
                if claim(name) { claimedNow += 1 } else { summary.claimsLost += 1 }
            }
            // Never inspected, so not part of a batch: claimed like any input, then quarantined.
            for entry in scanner.completeUndecodable where !shouldStop && intakePauseReason == nil {
                if claim(entry, forget: { scanner.forget(undecodable: entry) }) { summary.claimed += 1 } else { summary.claimsLost += 1 }
            }
        } catch {
            logger.event(.watcherFailed, .error, "cannot read inbox", ["image.path": "\(configuration.inbox)", "error": "\(error)"])
        }
        reportIgnoredEntries()
        summary.claimed += claimedNow
        quarantineUndecodableEntries(now: now, summary: &summary)
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

    /// Claims `name` by renaming it into the work directory. Losing the race to another daemon
    /// (ENOENT) is normal. A same-named file still in work/ waits in the inbox.
    func claim(_ name: String) -> Bool {
        guard let entry = FilePath.Component(name) else { return false }
        return claim(entry) { scanner.forget(name) }
    }

    /// `claim` by the name's bytes; `forget` tells the scanner that the name left the inbox.
    func claim(_ entry: FilePath.Component, forget: () -> Void) -> Bool {
        let source = configuration.inbox.appending(entry)
        let destination = workDirectory.appending(entry)
        if (try? files.syscalls.lstat(destination)) != nil { return false }
        do {
            try files.syscalls.rename(source, to: destination)
            forget()
            return true
        } catch Errno.noSuchFileOrDirectory {
            forget()
            metrics.increment("rstpmd_claims_lost_total", labels: ["line": configuration.name])
            logger.event(.claimLost, .debug, "another daemon claimed the input first", ["image.path": "\(source)"])
            return false
        } catch {
            logger.event(.retrying, .warning, "cannot claim input: \(error)", ["image.path": "\(source)", "errno": "\(error)"])
            return false
        }
    }

    /// Work items in claim order (ctime, then name).
    func workItems() throws -> [(name: String, status: FileStatus)] {
        var items: [(String, FileStatus)] = []
        for name in try files.syscalls.listDirectory(workDirectory) where !name.hasPrefix(".") {
            if let status = try? files.syscalls.lstat(workDirectory.appending(name)) { items.append((name, status)) }
        }
        return items.sorted { ($0.1.changeNanoseconds, $0.0) < ($1.1.changeNanoseconds, $1.0) }
    }
}
