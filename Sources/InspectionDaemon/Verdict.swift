import BuildInfo
import DaemonSupport
import Foundation

/// The decision written as `<name>.json` to the outbox; docs/verdict.md documents every field.
/// Bump `currentSchemaVersion` on any change a consumer could notice.
public struct Verdict: Sendable, Codable, Equatable {
    public static let currentSchemaVersion = 1

    public enum Decision: String, Sendable, Codable { case ok, defect, error }

    public struct Size: Sendable, Codable, Equatable {
        public var bytes: Int
        public var width: Int?
        public var height: Int?

        public init(bytes: Int, width: Int?, height: Int?) {
            self.bytes = bytes
            self.width = width
            self.height = height
        }
    }

    public struct Threshold: Sendable, Codable, Equatable {
        public var value: Float
        public var source: ThresholdSource

        public init(value: Float, source: ThresholdSource) {
            self.value = value
            self.source = source
        }
    }

    public struct Timings: Sendable, Codable, Equatable {
        public var decode: Double
        public var infer: Double
        /// Rendering and encoding the heatmap figure.
        public var heatmap: Double
        public var write: Double

        public init(decode: Double, infer: Double, heatmap: Double, write: Double) {
            self.decode = decode
            self.infer = infer
            self.heatmap = heatmap
            self.write = write
        }
    }

    public struct Failure: Sendable, Codable, Equatable {
        public var kind: String
        public var message: String
    }

    public var schemaVersion: Int = Verdict.currentSchemaVersion
    /// The rstpm that decided (`0.1.0 (commit 5ad2686abcde)`); nil only in verdicts read back
    /// from before it was recorded.
    public var rstpmVersion: String? = RSTPMBuild.description
    public var file: String
    public var sha256: String
    public var size: Size
    public var receivedAt: String
    public var decidedAt: String
    public var line: String
    public var instance: String
    public var model: ModelIdentity
    public var verdict: Decision
    public var score: Float?
    public var threshold: Threshold?
    public var regions: [AnomalyRegion]
    public var regionsTruncated: Bool
    public var heatmap: String?
    public var timingsMilliseconds: Timings
    public var error: Failure?

    /// Every field; rstpmd and `rstpm infer` build their verdicts through it.
    public init(
        file: String, sha256: String, size: Size, receivedAt: String, decidedAt: String, line: String, instance: String,
        model: ModelIdentity, verdict: Decision, score: Float?, threshold: Threshold?, regions: [AnomalyRegion],
        regionsTruncated: Bool, heatmap: String?, timingsMilliseconds: Timings, error: Failure?
    ) {
        self.file = file
        self.sha256 = sha256
        self.size = size
        self.receivedAt = receivedAt
        self.decidedAt = decidedAt
        self.line = line
        self.instance = instance
        self.model = model
        self.verdict = verdict
        self.score = score
        self.threshold = threshold
        self.regions = regions
        self.regionsTruncated = regionsTruncated
        self.heatmap = heatmap
        self.timingsMilliseconds = timingsMilliseconds
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case rstpmVersion = "rstpm_version"
        case file, sha256, size
        case receivedAt = "received_at"
        case decidedAt = "decided_at"
        case line, instance, model, verdict, score, threshold, regions
        case regionsTruncated = "regions_truncated"
        case heatmap
        case timingsMilliseconds = "timings_ms"
        case error
    }

    /// Pretty, key-sorted JSON with a final newline, nulls written out so every field is present.
    public func encoded() -> [UInt8] {
        NullPreserving(self).documentJSON()
    }
}

/// Encodes optionals as JSON null (the synthesised encoder omits them), so consumers can rely
/// on every key being there.
private struct NullPreserving: Encodable {
    let verdict: Verdict
    init(_ verdict: Verdict) { self.verdict = verdict }

    func encode(to encoder: Encoder) throws {
        typealias K = Verdict.CodingKeys
        var c = encoder.container(keyedBy: K.self)
        try c.encode(verdict.schemaVersion, forKey: .schemaVersion)
        try c.encode(verdict.rstpmVersion, forKey: .rstpmVersion)
        try c.encode(verdict.file, forKey: .file)
        try c.encode(verdict.sha256, forKey: .sha256)
        try c.encode(verdict.size, forKey: .size)
        try c.encode(verdict.receivedAt, forKey: .receivedAt)
        try c.encode(verdict.decidedAt, forKey: .decidedAt)
        try c.encode(verdict.line, forKey: .line)
        try c.encode(verdict.instance, forKey: .instance)
        try c.encode(verdict.model, forKey: .model)
        try c.encode(verdict.verdict, forKey: .verdict)
        try c.encode(verdict.score, forKey: .score)
        try c.encode(verdict.threshold, forKey: .threshold)
        try c.encode(verdict.regions, forKey: .regions)
        try c.encode(verdict.regionsTruncated, forKey: .regionsTruncated)
        try c.encode(verdict.heatmap, forKey: .heatmap)
        try c.encode(verdict.timingsMilliseconds, forKey: .timingsMilliseconds)
        try c.encode(verdict.error, forKey: .error)
    }
}

extension Verdict.Size {
    enum CodingKeys: String, CodingKey { case bytes, width, height }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(bytes, forKey: .bytes)
        try c.encode(width, forKey: .width)
        try c.encode(height, forKey: .height)
    }
}

/// The explanation written as `<name>.error.json` next to a quarantined input.
public struct QuarantineRecord: Sendable, Codable, Equatable {
    public var schemaVersion: Int = Verdict.currentSchemaVersion
    /// As in the verdict.
    public var rstpmVersion: String? = RSTPMBuild.description
    public var file: String
    public var sha256: String?
    /// The name's bytes in hex when it is not UTF-8 (`file` is then the name escaped).
    public var originalNameHex: String?
    public var line: String
    public var instance: String
    public var quarantinedAt: String
    public var kind: String
    public var message: String
    public var hint: String

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case rstpmVersion = "rstpm_version"
        case file, sha256
        case originalNameHex = "original_name_hex"
        case line, instance
        case quarantinedAt = "quarantined_at"
        case kind, message, hint
    }

    public func encoded() -> [UInt8] {
        documentJSON()
    }
}

/// ISO 8601 UTC with milliseconds, e.g. `2026-11-29T03:14:15.926Z`.
public func iso8601(nanosecondsSinceEpoch: Int64) -> String {
    let seconds = nanosecondsSinceEpoch / 1_000_000_000
    let milliseconds = (nanosecondsSinceEpoch % 1_000_000_000) / 1_000_000
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    func pad(_ value: Int32, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(milliseconds), 3))Z"
}

/// Wall-clock time in nanoseconds since the epoch.
public func wallClockNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// Monotonic time in nanoseconds, for intervals.
public func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}
