import ArgumentParser
import Backbones
import Foundation
import TensorEngine

/// `--weights-dir` and `--threads`, with one spelling and one help text in every command that
/// runs networks.
struct EngineOptions: ParsableArguments {
    @Option(help: "Weights directory with the teachers' checkpoints (default: $RSTPM_WEIGHTS, $XDG_DATA_HOME/rstpm/weights or ~/.local/share/rstpm/weights).")
    var weightsDir: String?

    @Option(help: "Engine threads (default: all cores; 2 in the benchmarks, as their reference runs).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    var weightsDirectory: URL { WeightsDirectory.resolve(override: weightsDir) }

    /// Sizes the engine: `--threads`, else `fallback`, else all cores (the engine's default).
    /// Returns the thread count in use.
    @discardableResult
    func configureEngine(fallback: Int? = nil) -> Int {
        if let count = threads ?? fallback { Engine.configure(threadCount: count) }
        return Engine.threadCount
    }
}
