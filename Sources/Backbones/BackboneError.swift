/// A checkpoint that does not fit a backbone, naming the file and the offending keys.
public struct BackboneError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Equatable, Sendable {
        /// The checkpoint lacks tensors the backbone needs.
        case missingKeys([String])
        /// The checkpoint holds tensors the backbone does not have.
        case unexpectedKeys([String])
        /// Tensors whose shape differs: key, the checkpoint's shape, the backbone's shape.
        case shapeMismatches([ShapeMismatch])
    }

    public struct ShapeMismatch: Equatable, Sendable {
        public let key: String
        public let checkpointShape: [Int]
        public let expectedShape: [Int]

        public init(key: String, checkpointShape: [Int], expectedShape: [Int]) {
            self.key = key
            self.checkpointShape = checkpointShape
            self.expectedShape = expectedShape
        }
    }

    public let kind: Kind
    /// The checkpoint file (or other source) the state came from.
    public let path: String
    public let backbone: BackboneKind

    public var description: String {
        let hint = "is it a \(backbone.rawValue) checkpoint (default name \(backbone.defaultCheckpointFileName))? Run `rstpm weights fetch` to get the right file"
        switch kind {
        case .missingKeys(let keys):
            return "\(path): missing \(keys.count) key(s) for \(backbone.rawValue): \(Self.list(keys)) (\(hint))"
        case .unexpectedKeys(let keys):
            return "\(path): \(keys.count) unexpected key(s) for \(backbone.rawValue): \(Self.list(keys)) (\(hint))"
        case .shapeMismatches(let mismatches):
            let text = mismatches.map { "\($0.key) is \($0.checkpointShape), expected \($0.expectedShape)" }
            return "\(path): \(mismatches.count) shape mismatch(es) for \(backbone.rawValue): \(Self.list(text)) (\(hint))"
        }
    }

    private static func list(_ items: [String]) -> String {
        items.count <= 8 ? items.joined(separator: ", ") : items.prefix(8).joined(separator: ", ") + ", ... (\(items.count - 8) more)"
    }
}
