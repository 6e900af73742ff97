import ContinuousLearning
import Foundation
import RSTPM
import SystemPackage
import Yams

/// What happens to an input once its verdict and heatmap are safely in the outbox.
public enum ProcessedInputPolicy: String, Sendable, CaseIterable {
    /// Moved to the line's archive directory.
    case archive
    /// Unlinked.
    case delete
    /// Put back in the inbox under its own name; the watcher skips a file whose verdict in the
    /// outbox is newer than the file. Meant for one daemon per inbox.
    case leave
}

/// One inspection line: its folders, its model and its timing.
public struct LineConfiguration: Sendable, Equatable {
    public var name: String
    public var inbox: FilePath
    public var outbox: FilePath
    public var archive: FilePath?
    public var quarantine: FilePath
    /// On the inbox's file system, so that the claim is one atomic rename. Each daemon
    /// instance claims into its own subdirectory `<work>/<instance>`.
    public var work: FilePath
    public var modelBundle: FilePath
    public var thresholdOverride: Float?
    public var pollIntervalSeconds: Double
    public var settleIntervalSeconds: Double
    public var processedInputs: ProcessedInputPolicy
    public var batchSize: Int
    public var maximumInputBytes: Int
    /// The heatmap figure's size; verdict regions stay in original-image pixels.
    public var heatmapResolution: HeatmapResolution
    /// Draw the score and verdict into the heatmap's top-left corner (`heatmap_label`).
    public var heatmapLabel: Bool
    /// Retraining on accepted images; needs `modelBundle` to be a model store.
    public var learning: LearningConfiguration?
    /// How long and how much the outbox, archive and quarantine keep.
    public var retention: RetentionSettings
    /// Below this much free space on a folder's file system the line claims nothing; nil: no floor.
    public var minimumFreeSpace: SpaceFloor?

    public init(
        name: String, inbox: FilePath, outbox: FilePath, archive: FilePath?, quarantine: FilePath, work: FilePath,
        modelBundle: FilePath, thresholdOverride: Float? = nil, pollIntervalSeconds: Double = 2, settleIntervalSeconds: Double = 2,
        processedInputs: ProcessedInputPolicy = .archive, batchSize: Int = 4, maximumInputBytes: Int = 256 << 20,
        heatmapResolution: HeatmapResolution = .default, heatmapLabel: Bool = false, learning: LearningConfiguration? = nil,
        retention: RetentionSettings = RetentionSettings(), minimumFreeSpace: SpaceFloor? = .default
    ) {
        self.name = name
        self.inbox = inbox
        self.outbox = outbox
        self.archive = archive
        self.quarantine = quarantine
        self.work = work
        self.modelBundle = modelBundle
        self.thresholdOverride = thresholdOverride
        self.pollIntervalSeconds = pollIntervalSeconds
        self.settleIntervalSeconds = settleIntervalSeconds
        self.processedInputs = processedInputs
        self.batchSize = batchSize
        self.maximumInputBytes = maximumInputBytes
        self.heatmapResolution = heatmapResolution
        self.heatmapLabel = heatmapLabel
        self.learning = learning
        self.retention = retention
        self.minimumFreeSpace = minimumFreeSpace
    }
}

/// The whole daemon configuration (`/etc/rstpmd/rstpmd.yaml`).
public struct DaemonConfiguration: Sendable, Equatable {
    /// This daemon's name among those sharing an inbox; names its work subdirectory.
    public var instance: String
    /// Prometheus textfile (node exporter's textfile collector), or nil for none.
    public var metricsFile: FilePath?
    /// How long SIGTERM waits for the current batches; keep it below TimeoutStopSec.
    public var drainTimeoutSeconds: Double
    public var lines: [LineConfiguration]

    public init(instance: String, metricsFile: FilePath? = nil, drainTimeoutSeconds: Double = 60, lines: [LineConfiguration]) {
        self.instance = instance
        self.metricsFile = metricsFile
        self.drainTimeoutSeconds = drainTimeoutSeconds
        self.lines = lines
    }
}

/// Every problem found in a configuration file, each with the key that has it.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The key path, e.g. `lines[1].inbox`.
        public var key: String
        /// 1-based line in the file, when known.
        public var fileLine: Int?
        public var message: String

        public var description: String {
            (fileLine.map { "line \($0): " } ?? "") + "\(key): \(message)"
        }
    }

    public var file: FilePath
    public var problems: [Problem]

    public var description: String {
        "\(file): \(problems.count) problem\(problems.count == 1 ? "" : "s")\n"
            + problems.map { "  \(file):\($0)" }.joined(separator: "\n")
    }
}

extension DaemonConfiguration {
    /// The default path the service reads.
    public static let defaultPath: FilePath = "/etc/rstpmd/rstpmd.yaml"

    /// Reads, parses and checks a configuration file; throws `ConfigurationError` listing all
    /// problems found (unknown keys, wrong types, missing directories, shared inboxes, ...).
    public static func load(from path: FilePath) throws -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path.string, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: path, problems: [.init(key: "(file)", fileLine: nil, message: "cannot read the file: \(error.localizedDescription)")])
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses and checks configuration text; `file` only names it in errors and anchors
    /// relative paths... which are refused: every path must be absolute.
    public static func parse(yaml text: String, file: FilePath, checkFileSystem: Bool = true) throws -> DaemonConfiguration {
        var reader = ConfigurationReader(file: file)
        let configuration = reader.read(text)
        if checkFileSystem, let configuration { reader.checkFileSystem(configuration) }
        if !reader.problems.isEmpty || configuration == nil {
            throw ConfigurationError(file: file, problems: reader.problems)
        }
        return configuration!
    }
}

/// Walks the YAML node tree, collecting problems instead of stopping at the first.
struct ConfigurationReader {
    let file: FilePath
    var problems: [ConfigurationError.Problem] = []
    /// The `lines[i]` index of each line read, for messages (lines with errors are skipped).
    var lineIndices: [Int] = []
    /// Every valid path of every line, broken lines included, for the disk checks.
    var linePaths: [(index: Int, paths: [String: FilePath])] = []
    /// `lines[i]` indices of the lines with a `learning:` block.
    var learningLines: Set<Int> = []

    static let topKeys: Set<String> = ["instance", "metrics_file", "drain_timeout_seconds", "lines"]
    static let lineKeys: Set<String> = [
        "name", "inbox", "outbox", "archive", "quarantine", "work", "model", "threshold", "threshold_override_unchecked",
        "poll_interval_seconds", "settle_interval_seconds", "processed_inputs", "batch_size", "max_input_bytes",
        "heatmap_max_side", "heatmap_label", "learning", "retention", "min_free_space",
    ]
    static let retentionKeys: Set<String> = ["outbox", "archive", "quarantine"]
    static let retentionLimitKeys: Set<String> = ["max_age_days", "max_bytes"]
    static let learningKeys: Set<String> = [
        "accepted", "defects", "store", "originals", "trainer", "resume_arguments", "min_new_images", "window", "capacity",
        "original_share", "held_out_share", "keep_versions", "false_reject_tolerance", "auroc_tolerance", "auto_accept_quantile",
        "trainer_threads", "retry_delay_seconds",
    ]

    mutating func problem(_ key: String, _ node: Node?, _ message: String) {
        problems.append(.init(key: key, fileLine: node?.mark?.line, message: message))
    }

    mutating func read(_ text: String) -> DaemonConfiguration? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            problem("(syntax)", nil, "not valid YAML: \(error)")
            return nil
        } catch {
            problem("(syntax)", nil, "not valid YAML: \(error)")
            return nil
        }
        guard let root, let mapping = root.mapping else {
            problem("(document)", root, "the document must be a mapping with a `lines:` list")
            return nil
        }
        let top = fields(of: mapping, at: "", allowed: Self.topKeys)
        let instance = string(top["instance"], key: "instance") ?? Self.hostName()
        let metricsFile = path(top["metrics_file"], key: "metrics_file")
        let drain = number(top["drain_timeout_seconds"], key: "drain_timeout_seconds", range: 1...3600) ?? 60
        if instance.isEmpty || instance.contains("/") || instance.hasPrefix(".") {
            problem("instance", top["instance"], "must be a plain name (no '/', not starting with '.'), got \"\(instance)\"")
        }

        var lines: [LineConfiguration] = []
        if let linesNode = top["lines"] {
            if let sequence = linesNode.sequence {
                if sequence.isEmpty { problem("lines", linesNode, "must list at least one inspection line") }
                for (index, node) in sequence.enumerated() {
                    if let line = readLine(node, index: index) {
                        lines.append(line)
                        lineIndices.append(index)
                    }
                }
            } else {
                problem("lines", linesNode, "must be a list of inspection lines, got \(describe(linesNode))")
            }
        } else {
            problem("lines", root, "missing: list at least one inspection line")
        }
        checkRelations(nodes: top["lines"]?.sequence.map(Array.init) ?? [])
        return DaemonConfiguration(instance: instance, metricsFile: metricsFile, drainTimeoutSeconds: drain, lines: lines)
    }

    mutating func readLine(_ node: Node, index: Int) -> LineConfiguration? {
        let prefix = "lines[\(index)]"
        guard let mapping = node.mapping else {
            problem(prefix, node, "must be a mapping with name, inbox, outbox, ..., got \(describe(node))")
            return nil
        }
        let f = fields(of: mapping, at: prefix + ".", allowed: Self.lineKeys)
        if f["learning"] != nil { learningLines.insert(index) }
        let name = string(f["name"], key: prefix + ".name")
        if f["name"] == nil { problem(prefix + ".name", node, "missing: every line needs a name (used in logs, verdicts and metrics)") }
        if let name, name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
            problem(prefix + ".name", f["name"], "must be letters, digits, '-', '_' or '.', got \"\(name)\"")
        }
        let policyText = string(f["processed_inputs"], key: prefix + ".processed_inputs") ?? "archive"
        let policy = ProcessedInputPolicy(rawValue: policyText)
        if policy == nil {
            problem(prefix + ".processed_inputs", f["processed_inputs"], "must be one of archive, delete, leave, got \"\(policyText)\"")
        }
        var required: [String: FilePath] = [:]
        for directory in ["inbox", "outbox", "quarantine", "work", "model"] {
            if f[directory] == nil {
                problem("\(prefix).\(directory)", node, "missing: required")
            } else if let value = path(f[directory], key: "\(prefix).\(directory)") {
                required[directory] = value
            }
        }
        let archive = path(f["archive"], key: prefix + ".archive")
        var paths = required
        paths["archive"] = archive
        linePaths.append((index, paths))
        if policy == .archive && f["archive"] == nil {
            problem(prefix + ".archive", node, "missing: required when processed_inputs is archive (the default)")
        }
        let unchecked = boolean(f["threshold_override_unchecked"], key: prefix + ".threshold_override_unchecked") ?? false
        let largestFloat = Double(Float.greatestFiniteMagnitude)
        var threshold = number(f["threshold"], key: prefix + ".threshold", range: -largestFloat...largestFloat)
        // A threshold no score can cross (or every score crosses) turns the line into a constant;
        // only an operator who says so explicitly gets one.
        if let value = threshold, !unchecked, let reason = BundleManifest.thresholdProblem(Float(value)) {
            problem(prefix + ".threshold", f["threshold"], "\(reason); set threshold_override_unchecked: true to use it anyway")
            threshold = nil
        }
        let poll = number(f["poll_interval_seconds"], key: prefix + ".poll_interval_seconds", range: 0.05...3600) ?? 2
        let settle = number(f["settle_interval_seconds"], key: prefix + ".settle_interval_seconds", range: 0...3600) ?? 2
        let batch = integer(f["batch_size"], key: prefix + ".batch_size", range: 1...256) ?? 4
        let maximum = integer(f["max_input_bytes"], key: prefix + ".max_input_bytes", range: 1...(1 << 40)) ?? (256 << 20)
        let heatmap = heatmapResolution(f["heatmap_max_side"], key: prefix + ".heatmap_max_side") ?? .default
        let heatmapLabel = boolean(f["heatmap_label"], key: prefix + ".heatmap_label") ?? false
        var learning: LearningConfiguration?
        if let node = f["learning"] {
            learning = readLearning(node, prefix: prefix + ".learning", maximumInputBytes: maximum)
            if learning == nil { return nil }
        }
        let retention = readRetention(f["retention"], prefix: prefix + ".retention", policy: policy)
        let floor = f["min_free_space"] == nil ? SpaceFloor.default : spaceFloor(f["min_free_space"], key: prefix + ".min_free_space")
        guard let name, let policy, let inbox = required["inbox"], let outbox = required["outbox"],
              let quarantine = required["quarantine"], let work = required["work"], let model = required["model"], let retention,
              f["min_free_space"] == nil || floor != nil
        else { return nil }
        return LineConfiguration(
            name: name, inbox: inbox, outbox: outbox, archive: archive, quarantine: quarantine, work: work,
            modelBundle: model, thresholdOverride: threshold.map { Float($0) }, pollIntervalSeconds: poll,
            settleIntervalSeconds: settle, processedInputs: policy, batchSize: batch, maximumInputBytes: maximum,
            heatmapResolution: heatmap, heatmapLabel: heatmapLabel, learning: learning, retention: retention,
            minimumFreeSpace: floor.flatMap { $0 == .bytes(0) || $0 == .percent(0) ? nil : $0 })
    }

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

    /// The `learning:` mapping of a line.
    mutating func readLearning(_ node: Node, prefix: String, maximumInputBytes: Int) -> LearningConfiguration? {
        guard let mapping = node.mapping else {
            problem(prefix, node, "must be a mapping with accepted, store, trainer, ..., got \(describe(node))")
            return nil
        }
        let f = fields(of: mapping, at: prefix + ".", allowed: Self.learningKeys)
        var required: [String: FilePath] = [:]
        for key in ["accepted", "store"] {
            if f[key] == nil {
                problem("\(prefix).\(key)", node, "missing: required")
            } else if let value = path(f[key], key: "\(prefix).\(key)") {
                required[key] = value
            }
        }
        let defects = path(f["defects"], key: prefix + ".defects")
        let originals = path(f["originals"], key: prefix + ".originals")
        if f["trainer"] == nil { problem(prefix + ".trainer", node, "missing: the trainer command, e.g. [/usr/bin/rstpm, train, --data, \"{data}\", --out, \"{out}\"]") }
        let trainer = strings(f["trainer"], key: prefix + ".trainer")
        if let trainer {
            if trainer.isEmpty || !FilePath(trainer[0]).isAbsolute {
                problem(prefix + ".trainer", f["trainer"], "must start with the absolute path of the program")
            } else if !trainer.contains(where: { $0.contains("{out}") }) {
                problem(prefix + ".trainer", f["trainer"], "must pass {out}, the folder the candidate bundle is written to")
            }
        }
        let resume = f["resume_arguments"] == nil ? ["--resume"] : strings(f["resume_arguments"], key: prefix + ".resume_arguments")
        var window: TimeWindow?
        if let text = string(f["window"], key: prefix + ".window") {
            window = TimeWindow(parsing: text)
            if window == nil { problem(prefix + ".window", f["window"], "must be local times HH:MM-HH:MM, e.g. \"22:00-05:00\", got \"\(text)\"") }
        }
        let minimum = integer(f["min_new_images"], key: prefix + ".min_new_images", range: 1...1_000_000) ?? 50
        let capacity = integer(f["capacity"], key: prefix + ".capacity", range: 10...10_000_000) ?? 2000
        let originalShare = number(f["original_share"], key: prefix + ".original_share", range: 0...1) ?? 0.5
        let heldOutShare = number(f["held_out_share"], key: prefix + ".held_out_share", range: 0.01...0.5) ?? 0.1
        let keep = integer(f["keep_versions"], key: prefix + ".keep_versions", range: 1...1000) ?? 5
        let frrTolerance = number(f["false_reject_tolerance"], key: prefix + ".false_reject_tolerance", range: 0...1) ?? 0
        let aurocTolerance = number(f["auroc_tolerance"], key: prefix + ".auroc_tolerance", range: 0...1) ?? 0.01
        let quantile = number(f["auto_accept_quantile"], key: prefix + ".auto_accept_quantile", range: 0.001...0.5)
        let threads = integer(f["trainer_threads"], key: prefix + ".trainer_threads", range: 1...256) ?? 1
        let retry = number(f["retry_delay_seconds"], key: prefix + ".retry_delay_seconds", range: 1...86400) ?? 60
        guard let accepted = required["accepted"], let store = required["store"], let trainer, let resume,
              !trainer.isEmpty, FilePath(trainer[0]).isAbsolute, f["window"] == nil || window != nil
        else { return nil }
        return LearningConfiguration(
            accepted: accepted, defects: defects, trainingStore: store, originals: originals, trainer: trainer, resumeArguments: resume,
            minimumNewImages: minimum, window: window,
            storeSettings: TrainingStoreSettings(capacity: capacity, originalShare: originalShare, heldOutShare: heldOutShare, maximumImageBytes: maximumInputBytes),
            gate: GatePolicy(falseRejectTolerance: frrTolerance, aurocTolerance: aurocTolerance), keepVersions: keep,
            autoAcceptQuantile: quantile, trainerThreads: threads, retryDelaySeconds: retry)
    }

    /// Rules between lines, found without touching the disk; read from the raw nodes so that a
    /// line with other problems is still compared.
    mutating func checkRelations(nodes: [Node]) {
        func raw(_ node: Node, _ key: String) -> String? {
            node.mapping?.first { $0.key.scalar?.string == key }?.value.scalar?.string
        }
        var names: [String: Int] = [:]
        var inboxes: [FilePath: Int] = [:]
        for (index, node) in nodes.enumerated() where node.mapping != nil {
            let key = "lines[\(index)]"
            if let name = raw(node, "name") {
                if let other = names[name] { problem(key + ".name", node, "\"\(name)\" is also the name of lines[\(other)]") }
                names[name] = names[name] ?? index
            }
            guard let inboxText = raw(node, "inbox") else { continue }
            let inbox = FilePath(inboxText).lexicallyNormalized()
            if let other = inboxes[inbox] { problem(key + ".inbox", node, "\(inbox) is also the inbox of lines[\(other)]; two lines cannot share an inbox") }
            inboxes[inbox] = inboxes[inbox] ?? index
            for name in ["outbox", "archive", "quarantine", "work"] {
                if let text = raw(node, name), FilePath(text).lexicallyNormalized() == inbox {
                    problem("\(key).\(name)", node, "must not be the inbox itself (\(inbox)): its files would be inspected again")
                }
            }
        }
    }

    /// Rules that need the disk: directories exist, the work directory shares the inbox's
    /// file system, the model bundle is there; and inboxes that are one directory by two names.
    /// Checked for every line, also those with other problems.
    mutating func checkFileSystem(_ configuration: DaemonConfiguration) {
        for (index, paths) in linePaths {
            let key = "lines[\(index)]"
            var inboxDevice: UInt64?
            for name in ["inbox", "outbox", "archive", "quarantine", "work"] {
                guard let directory = paths[name] else { continue }
                var status = stat()
                if stat(directory.string, &status) != 0 {
                    problem("\(key).\(name)", nil, "\(directory) does not exist (\(String(cString: strerror(errno)))); create it (systemd-tmpfiles --create) or fix the path")
                    continue
                }
                if status.st_mode & S_IFMT != S_IFDIR {
                    problem("\(key).\(name)", nil, "\(directory) is not a directory")
                    continue
                }
                if name == "inbox" { inboxDevice = UInt64(status.st_dev) }
                if name == "work", let inboxDevice, UInt64(status.st_dev) != inboxDevice {
                    problem("\(key).work", nil, "\(directory) is on another file system than the inbox \(paths["inbox"]!); the claim must be one atomic rename")
                }
            }
            var status = stat()
            if let model = paths["model"], stat(model.string, &status) != 0 {
                problem("\(key).model", nil, "model bundle \(model) does not exist (\(String(cString: strerror(errno))))")
            } else if let model = paths["model"], status.st_mode & S_IFMT != S_IFDIR {
                problem("\(key).model", nil, "\(model) is a file; point lines[].model at the bundle directory that holds manifest.json")
            } else if let model = paths["model"], learningLines.contains(index), !ModelStore.isStore(model) {
                problem("\(key).model", nil, "\(model) must be a model store (v0001/ and a `current` link to it) when learning is on; see docs/rstpmd.md")
            }
        }
        if let metrics = configuration.metricsFile {
            var status = stat()
            let directory = metrics.removingLastComponent()
            if stat(directory.string, &status) != 0 || status.st_mode & S_IFMT != S_IFDIR {
                problem("metrics_file", nil, "directory \(directory) does not exist")
            }
        }
        checkOverlaps(configuration)
    }

    /// A folder the daemon reads or writes, resolved on disk.
    private struct ResolvedFolder {
        var key: String
        /// The `lines[i]` index it belongs to.
        var line: Int
        var path: FilePath
        /// realpath(3): symbolic links and `..` resolved.
        var real: String
        /// "device:inode", equal for one directory under two names (bind mounts too).
        var identity: String
        var isInbox: Bool
    }

    /// Every folder of every line must be its own: an archive or outbox that is the inbox under
    /// another name (a symbolic link) makes the daemon inspect its own output forever, and two
    /// lines writing one outbox lose each other's verdicts. Compared by device and inode and by
    /// real path, so links, bind mounts and nesting are all caught; the metrics file must lie
    /// outside them all.
    private mutating func checkOverlaps(_ configuration: DaemonConfiguration) {
        func resolve(_ key: String, line: Int, _ path: FilePath, isInbox: Bool) -> ResolvedFolder? {
            var status = stat()
            guard stat(path.string, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, let real = realpath(path.string, nil) else { return nil }
            defer { free(real) }
            return ResolvedFolder(key: key, line: line, path: path, real: String(cString: real), identity: "\(status.st_dev):\(status.st_ino)", isInbox: isInbox)
        }
        var folders: [ResolvedFolder] = []
        for (index, paths) in linePaths {
            for name in ["inbox", "outbox", "archive", "quarantine", "work"] {
                if let path = paths[name], let folder = resolve("lines[\(index)].\(name)", line: index, path, isInbox: name == "inbox") { folders.append(folder) }
            }
        }
        for (line, index) in zip(configuration.lines, lineIndices) {
            guard let learning = line.learning else { continue }
            for (name, path) in [("accepted", learning.accepted), ("store", learning.trainingStore)] {
                if let folder = resolve("lines[\(index)].learning.\(name)", line: index, path, isInbox: false) { folders.append(folder) }
            }
        }
        func contains(_ outer: ResolvedFolder, _ inner: ResolvedFolder) -> Bool {
            inner.real.hasPrefix(outer.real == "/" ? "/" : outer.real + "/")
        }
        for (position, folder) in folders.enumerated() {
            for earlier in folders[..<position] {
                // checkRelations already reported equal spellings of two inboxes, or of a line's
                // inbox and another of its folders.
                let reported = folder.path == earlier.path && ((folder.isInbox && earlier.isInbox) || ((folder.isInbox || earlier.isInbox) && folder.line == earlier.line))
                if reported { continue }
                if folder.identity == earlier.identity {
                    problem(folder.key, nil, "\(folder.path) is the same directory as \(earlier.key) (\(earlier.path), real path \(folder.real)); every folder of every line must be its own")
                } else if contains(earlier, folder) || contains(folder, earlier) {
                    let (outer, inner) = contains(earlier, folder) ? (earlier, folder) : (folder, earlier)
                    problem(folder.key, nil, "\(inner.key) (\(inner.real)) lies inside \(outer.key) (\(outer.real)); every folder of every line must be its own")
                }
            }
        }
        if let metrics = configuration.metricsFile, let directory = resolve("metrics_file", line: -1, metrics.removingLastComponent(), isInbox: false) {
            for folder in folders where folder.identity == directory.identity || contains(folder, directory) {
                problem("metrics_file", nil, "\(metrics) lies inside \(folder.key) (\(folder.real)); keep it outside the lines' folders")
            }
        }
    }

    // MARK: typed values

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

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "rstpmd" }
        let name = String(cString: buffer)
        return name.isEmpty ? "rstpmd" : name
    }
}
