// A line's eyes on its inbox: a poll timer for SMB and NFS, which send no events, plus inotify
// where the file system sends them; its `InboxScanner` decides which files are complete.
import DaemonSupport
import Foundation
import Logging
import SystemPackage

/// Watches one inbox and calls the line back on its queue: at every poll tick, and after each
/// burst of inotify events. A file renamed into the inbox (IN_MOVED_TO: the writer finished it
/// elsewhere) is noted to the scanner as complete at once; everything else waits out the
/// scanner's settle interval.
public final class InboxWatcher {
    public let scanner: InboxScanner
    let pollIntervalSeconds: Double
    let queue: DispatchQueue
    var logger: Logger
    private var timer: DispatchSourceTimer?
    private var source: DispatchSourceRead?
    /// The inotify descriptor while watching (-1 otherwise); read only on `queue`.
    private var descriptor: Int32 = -1

    public init(scanner: InboxScanner, pollIntervalSeconds: Double, queue: DispatchQueue, logger: Logger) {
        self.scanner = scanner
        self.pollIntervalSeconds = pollIntervalSeconds
        self.queue = queue
        self.logger = logger
    }

    /// Starts the poll timer and, where the file system supports it, inotify. `onChange` runs on
    /// `queue`: at once, at every poll interval, and after inotify events.
    public func start(onChange: @escaping () -> Void) {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now(), repeating: .milliseconds(Int(pollIntervalSeconds * 1000)), leeway: .milliseconds(50))
        timer.setEventHandler(handler: onChange)
        timer.resume()
        self.timer = timer
        startInotify(onEvents: onChange)
    }

    /// Stops the timer and inotify; a callback already queued still runs.
    public func stop() {
        timer?.cancel()
        source?.cancel()
        timer = nil
        source = nil
    }

    private func startInotify(onEvents: @escaping () -> Void) {
        let inbox = scanner.inbox
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else {
            logger.event(.watcherFailed, .warning, "inotify unavailable; polling only", ["errno": "\(Errno(rawValue: errno))"])
            return
        }
        let mask = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR)
        guard inotify_add_watch(descriptor, inbox.string, mask) >= 0 else {
            logger.event(.watcherFailed, .warning, "cannot watch inbox with inotify; polling only",
                         ["image.path": "\(inbox)", "errno": "\(Errno(rawValue: errno))"])
            close(descriptor)
            return
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        source.setEventHandler { [weak self] in
            if self?.noteEvents() == true { onEvents() }
        }
        source.setCancelHandler { [weak self] in
            self?.descriptor = -1
            close(descriptor)
        }
        // Queued before the source can fire, and never racing a callback that the timer started.
        queue.async { self.descriptor = descriptor }
        source.resume()
        self.source = source
    }

    /// Reads the pending inotify events and notes the files renamed into the inbox; true when
    /// there were events. The line also calls it before each claim, so that a burst still
    /// arriving joins the running pass instead of waiting for the next one. Call on `queue`.
    @discardableResult
    public func noteEvents() -> Bool {
        guard descriptor >= 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var sawEvent = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            let events = Self.events(in: buffer[..<count])
            for name in events.movedIn { scanner.noteMovedIn(name) }
            sawEvent = sawEvent || events.count > 0
        }
        return sawEvent
    }

    /// The events in a buffer of `struct inotify_event`s: how many, and the UTF-8 names that
    /// were renamed into the folder (a name that is not UTF-8 is left to the scan).
    static func events(in buffer: ArraySlice<UInt8>) -> (count: Int, movedIn: [String]) {
        let bytes = Array(buffer)
        var offset = 0, count = 0
        var movedIn: [String] = []
        while offset + 16 <= bytes.count {
            let mask = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) }
            let length = Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) })
            let nameBytes = bytes[(offset + 16)..<min(offset + 16 + length, bytes.count)].prefix { $0 != 0 }
            if mask & UInt32(IN_MOVED_TO) != 0, let name = String(validating: Array(nameBytes), as: UTF8.self) {
                movedIn.append(name)
            }
            count += 1
            offset += 16 + length
        }
        return (count, movedIn)
    }
}
