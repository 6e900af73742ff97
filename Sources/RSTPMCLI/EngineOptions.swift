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

extension Precision: ExpressibleByArgument {}

/// `--precision`, in every command that runs trained or frozen networks for inference (eval,
/// infer, bench, classify); training always runs in f32.
struct PrecisionOptions: ParsableArguments {
    @Option(help: "Precision of the inference convolutions: f32 (the reference) or bf16 (CPUs with avx512_bf16; default: $RSTPM_PRECISION, else f32).")
    var precision: Precision?

    /// Switches the engine to `--precision`, if given (else it runs RSTPM_PRECISION or f32): one
    /// that cannot run on this CPU stops the process with a message and exit status 2. Returns
    /// the precision in use.
    @discardableResult
    func configureEngine() -> Precision {
        if let precision { Engine.choosePrecision(precision, source: "--precision \(precision.rawValue)") }
        return Engine.precision
    }
}
