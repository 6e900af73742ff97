// A line's queue of claimed inputs: this instance's work directory, and what is known about
// each input in it (in flight, waiting for a retry or a second look, suspected of a crash).
import DaemonSupport
import Foundation
import Logging
import SystemPackage

/// The instance's work directory (`<work>/<instance>`) is the queue: an input is claimed by an
/// atomic rename into it and stays there until its outputs are durable and it has been
/// archived, deleted, left or quarantined. A transient error (ENOSPC, EIO, ...) leaves it
/// there to retry with backoff; a restart finds it there again. The state beside the files is
/// written by the line's queue and its output queue, under one lock.
public final class WorkQueue {
    public let directory: FilePath
    let inbox: FilePath
    let lineName: String
    let files: FileOperations
    let metrics: MetricsRegistry
    var logger: Logger
    /// The second look waits until the input has stayed unchanged this long: four settle
    /// intervals, for writers that pause longer than one. Without a settle interval files are
    /// complete when they appear, and the first look is the last.
    public let secondLookNanoseconds: Int64
    /// Beside the work directory, not in it: work/<instance> holds inputs only.
    let inFlightRecordPath: FilePath

    public struct Item: Sendable {
        public var name: String
        public var status: FileStatus
    }
    struct Retry { var attempts: Int; var notBefore: Int64 }
    /// An input that could not be decoded at the first look, as it was then or last changed.
    struct SecondLook { var size: Int64; var modification: Int64; var unchangedSince: Int64 }

    let lock = NSLock()
    /// Serialises writes of the in-flight record.
    let inFlightRecordLock = NSLock()
    private var retries: [String: Retry] = [:]
    /// The same for inputs whose names are not UTF-8, by the names' bytes.
    private var undecodableRetries: [FilePath.Component: Retry] = [:]
    /// Inputs in work/ that were in flight when the daemon crashed, with how many times; each is
    /// inspected alone, and one found at `crashLimit` crashes is quarantined.
    var crashCounts: [String: Int] = [:]
    /// An input in flight at this many crashes is not tried again.
    static let crashLimit = 2
    /// Inputs waiting for their second look.
    private var secondLooks: [String: SecondLook] = [:]
    /// Inputs of the batches being prepared, inspected or written.
    var inputsInFlight: Set<String> = []
    private var lastDepth = 0

    public init(directory: FilePath, inbox: FilePath, inFlightRecordPath: FilePath, lineName: String, settleIntervalSeconds: Double,
                files: FileOperations, metrics: MetricsRegistry, logger: Logger) {
        self.directory = directory
        self.inbox = inbox
        self.inFlightRecordPath = inFlightRecordPath
        self.lineName = lineName
        self.secondLookNanoseconds = Int64(4 * settleIntervalSeconds * 1e9)
        self.files = files
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: claims and listing

    /// Claims `name` by renaming it from the inbox into the work directory. Losing the race to
    /// another daemon (ENOENT) is normal. A same-named file still in work/ waits in the inbox.
    /// `forget` tells the scanner that the name left the inbox.
    public func claim(_ name: String, forget: () -> Void) -> Bool {
        guard let entry = FilePath.Component(name) else { return false }
        return claim(entry, forget: forget)
    }

    /// `claim` by the name's bytes (a name that is not UTF-8).
    public func claim(_ entry: FilePath.Component, forget: () -> Void) -> Bool {
        let source = inbox.appending(entry)
        let destination = directory.appending(entry)
        if (try? files.syscalls.lstat(destination)) != nil { return false }
        do {
            try files.syscalls.rename(source, to: destination)
            forget()
            return true
        } catch Errno.noSuchFileOrDirectory {
            forget()
            metrics.increment("rstpmd_claims_lost_total", labels: ["line": lineName])
            logger.event(.claimLost, .debug, "another daemon claimed the input first", ["image.path": "\(source)"])
            return false
        } catch {
            logger.event(.retrying, .warning, "cannot claim input: \(error)", ["image.path": "\(source)", "errno": "\(error)"])
            return false
        }
    }

    /// The inputs in work/ in claim order (ctime, then name); rename sets ctime, so a work
    /// file's ctime is its claim time, even after a restart.
    public func items() throws -> [Item] {
        var items: [Item] = []
        for name in try files.syscalls.listDirectory(directory) where !name.hasPrefix(".") {
            if let status = try? files.syscalls.lstat(directory.appending(name)) { items.append(Item(name: name, status: status)) }
        }
        return items.sorted { ($0.status.changeNanoseconds, $0.name) < ($1.status.changeNanoseconds, $1.name) }
    }

    /// Entries of work/ whose names are not UTF-8.
    func undecodableEntries() throws -> [FilePath.Component] {
        try files.syscalls.listDirectoryComponents(directory).filter { !$0.isUTF8 }
    }

    /// Counts what work/ holds now, for the metric and the status line.
    @discardableResult
    func recordDepth(fallback: Int) -> Int {
        let undecodable = (try? undecodableEntries().count) ?? 0
        let depth = ((try? items().count) ?? fallback) + undecodable
        metrics.set("rstpmd_queue_depth", labels: ["line": lineName], to: Double(depth))
        lock.lock(); lastDepth = depth; lock.unlock()
        return depth
    }

    /// Inputs in work/ at the end of the last pass.
    public var depth: Int { lock.lock(); defer { lock.unlock() }; return lastDepth }

    // MARK: what is due

    /// The items that may go into the next batch: not in flight, not waiting for a retry or a
    /// second look. A crash suspect goes alone (`isolated`), once nothing else is in flight;
    /// until then the others go. Forgets the second looks of inputs no longer in `items`.
    public func due(_ items: [Item], now: Int64) -> (items: [Item], isolated: Bool) {
        lock.lock(); defer { lock.unlock() }
        let present = Set(items.map(\.name))
        secondLooks = secondLooks.filter { present.contains($0.key) }
        var due = items.filter {
            !inputsInFlight.contains($0.name) && (retries[$0.name]?.notBefore ?? .min) <= now && !waitsForSecondLook($0, now: now)
        }
        let suspects = due.filter { crashCounts[$0.name] != nil }
        let isolated = !suspects.isEmpty && inputsInFlight.isEmpty
        if isolated { due = [suspects[0]] } else if !suspects.isEmpty { due.removeAll { crashCounts[$0.name] != nil } }
        return (due, isolated)
    }

    /// Whether the undecodable `entry` is due (not waiting for a retry).
    func isDue(_ entry: FilePath.Component, now: Int64) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return (undecodableRetries[entry]?.notBefore ?? .min) <= now
    }

    /// Whether `item` still waits for its second look: until its size and mtime have stayed the
    /// same for `secondLookNanoseconds` (a writer that keeps its descriptor open writes into the
    /// claimed file). Call under `lock`.
    private func waitsForSecondLook(_ item: Item, now: Int64) -> Bool {
        guard var look = secondLooks[item.name] else { return false }
        if look.size != item.status.size || look.modification != item.status.modificationNanoseconds {
            look = SecondLook(size: item.status.size, modification: item.status.modificationNanoseconds, unchangedSince: now)
            secondLooks[item.name] = look
        }
        return now - look.unchangedSince < secondLookNanoseconds
    }

    // MARK: in flight

    /// Takes `names` into flight and says which of them are at their second look.
    func enterFlight(_ names: [String]) -> [Bool] {
        lock.lock(); defer { lock.unlock() }
        inputsInFlight.formUnion(names)
        return names.map { secondLooks[$0] != nil }
    }

    func leaveFlight(_ names: [String]) {
        lock.lock(); inputsInFlight.subtract(names); lock.unlock()
    }

    // MARK: retries and second looks

    /// Backoff 1 s, 2 s, 4 s ... up to 5 minutes; the input stays in work/ meanwhile. `entry`:
    /// an input whose name is not UTF-8, `name` then its escaped spelling.
    public func scheduleRetry(_ name: String, entry: FilePath.Component? = nil, now: Int64, stage: String, error: Error, summary: inout PassSummary) {
        lock.lock()
        let previous = if let entry { undecodableRetries[entry] } else { retries[name] }
        var retry = previous ?? Retry(attempts: 0, notBefore: now)
        let delaySeconds = Self.backoffSeconds(afterAttempts: retry.attempts)
        retry.attempts += 1
        retry.notBefore = now + Int64(delaySeconds * 1e9)
        if let entry { undecodableRetries[entry] = retry } else { retries[name] = retry }
        lock.unlock()
        summary.retrying += 1
        metrics.increment("rstpmd_retries_total", labels: ["line": lineName, "stage": stage])
        logger.event(.retrying, .error, "\(name): \(stage) failed (\(error)); kept in the work directory, retry in \(Int(delaySeconds)) s", [
            "image.path": "\(entry.map { directory.appending($0) } ?? directory.appending(name))", "errno": "\(error)", "attempt": "\(retry.attempts)",
        ])
    }

    /// The wait before the next try of an input that failed `attempts` times before.
    public static func backoffSeconds(afterAttempts attempts: Int) -> Double {
        min(Double(1 << min(attempts, 9)), 300)
    }

    /// The input left work/ (decided, quarantined or gone): its retry, crash count and second
    /// look go too.
    public func finished(_ name: String) {
        lock.lock()
        retries[name] = nil
        crashCounts[name] = nil
        secondLooks[name] = nil
        lock.unlock()
    }

    /// `finished` for an input whose name is not UTF-8.
    func finished(undecodable entry: FilePath.Component) {
        lock.lock(); undecodableRetries[entry] = nil; lock.unlock()
    }

    /// Keeps an input that could not be decoded in work/ for a second look: a writer that paused
    /// longer than the settle interval may still be writing it.
    func awaitSecondLook(_ name: String, status: FileStatus, error: InspectionError, now: Int64) {
        lock.lock()
        secondLooks[name] = SecondLook(size: status.size, modification: status.modificationNanoseconds, unchangedSince: now)
        lock.unlock()
        logger.event(.secondLook, .info, "\(name): \(error.message); looked at again once it has stayed unchanged for \(Double(secondLookNanoseconds) / 1e9) s, in case it is still being written",
                     ["image.path": "\(directory.appending(name))", "error.kind": "\(error.kind)"])
    }

    /// Inputs in work/ waiting for their second look.
    public var awaitingSecondLook: Int {
        lock.lock(); defer { lock.unlock() }
        return secondLooks.count
    }
}
