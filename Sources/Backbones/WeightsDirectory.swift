import Foundation

/// Where pretrained checkpoints live.
public enum WeightsDirectory {
    /// `override` (e.g. `--dir`), else `$RSTPM_WEIGHTS`, else `$XDG_DATA_HOME/rstpm/weights`,
    /// else `~/.local/share/rstpm/weights`.
    public static func resolve(override: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let override { return URL(fileURLWithPath: override) }
        if let weights = environment["RSTPM_WEIGHTS"], !weights.isEmpty { return URL(fileURLWithPath: weights) }
        let dataHome = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share")
        return dataHome.appendingPathComponent("rstpm/weights")
    }

    /// The SHA-256 prefix a checkpoint's file name promises: the 8 hex digits before the
    /// extension in `name-0123abcd.pth` (torchvision's convention); nil when there are none.
    public static func expectedHashPrefix(fileName: String) -> String? {
        let stem = (fileName as NSString).deletingPathExtension
        guard let dash = stem.lastIndex(of: "-") else { return nil }
        let prefix = stem[stem.index(after: dash)...].lowercased()
        return prefix.count == 8 && prefix.allSatisfy(\.isHexDigit) ? String(prefix) : nil
    }
}

/// Softmax probabilities of one row of logits and its `count` most likely classes.
public func topClasses(logits: [Float], count: Int) -> [(index: Int, probability: Float)] {
    let largest = logits.max() ?? 0
    let exponentials = logits.map { expf($0 - largest) }
    let total = exponentials.reduce(0, +)
    return exponentials.enumerated().sorted { $0.element > $1.element }.prefix(count).map { (index: $0.offset, probability: $0.element / total) }
}
