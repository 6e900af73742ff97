import Foundation
import SystemPackage
import Yams

// The `retention:` and `min_free_space:` settings of a line.
extension ConfigurationReader {
    /// A line's `retention:` mapping: `outbox`, `archive`, `quarantine`, each with `max_age_days`
    /// and/or `max_bytes`. Nil after a problem.
    mutating func readRetention(_ node: Node?, prefix: String, policy: ProcessedInputPolicy?) -> RetentionSettings? {
        guard let node else { return RetentionSettings() }
        guard let mapping = node.mapping else {
            problem(prefix, node, "must be a mapping with outbox, archive and/or quarantine, got \(describe(node))")
            return nil
        }
        let f = fields(of: mapping, at: prefix + ".", allowed: Self.retentionKeys)
        var settings = RetentionSettings()
        var valid = true
        for folder in ["outbox", "archive", "quarantine"] {
            guard let limitNode = f[folder] else { continue }
            let key = "\(prefix).\(folder)"
            guard let limitMapping = limitNode.mapping else {
                problem(key, limitNode, "must be a mapping with max_age_days and/or max_bytes, got \(describe(limitNode))")
                valid = false
                continue
            }
            let limits = fields(of: limitMapping, at: key + ".", allowed: Self.retentionLimitKeys)
            let days = number(limits["max_age_days"], key: key + ".max_age_days", range: 0.0001...36500)
            let bytes = byteSize(limits["max_bytes"], key: key + ".max_bytes")
            if (limits["max_age_days"] != nil && days == nil) || (limits["max_bytes"] != nil && bytes == nil) { valid = false; continue }
            if days == nil && bytes == nil {
                // Unknown keys are reported already.
                if limitMapping.count == 0 { problem(key, limitNode, "give max_age_days, max_bytes or both") }
                valid = false
                continue
            }
            let limit = RetentionLimit(maximumAgeSeconds: days.map { $0 * 86400 }, maximumBytes: bytes)
            switch folder {
            case "outbox": settings.outbox = limit
            case "archive": settings.archive = limit
            default: settings.quarantine = limit
            }
        }
        // A left input is done while its verdict is in the outbox; pruning that verdict would
        // have the input inspected again.
        if settings.outbox != nil, policy == .leave {
            problem(prefix + ".outbox", f["outbox"], "cannot be used with processed_inputs: leave: a left input counts as done only while its verdict is in the outbox")
            valid = false
        }
        if settings.archive != nil, let policy, policy != .archive {
            problem(prefix + ".archive", f["archive"], "there is no archive with processed_inputs: \(policy.rawValue)")
            valid = false
        }
        // An archived or quarantined input is kept while its verdict is in the outbox (see
        // RetentionPruner), so a shorter age would not act; say so instead of surprising.
        for (folder, limit) in [("archive", settings.archive), ("quarantine", settings.quarantine)] {
            if let age = limit?.maximumAgeSeconds, let outboxAge = settings.outbox?.maximumAgeSeconds, age < outboxAge {
                problem("\(prefix).\(folder).max_age_days", f[folder],
                        "\(age / 86400) is shorter than outbox.max_age_days (\(outboxAge / 86400)): an input is kept while its verdict is in the outbox; make it at least \(outboxAge / 86400)")
                valid = false
            }
        }
        return valid ? settings : nil
    }

    /// An integer of bytes, or a string such as "500M" or "20G" (powers of 1024).
    mutating func byteSize(_ node: Node?, key: String) -> Int64? {
        guard let node else { return nil }
        let value: Int64?
        if node.tag == Tag(.int), let integer = node.int { value = Int64(integer) } else if node.tag == Tag(.str), let text = node.scalar?.string { value = ByteSize.parse(text) } else { value = nil }
        guard let value, value >= 1 else {
            problem(key, node, "must be a size of at least 1 byte: an integer of bytes or a string like \"500M\", \"20G\" (K, M, G, T are powers of 1024), got \(describe(node))")
            return nil
        }
        return value
    }

    /// `min_free_space`: bytes (an integer, or "2G"), or a percent of the file system ("5%"); 0 turns the floor off.
    mutating func spaceFloor(_ node: Node?, key: String) -> SpaceFloor? {
        guard let node else { return nil }
        if node.tag == Tag(.str), let text = node.scalar?.string, text.hasSuffix("%") {
            guard let percent = Double(text.dropLast().trimmingCharacters(in: .whitespaces)), (0...50).contains(percent) else {
                problem(key, node, "a percentage must be between 0% and 50%, got \"\(text)\"")
                return nil
            }
            return .percent(percent)
        }
        if node.tag == Tag(.int), node.int == 0 { return .bytes(0) }
        guard let bytes = byteSize(node, key: key) else { return nil }
        return .bytes(bytes)
    }
}
