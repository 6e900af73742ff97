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

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "rstpmd" }
        let name = String(cString: buffer)
        return name.isEmpty ? "rstpmd" : name
    }
}
