import OperatorErrors

/// A tensor whose shape differs: its key, the checkpoint's shape, the backbone's shape.
struct ShapeMismatch {
    let key: String
    let checkpointShape: [Int]
    let expectedShape: [Int]
}

extension OperatorError {
    /// A checkpoint that does not fit `backbone`, naming the file and the offending keys; the
    /// kind carries the keys.
    static func backboneMismatch(missing: [String] = [], unexpected: [String] = [], shapes: [ShapeMismatch] = [],
                                 path: String, backbone: BackboneKind) -> OperatorError {
        let hint = "is it a \(backbone.rawValue) checkpoint (default name \(backbone.defaultCheckpointFileName))? Run `rstpm weights fetch` to get the right file"
        if !missing.isEmpty {
            return OperatorError(.missingTensors(missing), path: path,
                                 problem: "missing \(missing.count) key(s) for \(backbone.rawValue): \(list(missing))", hint: hint)
        }
        if !unexpected.isEmpty {
            return OperatorError(.unexpectedTensors(unexpected), path: path,
                                 problem: "\(unexpected.count) unexpected key(s) for \(backbone.rawValue): \(list(unexpected))", hint: hint)
        }
        let text = shapes.map { "\($0.key) is \($0.checkpointShape), expected \($0.expectedShape)" }
        return OperatorError(.tensorShapesDiffer(shapes.map(\.key)), path: path,
                             problem: "\(shapes.count) shape mismatch(es) for \(backbone.rawValue): \(list(text))", hint: hint)
    }

    private static func list(_ items: [String]) -> String {
        items.count <= 8 ? items.joined(separator: ", ") : items.prefix(8).joined(separator: ", ") + ", ... (\(items.count - 8) more)"
    }
}
