import DaemonSupport
import Glibc
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
    /// Files whose names are not UTF-8, by the names' bytes.
    private var undecodableObservations: [FilePath.Component: Observation] = [:]
    private var movedIn: Set<String> = []
    /// Complete-or-settling files seen by the last scan (what `--once` waits for).
    public private(set) var pendingCount = 0
    /// Complete files whose names are not UTF-8, found by the last scan. No name the daemon
    /// writes can carry them, so the line quarantines them under an escaped name.
    public private(set) var completeUndecodable: [FilePath.Component] = []
    /// Entries the last scan saw for the first time and will never take, with their kind
    /// (`symbolic_link`, `directory`, `other`): each is reported once while it stays.
    public private(set) var newlyIgnored: [(name: String, kind: String)] = []
    /// Ignored entries still in the inbox, so they are not reported again.
    private var ignored: Set<String> = []

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
    /// regular files, oldest observation first; sets `completeUndecodable`.
    public func scan(now: Int64) throws -> [String] {
        let names = try syscalls.listDirectory(inbox)
        var ready: [(String, Int64)] = []
        var present: Set<String> = []
        var stillIgnored: Set<String> = []
        var sawUndecodable = false
        newlyIgnored = []
        completeUndecodable = []
        func ignore(_ name: String, _ kind: String) {
            stillIgnored.insert(name)
            if !ignored.contains(name) { newlyIgnored.append((name, kind)) }
        }
        for name in names where !Self.isTemporaryName(name) {
            guard let status = try? syscalls.lstat(inbox.appending(name)) else {
                // The listing decodes a name that is not UTF-8 with U+FFFD, a name no file has.
                if name.unicodeScalars.contains("\u{FFFD}") { sawUndecodable = true }
                continue
            }
            guard status.kind == .regular else {
                ignore(name, Self.ignoredKind(status))
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
            if let since = settle(name, status, now: now, in: &observations) { ready.append((name, since)) }
        }
        var presentUndecodable: Set<FilePath.Component> = []
        if sawUndecodable {
            // Only the names' bytes open these entries.
            var settled: [(FilePath.Component, Int64)] = []
            for entry in try syscalls.listDirectoryComponents(inbox) where !entry.isUTF8 {
                let name = escapedFileName(entry.bytes)
                guard !Self.isTemporaryName(name), let status = try? syscalls.lstat(inbox.appending(entry)) else { continue }
                guard status.kind == .regular else {
                    ignore(name, Self.ignoredKind(status))
                    continue
                }
                presentUndecodable.insert(entry)
                if let since = settle(entry, status, now: now, in: &undecodableObservations) { settled.append((entry, since)) }
            }
            completeUndecodable = settled.sorted { $0.1 < $1.1 }.map(\.0)
        }
        pendingCount = observations.keys.filter { present.contains($0) }.count + movedIn.intersection(present).count
            + undecodableObservations.keys.filter { presentUndecodable.contains($0) }.count
        // Forget what left the inbox (claimed here or elsewhere, or removed).
        observations = observations.filter { present.contains($0.key) }
        undecodableObservations = undecodableObservations.filter { presentUndecodable.contains($0.key) }
        movedIn = movedIn.intersection(present)
        ignored = stillIgnored
        return ready.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map(\.0)
    }

    /// Notes `status` of the file `key` at `now`; returns when it was first seen unchanged if it
    /// has stayed so for the settle interval, else nil.
    private func settle<Key: Hashable>(_ key: Key, _ status: FileStatus, now: Int64, in observations: inout [Key: Observation]) -> Int64? {
        if var previous = observations[key], previous.size == status.size, previous.modification == status.modificationNanoseconds {
            let settledSince = now - previous.unchangedSince >= settleNanoseconds ? previous.unchangedSince : nil
            previous.unchangedSince = min(previous.unchangedSince, now)
            observations[key] = previous
            return settledSince
        }
        observations[key] = Observation(size: status.size, modification: status.modificationNanoseconds, unchangedSince: now)
        return settleNanoseconds == 0 ? now : nil
    }

    private static func ignoredKind(_ status: FileStatus) -> String {
        status.kind == .symbolicLink ? "symbolic_link" : status.kind == .directory ? "directory" : "other"
    }

    /// Forgets a name after it was claimed (a later file of that name starts afresh).
    public func forget(_ name: String) {
        observations[name] = nil
        movedIn.remove(name)
    }

    /// `forget` for a name that is not UTF-8.
    public func forget(undecodable entry: FilePath.Component) {
        undecodableObservations[entry] = nil
    }
}

extension FilePath.Component {
    /// The name's bytes as the file system holds them.
    var bytes: [UInt8] {
        withPlatformString { name in Array(UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self), count: strlen(name))) }
    }

    /// Whether the name is valid UTF-8 (`listDirectory` can name it).
    var isUTF8: Bool { String(validating: bytes, as: UTF8.self) != nil }
}

/// A file name's bytes as a valid UTF-8 name: UTF-8 characters as they are, every other byte
/// and `%` itself as `%XX` (upper-case hex), so the bytes can always be recovered from it.
public func escapedFileName(_ bytes: [UInt8]) -> String {
    var escaped = ""
    func escape(_ byte: UInt8) {
        let digits = Array("0123456789ABCDEF".unicodeScalars)
        escaped.unicodeScalars.append(contentsOf: ["%", digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
    var parser = Unicode.UTF8.ForwardParser()
    var iterator = bytes.makeIterator()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid(let encoded):
            let scalar = Unicode.UTF8.decode(encoded)
            if scalar == "%" { escape(UInt8(ascii: "%")) } else { escaped.unicodeScalars.append(scalar) }
            offset += encoded.count
        case .error(let length):
            for byte in bytes[offset..<(offset + length)] { escape(byte) }
            offset += length
        case .emptyInput:
            return escaped
        }
    }
}
