import Checkpoints
import DaemonSupport
import Foundation
import OperatorErrors
import SystemPackage

/// The size and split of a line's training store.
public struct TrainingStoreSettings: Sendable, Equatable {
    /// Images kept in all (training plus held-out).
    public var capacity: Int
    /// Share of each pool reserved for the original training images; accepted images fill the
    /// rest (and whatever the originals leave unused).
    public var originalShare: Double
    /// Share of images (by their SHA-256, so the split is stable) held out for the gate and
    /// never trained on; also the held-out pool's share of the capacity.
    public var heldOutShare: Double
    /// Larger files in accepted/ are left there and logged.
    public var maximumImageBytes: Int

    public init(capacity: Int = 2000, originalShare: Double = 0.5, heldOutShare: Double = 0.1, maximumImageBytes: Int = 256 << 20) {
        precondition(capacity > 0 && (0...1).contains(originalShare) && (0..<1).contains(heldOutShare), "invalid training store settings")
        self.capacity = capacity
        self.originalShare = originalShare
        self.heldOutShare = heldOutShare
        self.maximumImageBytes = maximumImageBytes
    }
}

/// What one pass over accepted/ did.
public struct IngestSummary: Sendable, Equatable {
    /// New images stored.
    public var added = 0
    /// Images whose SHA-256 the store already holds.
    public var duplicates = 0
    /// New images the reservoir did not keep (their pool was full and the draw went against them).
    public var dropped = 0
    /// Stored accepted images the reservoir replaced.
    public var evicted = 0
    /// Files left in accepted/ (not regular, too large, unreadable).
    public var skipped = 0

    public init() {}
}

/// A line's training images: the originals it was first trained on and the images people
/// accepted since, deduplicated by SHA-256 and capped by reservoir sampling.
///
///     <root>/index.json        what is stored, counters (written durably, last)
///     <root>/train/<sha256>.<ext>
///     <root>/held_out/<sha256>.<ext>   never trained on; the gate's normals
///     <root>/snapshot/         hard links of train/ that the running trainer reads
///
/// Each image goes to the held-out pool when the first 16 bits of its SHA-256 fall below
/// `heldOutShare`. Within a pool, originals keep their reserved share; accepted images are a
/// uniform sample (Vitter's algorithm R) of every accepted image routed to that pool. Files are
/// written before the index and removed after it, and `open` deletes files the index does not
/// name, so a crash at any point leaves a consistent store and the accepted file in place.
public final class TrainingStore {
    public enum Pool: String, Codable, Sendable, CaseIterable {
        case train
        case heldOut = "held_out"
    }

    public enum Origin: String, Codable, Sendable { case original, accepted }

    public struct Entry: Codable, Sendable, Equatable {
        public var sha256: String
        public var file: String
        public var pool: Pool
        public var origin: Origin
    }

    struct Index: Codable {
        var schemaVersion = 1
        var seeded = false
        var entries: [Entry] = []
        /// Accepted images taken in (not duplicates), over the store's life.
        var acceptedTotal = 0
        /// Accepted images routed to each pool: the reservoir's `n`.
        var arrivals: [String: Int] = [:]
        /// `acceptedTotal` when the last training run was decided by the gate.
        var trainedThrough = 0

        enum CodingKeys: String, CodingKey {
            case schemaVersion = "schema_version"
            case seeded, entries
            case acceptedTotal = "accepted_total"
            case arrivals
            case trainedThrough = "trained_through"
        }
    }

    public let root: FilePath
    public let settings: TrainingStoreSettings
    let files: FileOperations
    /// A uniform integer in 0..<n; tests fix the sequence.
    let randomBelow: (Int) -> Int
    private var index = Index()

    public init(root: FilePath, settings: TrainingStoreSettings, syscalls: any Syscalls = SystemCalls(),
                randomBelow: @escaping (Int) -> Int = { Int.random(in: 0..<$0) }) {
        self.root = root
        self.settings = settings
        self.files = FileOperations(syscalls: syscalls)
        self.randomBelow = randomBelow
    }

    var indexPath: FilePath { root.appending("index.json") }
    public var snapshotPath: FilePath { root.appending("snapshot") }

    func directory(_ pool: Pool) -> FilePath { root.appending(pool.rawValue) }

    /// Creates the folders, reads the index, and removes files a crash left unindexed.
    public func open() throws {
        for pool in Pool.allCases { try files.createDirectories(directory(pool)) }
        if try files.syscalls.lstat(indexPath) != nil {
            let bytes = try files.readFile(indexPath, maximumBytes: 256 << 20)
            do {
                index = try JSONDecoder().decode(Index.self, from: Data(bytes))
            } catch {
                throw OperatorError(.malformed, path: indexPath.string, problem: "unreadable index: \(error)",
                                         hint: "move the store aside; it is rebuilt from the originals at the next start")
            }
        } else {
            index = Index()
        }
        var changed = false
        for pool in Pool.allCases {
            let named = Set(index.entries.filter { $0.pool == pool }.map(\.file))
            let present = Set(try files.syscalls.listDirectory(directory(pool)))
            for name in present.subtracting(named) { try files.syscalls.unlink(directory(pool).appending(name)) }
            let missing = named.subtracting(present)
            if !missing.isEmpty {
                index.entries.removeAll { $0.pool == pool && missing.contains($0.file) }
                changed = true
            }
        }
        if changed { try writeIndex() }
    }

    public var isSeeded: Bool { index.seeded }
    public var entries: [Entry] { index.entries }
    public var acceptedTotal: Int { index.acceptedTotal }
    /// Accepted images taken in since the last gate decision.
    public var newImagesSinceTraining: Int { index.acceptedTotal - index.trainedThrough }

    public func images(in pool: Pool) -> [FilePath] {
        index.entries.filter { $0.pool == pool }.map { directory(pool).appending($0.file) }
    }

    /// The capacity of `pool`; the held-out pool gets `heldOutShare` of the whole.
    public func capacity(of pool: Pool) -> Int {
        let heldOut = settings.heldOutShare > 0 ? max(1, Int((Double(settings.capacity) * settings.heldOutShare).rounded())) : 0
        return pool == .heldOut ? heldOut : settings.capacity - heldOut
    }

    /// The pool an image belongs to, from its digest.
    public func pool(forDigest sha256: String) -> Pool {
        let prefix = Int(sha256.prefix(4), radix: 16) ?? 0
        return Double(prefix) / 65536 < settings.heldOutShare ? .heldOut : .train
    }

    /// Copies the original training images in (once; later calls do nothing). Each pool keeps
    /// at most `originalShare` of its capacity of them, a uniform sample.
    @discardableResult
    public func seed(originals: FilePath) throws -> Int {
        guard !index.seeded else { return 0 }
        var candidates: [Pool: [(sha256: String, name: String, bytes: [UInt8])]] = [:]
        var seen: Set<String> = []
        for name in try files.syscalls.listDirectory(originals).sorted() where !name.hasPrefix(".") {
            let path = originals.appending(name)
            guard try files.syscalls.lstat(path)?.kind == .regular else { continue }
            let bytes = try files.readFile(path, maximumBytes: settings.maximumImageBytes)
            let digest = sha256Hex(of: bytes)
            guard seen.insert(digest).inserted else { continue }
            candidates[pool(forDigest: digest), default: []].append((digest, name, bytes))
        }
        var stored = 0
        for pool in Pool.allCases {
            var list = candidates[pool] ?? []
            let reserve = Int(Double(capacity(of: pool)) * settings.originalShare)
            while list.count > reserve { list.remove(at: randomBelow(list.count)) }
            for (digest, name, bytes) in list {
                let file = Self.storedName(digest: digest, originalName: name)
                try files.writeDurably(bytes, to: directory(pool).appending(file))
                index.entries.append(Entry(sha256: digest, file: file, pool: pool, origin: .original))
                stored += 1
            }
        }
        index.seeded = true
        try writeIndex()
        return stored
    }

    /// Takes every complete image out of `accepted` into the store.
    @discardableResult
    public func ingest(from accepted: FilePath) throws -> IngestSummary {
        var summary = IngestSummary()
        var taken: [String] = []
        var evicted: [Entry] = []
        var known = Set(index.entries.map(\.sha256))
        for name in try files.syscalls.listDirectory(accepted).sorted() where !Self.isTemporaryName(name) {
            let path = accepted.appending(name)
            guard try files.syscalls.lstat(path)?.kind == .regular,
                  let bytes = try? files.readFile(path, maximumBytes: settings.maximumImageBytes)
            else {
                summary.skipped += 1
                continue
            }
            taken.append(name)
            let digest = sha256Hex(of: bytes)
            if known.contains(digest) {
                summary.duplicates += 1
                continue
            }
            known.insert(digest)
            let pool = pool(forDigest: digest)
            index.acceptedTotal += 1
            let arrivals = index.arrivals[pool.rawValue, default: 0] + 1
            index.arrivals[pool.rawValue] = arrivals
            let slots = capacity(of: pool) - index.entries.filter { $0.pool == pool && $0.origin == .original }.count
            let stored = index.entries.indices.filter { index.entries[$0].pool == pool && index.entries[$0].origin == .accepted }
            if stored.count >= slots {
                // Algorithm R: the n-th arrival is kept with probability slots / n.
                guard slots > 0, randomBelow(arrivals) < slots else {
                    summary.dropped += 1
                    continue
                }
                let victim = stored[randomBelow(stored.count)]
                evicted.append(index.entries.remove(at: victim))
                summary.evicted += 1
            }
            let file = Self.storedName(digest: digest, originalName: name)
            try files.writeDurably(bytes, to: directory(pool).appending(file))
            index.entries.append(Entry(sha256: digest, file: file, pool: pool, origin: .accepted))
            summary.added += 1
        }
        guard !taken.isEmpty else { return summary }
        try writeIndex()
        for entry in evicted { try? files.syscalls.unlink(directory(entry.pool).appending(entry.file)) }
        for name in taken { try files.syscalls.unlink(accepted.appending(name)) }
        for directory in Pool.allCases.map(directory) + [accepted] { try files.syncDirectory(directory) }
        return summary
    }

    /// Hard links of the training pool in `snapshot/`, so the trainer reads a set that ingestion
    /// and eviction do not change under it. Returns the number of images.
    @discardableResult
    public func makeSnapshot() throws -> Int {
        try files.removeTree(snapshotPath)
        try files.createDirectories(snapshotPath)
        let train = index.entries.filter { $0.pool == .train }
        for entry in train {
            try files.syscalls.hardLink(directory(.train).appending(entry.file), to: snapshotPath.appending(entry.file))
        }
        try files.syncDirectory(snapshotPath)
        return train.count
    }

    /// Records that the images accepted up to `acceptedTotal` were trained on (whatever the gate
    /// decided), so they do not trigger another run.
    public func markTrained(through acceptedTotal: Int) throws {
        index.trainedThrough = acceptedTotal
        try writeIndex()
    }

    private func writeIndex() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try files.writeDurably(Array(try encoder.encode(index)), to: indexPath)
    }

    /// `<sha256>.<ext>`, keeping a short alphanumeric extension so decoders recognise the file.
    static func storedName(digest: String, originalName: String) -> String {
        let ext = FilePath.Component(originalName)?.extension?.lowercased() ?? ""
        let clean = !ext.isEmpty && ext.count <= 5 && ext.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
        return clean ? "\(digest).\(ext)" : digest
    }

    /// Names uploaders use while writing (as the inbox watcher treats them).
    static func isTemporaryName(_ name: String) -> Bool {
        if name.hasPrefix(".") || name.hasSuffix("~") { return true }
        let lower = name.lowercased()
        return [".part", ".tmp", ".crdownload", ".partial", ".filepart"].contains { lower.hasSuffix($0) }
    }
}
