import Foundation

/// RSTPM_PROFILE=1: wall time per kind of layer call (convolutions by shape and route,
/// BatchNorm, resizes), summed over the calls between `reset` and `report`, to see where an
/// inference's time goes (`rstpm bench method` prints it after its inference timing). Off: one
/// branch per layer call.
public enum LayerProfile {
    public static let enabled = ProcessInfo.processInfo.environment["RSTPM_PROFILE"].map { !$0.isEmpty && $0 != "0" } ?? false

    nonisolated(unsafe) private static var totals: [String: (calls: Int, nanoseconds: UInt64, flops: Double)] = [:]

    nonisolated(unsafe) private static var lastLabel = ""

    /// Runs `body`, adding its wall time under `label` when profiling.
    @inline(__always)
    static func measure<Result>(_ label: @autoclosure () -> String, _ body: () -> Result) -> Result {
        guard enabled else { return body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        lastLabel = label()
        let old = totals[lastLabel] ?? (0, 0, 0)
        totals[lastLabel] = (old.calls + 1, old.nanoseconds + elapsed, old.flops)
        return result
    }

    /// Adds `flops` (2 x multiply-adds) to the label last measured, for its GFLOPS.
    static func addFlops(_ flops: Double) {
        guard enabled, let old = totals[lastLabel] else { return }
        totals[lastLabel] = (old.calls, old.nanoseconds, old.flops + flops)
    }

    public static func reset() { totals = [:] }

    /// One line per label, the most time first: calls, ms per one of `units` (e.g. images), share, GFLOPS.
    public static func report(per units: Int) -> String {
        let all = totals.values.reduce(0) { $0 + $1.nanoseconds }
        var lines = [String(format: "%-58@ %6@ %9@ %6@ %7@", "layer (RSTPM_PROFILE)" as NSString, "calls" as NSString,
                            "ms/image" as NSString, "share" as NSString, "GFLOPS" as NSString)]
        for (label, entry) in totals.sorted(by: { $0.value.nanoseconds > $1.value.nanoseconds }) {
            let seconds = Double(entry.nanoseconds) / 1e9
            lines.append(String(format: "%-58@ %6d %9.3f %5.1f%% %7.1f", label as NSString, entry.calls, seconds * 1e3 / Double(units),
                                100 * Double(entry.nanoseconds) / Double(max(all, 1)), entry.flops > 0 ? entry.flops / seconds / 1e9 : 0))
        }
        lines.append(String(format: "%-58@ %6@ %9.3f", "sum of the above" as NSString, "" as NSString, Double(all) / 1e6 / Double(units)))
        return lines.joined(separator: "\n")
    }
}
