import Foundation
import SystemPackage
import Yams

// Typed YAML values (strings, paths, numbers, sizes), each reporting its own problem.
extension ConfigurationReader {
    mutating func fields(of mapping: Node.Mapping, at prefix: String, allowed: Set<String>) -> [String: Node] {
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                problem(prefix + "?", keyNode, "keys must be plain strings")
                continue
            }
            if !allowed.contains(key) {
                let suggestion = allowed.sorted().first { $0.hasPrefix(String(key.prefix(3))) }.map { " (did you mean `\($0)`?)" } ?? ""
                problem(prefix + key, keyNode, "unknown key\(suggestion); allowed: \(allowed.sorted().joined(separator: ", "))")
                continue
            }
            if result[key] != nil { problem(prefix + key, keyNode, "given twice") }
            result[key] = value
        }
        return result
    }

    mutating func string(_ node: Node?, key: String) -> String? {
        guard let node else { return nil }
        guard let scalar = node.scalar, node.tag == Tag(.str) else {
            problem(key, node, "must be a string, got \(describe(node))")
            return nil
        }
        // A C call would cut the string at the NUL: "/x/in\0box" would name /x/in.
        guard !scalar.string.utf8.contains(0) else {
            problem(key, node, "must not contain a NUL character (\\0)")
            return nil
        }
        return scalar.string
    }

    mutating func path(_ node: Node?, key: String) -> FilePath? {
        guard let text = string(node, key: key) else { return nil }
        let path = FilePath(text)
        guard path.isAbsolute else {
            problem(key, node, "must be an absolute path, got \"\(text)\"")
            return nil
        }
        return path.lexicallyNormalized()
    }

    mutating func strings(_ node: Node?, key: String) -> [String]? {
        guard let node else { return nil }
        guard let sequence = node.sequence else {
            problem(key, node, "must be a list of strings, got \(describe(node))")
            return nil
        }
        var values: [String] = []
        for (index, element) in sequence.enumerated() {
            guard let value = string(element, key: "\(key)[\(index)]") else { return nil }
            values.append(value)
        }
        return values
    }

    mutating func number(_ node: Node?, key: String, range: ClosedRange<Double>) -> Double? {
        guard let node else { return nil }
        guard node.tag == Tag(.int) || node.tag == Tag(.float), let value = node.float, value.isFinite else {
            problem(key, node, "must be a number, got \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            problem(key, node, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    mutating func boolean(_ node: Node?, key: String) -> Bool? {
        guard let node else { return nil }
        guard node.tag == Tag(.bool), let value = node.bool else {
            problem(key, node, "must be true or false, got \(describe(node))")
            return nil
        }
        return value
    }

    mutating func integer(_ node: Node?, key: String, range: ClosedRange<Int>) -> Int? {
        guard let node else { return nil }
        guard node.tag == Tag(.int), let value = node.int else {
            problem(key, node, "must be an integer, got \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            problem(key, node, "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    /// `original`, or the longest side in pixels.
    mutating func heatmapResolution(_ node: Node?, key: String) -> HeatmapResolution? {
        guard let node else { return nil }
        if node.tag == Tag(.str), node.scalar?.string == "original" { return .original }
        guard node.tag == Tag(.int), let side = node.int else {
            problem(key, node, "must be `original` or the longest side in pixels (an integer from 16 to 65536), got \(describe(node))")
            return nil
        }
        guard (16...65536).contains(side) else {
            problem(key, node, "must be between 16 and 65536 pixels, or `original`, got \(side)")
            return nil
        }
        return .maximumSide(side)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar):
            let kind: String
            switch node.tag {
            case Tag(.int): kind = "integer"
            case Tag(.float): kind = "number"
            case Tag(.bool): kind = "boolean"
            case Tag(.null): kind = "nothing (null)"
            default: kind = "string"
            }
            return "\(kind) \"\(scalar.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}
