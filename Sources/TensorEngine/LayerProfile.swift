import Foundation

/// RSTPM_PROFILE=1: wall time per kind of layer call (convolutions by shape and route,
/// BatchNorm, resizes) and per named stage of a pipeline (RSTPMModel's fusion steps), summed
/// over the calls between `reset` and `report`, to see where an inference's time goes (`rstpm
/// bench method` prints it after its inference timing). Off: one branch per call.
///
/// Measured calls nest: a label's time excludes that of the labels measured inside it, so a
/// stage wrapped around a network shows only the time outside that network's listed layers,
/// and the lines add up to the wall time spent under them. Single-threaded: call `measure`
/// from the thread that drives the pipeline, not from inside parallel workers.
public enum LayerProfile {
    /// From RSTPM_PROFILE at start-up; tests may switch it.
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["RSTPM_PROFILE"].map { !$0.isEmpty && $0 != "0" } ?? false

    nonisolated(unsafe) private static var totals: [String: (calls: Int, nanoseconds: UInt64, flops: Double)] = [:]

    nonisolated(unsafe) private static var lastLabel = ""

    /// Wall time of the measured calls running inside each open `measure`, innermost last.
    nonisolated(unsafe) private static var nestedNanoseconds: [UInt64] = []

    /// Runs `body`, adding its wall time (less that of measured calls inside it) under `label`
    /// when profiling.
    @inline(__always)
    public static func measure<Result>(_ label: @autoclosure () -> String, _ body: () -> Result) -> Result {
        guard enabled else { return body() }
        nestedNanoseconds.append(0)
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        let nested = nestedNanoseconds.removeLast()
        if !nestedNanoseconds.isEmpty { nestedNanoseconds[nestedNanoseconds.count - 1] += elapsed }
        lastLabel = label()
        let old = totals[lastLabel] ?? (0, 0, 0)
        totals[lastLabel] = (old.calls + 1, old.nanoseconds + (elapsed - min(nested, elapsed)), old.flops)
        return result
    }

    /// Adds `flops` (2 x multiply-adds) to the label last measured, for its GFLOPS.
    public static func addFlops(_ flops: Double) {
        guard enabled, let old = totals[lastLabel] else { return }
        totals[lastLabel] = (old.calls, old.nanoseconds, old.flops + flops)
    }

    public static func reset() { totals = [:] }

    /// One line per label, the most time first: calls, ms per one of `units` (e.g. images), share,
    /// GFLOPS; then their sum, and with `wallNanoseconds` (the wall time the report covers) the
    /// part of it that no label measured.
    public static func report(per units: Int, wallNanoseconds: UInt64? = nil) -> String {
        let all = totals.values.reduce(0) { $0 + $1.nanoseconds }
        let perUnit = { (nanoseconds: Double) in nanoseconds / 1e6 / Double(units) }
        // Foundation on Linux ignores a width on %@, so labels are padded here.
        let padded = { (label: String) in label.count >= 58 ? label : label.padding(toLength: 58, withPad: " ", startingAt: 0) }
        var lines = [padded("layer or stage (RSTPM_PROFILE)") + String(format: " %6@ %9@ %6@ %7@", "calls" as NSString,
                                                                        "ms/image" as NSString, "share" as NSString, "GFLOPS" as NSString)]
        for (label, entry) in totals.sorted(by: { $0.value.nanoseconds > $1.value.nanoseconds }) {
            let seconds = Double(entry.nanoseconds) / 1e9
            lines.append(padded(label) + String(format: " %6d %9.3f %5.1f%% %7.1f", entry.calls, perUnit(Double(entry.nanoseconds)),
                                100 * Double(entry.nanoseconds) / Double(max(all, 1)), entry.flops > 0 ? entry.flops / seconds / 1e9 : 0))
        }
        lines.append(padded("sum of the above") + String(format: " %6@ %9.3f", "" as NSString, perUnit(Double(all))))
        if let wallNanoseconds {
            lines.append(padded("not profiled (wall time less the sum)") + String(format: " %6@ %9.3f", "" as NSString,
                                                                                 perUnit(Double(wallNanoseconds) - Double(all))))
        }
        return lines.joined(separator: "\n")
    }
}
