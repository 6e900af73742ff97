import DaemonSupport
import Foundation
import SystemPackage

/// Counters and latency histograms, written as a Prometheus text file for node exporter's
/// textfile collector (`<file>.tmp`, then rename, so the collector never reads half a file).
/// Thread-safe: lines record from their own queues.
public final class MetricsRegistry: @unchecked Sendable {
    /// Upper bounds in seconds, from a fast 8 ms inference to a slow 30 s batch.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    struct Histogram {
        var counts = [Int](repeating: 0, count: MetricsRegistry.latencyBuckets.count)
        var count = 0
        var sum = 0.0
    }

    private let lock = NSLock()
    private var counters: [String: [String: Double]] = [:]   // name -> labels -> value
    private var gauges: [String: [String: Double]] = [:]
    private var histograms: [String: [String: Histogram]] = [:]
    private let help: [String: String] = [
        "rstpmd_inputs_total": "Inputs decided, by line and verdict (ok, defect, error).",
        "rstpmd_claims_lost_total": "Claims another daemon won (normal when inboxes are shared).",
        "rstpmd_retries_total": "Inputs left in work/ after a transient error (ENOSPC, EIO), to retry.",
        "rstpmd_recovered_total": "Inputs found in work/ at start and processed again.",
        "rstpmd_queue_depth": "Inputs claimed and not yet decided, by line.",
        "rstpmd_stage_seconds": "Time per input in each stage (decode, infer, write).",
        "rstpmd_batch_seconds": "Time per batch from claim to the last output written.",
    ]

    public init() {}

    public func increment(_ name: String, labels: [String: String], by amount: Double = 1) {
        lock.lock(); defer { lock.unlock() }
        counters[name, default: [:]][Self.render(labels), default: 0] += amount
    }

    public func set(_ name: String, labels: [String: String], to value: Double) {
        lock.lock(); defer { lock.unlock() }
        gauges[name, default: [:]][Self.render(labels)] = value
    }

    public func observe(_ name: String, labels: [String: String], seconds: Double) {
        lock.lock(); defer { lock.unlock() }
        var histogram = histograms[name, default: [:]][Self.render(labels)] ?? Histogram()
        for (index, bound) in Self.latencyBuckets.enumerated() where seconds <= bound { histogram.counts[index] += 1 }
        histogram.count += 1
        histogram.sum += seconds
        histograms[name, default: [:]][Self.render(labels)] = histogram
    }

    /// The value of a counter, for tests and status lines.
    public func counter(_ name: String, labels: [String: String]) -> Double {
        lock.lock(); defer { lock.unlock() }
        return counters[name]?[Self.render(labels)] ?? 0
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
            text += "# HELP \(name) \(help[name] ?? name)\n# TYPE \(name) \(type)\n"
        }
        for name in counters.keys.sorted() {
            header(name, "counter")
            for (labels, value) in counters[name]!.sorted(by: { $0.key < $1.key }) { text += "\(name)\(labels) \(value)\n" }
        }
        for name in gauges.keys.sorted() {
            header(name, "gauge")
            for (labels, value) in gauges[name]!.sorted(by: { $0.key < $1.key }) { text += "\(name)\(labels) \(value)\n" }
        }
        for name in histograms.keys.sorted() {
            header(name, "histogram")
            for (labels, histogram) in histograms[name]!.sorted(by: { $0.key < $1.key }) {
                let inner = labels.isEmpty ? "" : String(labels.dropFirst().dropLast()) + ","
                for (index, bound) in Self.latencyBuckets.enumerated() {
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
