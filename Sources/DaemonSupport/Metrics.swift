import Foundation
import SystemPackage

/// One metric the daemon exports: its type, HELP text and labels. `MetricsRegistry.catalogue`
/// lists them all, so HELP texts and label sets live in one place and every series whose
/// labels are known up front exists from the start at 0.
public struct MetricFamily: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }
    public var name: String
    public var kind: Kind
    public var help: String
    /// Labels besides `line` with the values known up front; a label with no known values
    /// (a gauge's `folder` that depends on the configuration, a model's id) is left out.
    public var labelValues: [(label: String, values: [String])]
    /// Histogram bucket upper bounds.
    public var buckets: [Double]

    init(_ name: String, _ kind: Kind, _ help: String, _ labelValues: [(label: String, values: [String])] = [], buckets: [Double] = []) {
        self.name = name
        self.kind = kind
        self.help = help
        self.labelValues = labelValues
        self.buckets = buckets
    }
}

/// Counters, gauges and histograms, written as a Prometheus text file for node exporter's
/// textfile collector (`<file>.tmp`, then rename, so the collector never reads half a file).
/// Thread-safe: lines record from their own queues.
public final class MetricsRegistry: @unchecked Sendable {
    /// Upper bounds in seconds, from a fast 8 ms inference to a slow 30 s batch.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    /// Score / threshold: fine around 1, where ok turns into defect, and the same for every model.
    public static let scoreRatioBuckets: [Double] = [0.25, 0.5, 0.75, 0.9, 0.95, 1, 1.05, 1.1, 1.25, 1.5, 2, 4]
    static let stages = ["decode", "infer", "heatmap", "write"]
    static let retainedFolders = ["outbox", "archive", "quarantine"]

    /// Every metric rstpmd exports. Label `line` is on all of them but `rstpmd_start_time_seconds`.
    public static let catalogue: [MetricFamily] = [
        .init("rstpmd_inputs_total", .counter, "Inputs decided, by line and verdict (ok, defect, error).", [("verdict", ["ok", "defect", "error"])]),
        .init("rstpmd_claims_lost_total", .counter, "Claims another daemon won (normal when inboxes are shared)."),
        .init("rstpmd_retries_total", .counter, "Inputs left in work/ after a transient error (ENOSPC, EIO), to retry, by stage (read, write, quarantine).",
              [("stage", ["read", "write", "quarantine"])]),
        .init("rstpmd_recovered_total", .counter, "Inputs found in work/ at start and processed again."),
        .init("rstpmd_inbox_ignored_total", .counter, "Inbox entries never taken, by kind (symbolic_link, directory, other).",
              [("kind", ["symbolic_link", "directory", "other"])]),
        .init("rstpmd_crash_restarts_total", .counter,
              "Starts that found the line's crash marker: the previous run died of a fatal signal (a crash, or systemd's watchdog, which sends SIGABRT)."),
        .init("rstpmd_learning_failures_total", .counter,
              "Continuous-learning failures, by kind (training: the trainer failed; gate_rejected: a candidate failed the gate; other: a store, copy or load error).",
              [("kind", ["training", "gate_rejected", "other"])]),
        .init("rstpmd_intake_pauses_total", .counter, "Times the line stopped claiming inputs because a folder's file system fell below min_free_space."),
        .init("rstpmd_retention_removed_total", .counter,
              "Files removed by retention, by folder (outbox, archive, quarantine) and reason (age, size).",
              [("folder", retainedFolders), ("reason", ["age", "size"])]),
        .init("rstpmd_retention_removed_bytes_total", .counter, "Bytes removed by retention, by folder (outbox, archive, quarantine).", [("folder", retainedFolders)]),
        .init("rstpmd_queue_depth", .gauge, "Inputs claimed and not yet decided, by line."),
        .init("rstpmd_model_info", .gauge, "1 for the model a line serves: its id, version (the model store's version, or the bundle's creation time) and inference precision (f32, bf16)."),
        .init("rstpmd_threshold", .gauge, "The score threshold the line decides with (its threshold: setting, else the model's)."),
        .init("rstpmd_last_verdict_timestamp_seconds", .gauge,
              "Unix time of the line's last verdict (ok, defect or error); the daemon's start time until the first, so that a silent camera is noticed after a restart too."),
        .init("rstpmd_intake_paused", .gauge, "1 while the line claims nothing because a folder's file system is below min_free_space, else 0."),
        .init("rstpmd_free_bytes", .gauge, "Bytes free to unprivileged users on the file system of each of the line's folders (inbox and work share one), by folder."),
        .init("rstpmd_min_free_bytes", .gauge, "The line's min_free_space in bytes for its largest file system (0: no floor)."),
        .init("rstpmd_retained_bytes", .gauge, "Bytes in the line's folders that have a retention limit, by folder, as of the last retention round."),
        .init("rstpmd_start_time_seconds", .gauge, "Unix time the daemon started (a change means a restart)."),
        .init("rstpmd_stage_seconds", .histogram, "Time per input in each stage (decode, infer, heatmap, write).", [("stage", stages)], buckets: latencyBuckets),
        .init("rstpmd_batch_seconds", .histogram, "Time per batch from claim to the last output written.", buckets: latencyBuckets),
        .init("rstpmd_score_ratio", .histogram,
              "Each inspected input's anomaly score divided by the threshold it was decided with (1 and above: defect), so buckets mean the same for every model.",
              buckets: scoreRatioBuckets),
    ]
    static let families = Dictionary(uniqueKeysWithValues: catalogue.map { ($0.name, $0) })

    struct Histogram {
        var counts: [Int]
        var count = 0
        var sum = 0.0
        init(buckets: Int) { counts = [Int](repeating: 0, count: buckets) }
    }

    private let lock = NSLock()
    private var counters: [String: [String: Double]] = [:]   // name -> labels -> value
    private var gauges: [String: [String: Double]] = [:]
    private var histograms: [String: [String: Histogram]] = [:]

    public init() {
        set("rstpmd_start_time_seconds", labels: [:], to: Date().timeIntervalSince1970)
    }

    /// Creates every series of `line` whose labels are known up front at 0 (histograms empty),
    /// so that `rate()` and `increase()` see the first event and alerts see the line from the
    /// start. Values already there are kept (a reload declares its lines again).
    public func declare(line: String) {
        lock.lock(); defer { lock.unlock() }
        for family in Self.catalogue where family.kind != .gauge {
            var combinations: [[String: String]] = [["line": line]]
            for (label, values) in family.labelValues {
                combinations = combinations.flatMap { labels in values.map { labels.merging([label: $0]) { $1 } } }
            }
            for labels in combinations {
                let key = Self.render(labels)
                if family.kind == .counter {
                    counters[family.name, default: [:]][key, default: 0] += 0
                } else if histograms[family.name]?[key] == nil {
                    histograms[family.name, default: [:]][key] = Histogram(buckets: family.buckets.count)
                }
            }
        }
    }

    public func increment(_ name: String, labels: [String: String], by amount: Double = 1) {
        lock.lock(); defer { lock.unlock() }
        counters[name, default: [:]][Self.render(labels), default: 0] += amount
    }

    public func set(_ name: String, labels: [String: String], to value: Double) {
        lock.lock(); defer { lock.unlock() }
        gauges[name, default: [:]][Self.render(labels)] = value
    }

    /// Sets an info gauge to 1 for `labels` and drops the series of the same line with other
    /// labels (the model a line served before).
    public func setInfo(_ name: String, labels: [String: String]) {
        lock.lock(); defer { lock.unlock() }
        let line = Self.render(["line": labels["line"] ?? ""]).dropLast()
        gauges[name] = (gauges[name] ?? [:]).filter { !$0.key.hasPrefix(line + ",") && $0.key != line + "}" }
        gauges[name, default: [:]][Self.render(labels)] = 1
    }

    /// Records `value` in histogram `name` (buckets from the catalogue; latency buckets else).
    public func observe(_ name: String, labels: [String: String], value: Double) {
        lock.lock(); defer { lock.unlock() }
        let buckets = Self.families[name]?.buckets ?? Self.latencyBuckets
        var histogram = histograms[name, default: [:]][Self.render(labels)] ?? Histogram(buckets: buckets.count)
        for (index, bound) in buckets.enumerated() where value <= bound { histogram.counts[index] += 1 }
        histogram.count += 1
        histogram.sum += value
        histograms[name, default: [:]][Self.render(labels)] = histogram
    }

    public func observe(_ name: String, labels: [String: String], seconds: Double) {
        observe(name, labels: labels, value: seconds)
    }

    /// The value of a counter, for tests and status lines.
    public func counter(_ name: String, labels: [String: String]) -> Double {
        lock.lock(); defer { lock.unlock() }
        return counters[name]?[Self.render(labels)] ?? 0
    }

    /// The value of a gauge, or nil when it was never set.
    public func gauge(_ name: String, labels: [String: String]) -> Double? {
        lock.lock(); defer { lock.unlock() }
        return gauges[name]?[Self.render(labels)]
    }

    /// A counter summed over all its labels.
    public func total(_ name: String) -> Double {
        lock.lock(); defer { lock.unlock() }
        return counters[name]?.values.reduce(0, +) ?? 0
    }

    /// The Prometheus text exposition format (version 0.0.4).
    public func exposition() -> String {
        lock.lock(); defer { lock.unlock() }
        var text = ""
        func header(_ name: String, _ type: String) {
            text += "# HELP \(name) \(Self.families[name]?.help ?? name)\n# TYPE \(name) \(type)\n"
        }
        for name in counters.keys.sorted() {
            header(name, "counter")
            for (labels, value) in counters[name]!.sorted(by: { $0.key < $1.key }) { text += "\(name)\(labels) \(value)\n" }
        }
        for name in gauges.keys.sorted() where !gauges[name]!.isEmpty {
            header(name, "gauge")
            for (labels, value) in gauges[name]!.sorted(by: { $0.key < $1.key }) { text += "\(name)\(labels) \(value)\n" }
        }
        for name in histograms.keys.sorted() {
            header(name, "histogram")
            let buckets = Self.families[name]?.buckets ?? Self.latencyBuckets
            for (labels, histogram) in histograms[name]!.sorted(by: { $0.key < $1.key }) {
                let inner = labels.isEmpty ? "" : String(labels.dropFirst().dropLast()) + ","
                for (index, bound) in buckets.enumerated() {
                    text += "\(name)_bucket{\(inner)le=\"\(bound)\"} \(histogram.counts[index])\n"
                }
                text += "\(name)_bucket{\(inner)le=\"+Inf\"} \(histogram.count)\n"
                text += "\(name)_sum\(labels) \(histogram.sum)\n"
                text += "\(name)_count\(labels) \(histogram.count)\n"
            }
        }
        return text
    }

    /// Writes the exposition to `path` atomically (`path.tmp`, then rename). No fsync: it is
    /// rewritten every few seconds and losing it in a power cut costs nothing.
    public func write(to path: FilePath, using files: FileOperations) throws {
        let bytes = Array(exposition().utf8)
        let temporary = FilePath(path.string + ".tmp")
        let descriptor = try files.syscalls.open(temporary, .writeOnly, options: [.create, .truncate, .closeOnExec, .noFollow], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        do {
            var offset = 0
            try bytes.withUnsafeBytes { raw in
                while offset < raw.count { offset += try files.syscalls.write(descriptor, UnsafeRawBufferPointer(rebasing: raw[offset...])) }
            }
            try files.syscalls.close(descriptor)
        } catch {
            try? files.syscalls.close(descriptor)
            try? files.syscalls.unlink(temporary)
            throw error
        }
        try files.syscalls.rename(temporary, to: path)
    }

    static func render(_ labels: [String: String]) -> String {
        if labels.isEmpty { return "" }
        let escaped = labels.sorted { $0.key < $1.key }.map { key, value in
            "\(key)=\"\(value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n"))\""
        }
        return "{" + escaped.joined(separator: ",") + "}"
    }
}
