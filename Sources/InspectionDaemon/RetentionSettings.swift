import Foundation

/// How long and how much one folder keeps: the oldest go first once either limit is passed.
public struct RetentionLimit: Sendable, Equatable {
    public var maximumAgeSeconds: Double?
    public var maximumBytes: Int64?

    public init(maximumAgeSeconds: Double? = nil, maximumBytes: Int64? = nil) {
        self.maximumAgeSeconds = maximumAgeSeconds
        self.maximumBytes = maximumBytes
    }
}

/// A line's `retention:`: a limit per folder, or none (the folder grows until someone empties it).
public struct RetentionSettings: Sendable, Equatable {
    public var outbox: RetentionLimit?
    public var archive: RetentionLimit?
    public var quarantine: RetentionLimit?

    public init(outbox: RetentionLimit? = nil, archive: RetentionLimit? = nil, quarantine: RetentionLimit? = nil) {
        self.outbox = outbox
        self.archive = archive
        self.quarantine = quarantine
    }

    public var isEmpty: Bool { outbox == nil && archive == nil && quarantine == nil }
}

/// `min_free_space`: below it, on any file system of a line's folders, the line claims nothing.
public enum SpaceFloor: Sendable, Equatable {
    case bytes(Int64)
    /// Percent of the file system's size.
    case percent(Double)

    /// The floor in bytes on a file system of `totalBytes`.
    public func bytes(ofFileSystemSize totalBytes: Int64) -> Int64 {
        switch self {
        case .bytes(let bytes): return bytes
        case .percent(let percent): return Int64((Double(totalBytes) * percent / 100).rounded(.up))
        }
    }

    /// 1 % of the file system by default: enough that a line stops long before the disk is
    /// full, little enough to fit a small disk.
    public static let `default` = SpaceFloor.percent(1)
}

/// Sizes as operators write them: an integer of bytes, or a string with K, M, G or T (powers of
/// 1024), e.g. "500M", "20G", "1.5T".
enum ByteSize {
    static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
        var digits = trimmed
        var multiplier: Double = 1
        for suffix in ["IB", "B"] where digits.hasSuffix(suffix) && digits.count > suffix.count {
            digits.removeLast(suffix.count)
            break
        }
        if let last = digits.last, let power = ["K": 1, "M": 2, "G": 3, "T": 4][String(last)] {
            multiplier = pow(1024, Double(power))
            digits.removeLast()
        }
        guard let value = Double(digits.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0,
              digits.allSatisfy({ $0.isNumber || $0 == "." || $0 == " " }) else { return nil }
        let bytes = value * multiplier
        return bytes < 9e18 ? Int64(bytes.rounded()) : nil
    }
}
