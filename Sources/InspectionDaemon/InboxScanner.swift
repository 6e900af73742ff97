import SystemPackage

/// Decides which inbox files are complete. SMB and NFS writers send no inotify events and may
/// keep a file open between writes, so a file counts as complete once its size and mtime stayed
/// the same across the settle interval, or at once when it was renamed into the inbox
/// (IN_MOVED_TO: the writer finished it elsewhere). Never follows symbolic links.
public final class InboxScanner {
    struct Observation {
        var size: Int64
        var modification: Int64
        var unchangedSince: Int64
    }

    public let inbox: FilePath
    public let settleNanoseconds: Int64
    let syscalls: any Syscalls
    /// With `processed_inputs: leave`, a file whose verdict in here is newer is done already.
    let leaveOutbox: FilePath?
    private var observations: [String: Observation] = [:]
    private var movedIn: Set<String> = []
    /// Complete-or-settling files seen by the last scan (what `--once` waits for).
    public private(set) var pendingCount = 0
    /// Entries the last scan saw for the first time and will never take, with their kind
    /// (`symbolic_link`, `directory`, `other`, `non_utf8_name`): each is reported once while it stays.
    public private(set) var newlyIgnored: [(name: String, kind: String)] = []
    /// Ignored entries still in the inbox, so they are not reported again.
    private var ignored: Set<String> = []
    /// Entries with a name that is not UTF-8 seen by the last scan: they can never be taken,
    /// so `--once` counts them as left behind.
    public private(set) var undecodableCount = 0

    public init(inbox: FilePath, settleNanoseconds: Int64, syscalls: any Syscalls, leaveOutbox: FilePath? = nil) {
        self.inbox = inbox
        self.settleNanoseconds = settleNanoseconds
        self.syscalls = syscalls
        self.leaveOutbox = leaveOutbox
    }

    /// Temporary names that uploaders use while writing: never taken.
    public static func isTemporaryName(_ name: String) -> Bool {
        if name.hasPrefix(".") || name.hasSuffix("~") { return true }
        let lower = name.lowercased()
        return [".part", ".tmp", ".crdownload", ".partial", ".filepart"].contains { lower.hasSuffix($0) }
    }

    /// An inotify IN_MOVED_TO for `name`: complete without waiting for the settle interval.
    public func noteMovedIn(_ name: String) {
        movedIn.insert(name)
    }

    /// Looks at the inbox once at monotonic time `now` and returns the names of complete
    /// regular files, oldest observation first.
    public func scan(now: Int64) throws -> [String] {
        let names = try syscalls.listDirectory(inbox)
        var ready: [(String, Int64)] = []
        var present: Set<String> = []
        var stillIgnored: Set<String> = []
        newlyIgnored = []
        undecodableCount = 0
        func ignore(_ name: String, _ kind: String) {
            stillIgnored.insert(name)
            if !ignored.contains(name) { newlyIgnored.append((name, kind)) }
        }
        for name in names where !Self.isTemporaryName(name) {
            guard let status = try? syscalls.lstat(inbox.appending(name)) else {
                // The directory listing decodes a name that is not UTF-8 with U+FFFD, and no
                // file has that decoded name: it cannot be opened by any name we can spell.
                if name.unicodeScalars.contains("\u{FFFD}") {
                    ignore(name, "non_utf8_name")
                    undecodableCount += 1
                }
                continue
            }
            guard status.kind == .regular else {
                ignore(name, status.kind == .symbolicLink ? "symbolic_link" : status.kind == .directory ? "directory" : "other")
                continue
            }
            present.insert(name)
            if let leaveOutbox, let verdict = try? syscalls.lstat(leaveOutbox.appending(fittingFileName(name, suffix: ".json"))),
               verdict.modificationNanoseconds >= status.modificationNanoseconds {
                continue
            }
            if movedIn.contains(name) {
                ready.append((name, now))
                continue
            }
            if var previous = observations[name], previous.size == status.size, previous.modification == status.modificationNanoseconds {
                if now - previous.unchangedSince >= settleNanoseconds {
                    ready.append((name, previous.unchangedSince))
                }
                previous.unchangedSince = min(previous.unchangedSince, now)
                observations[name] = previous
            } else {
                observations[name] = Observation(size: status.size, modification: status.modificationNanoseconds, unchangedSince: now)
                if settleNanoseconds == 0 { ready.append((name, now)) }
            }
        }
        pendingCount = observations.keys.filter { present.contains($0) }.count + movedIn.intersection(present).count
        // Forget what left the inbox (claimed here or elsewhere, or removed).
        observations = observations.filter { present.contains($0.key) }
        movedIn = movedIn.intersection(present)
        ignored = stillIgnored
        return ready.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map(\.0)
    }

    /// Forgets a name after it was claimed (a later file of that name starts afresh).
    public func forget(_ name: String) {
        observations[name] = nil
        movedIn.remove(name)
    }
}
