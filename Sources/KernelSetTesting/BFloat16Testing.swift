import TensorEngine
import XCTest

// Test-only: the bf16 inference precision, for the tests that compare it with f32.
extension XCTestCase {
    /// Throws XCTSkip, after a printed line, where this CPU cannot run bf16 (no avx512_bf16):
    /// a bf16 check is never passed silently.
    public func requireBFloat16() throws {
        if let problem = Precision.bf16.problem(on: .avx512) {
            print("bf16 skipped: \(problem)")
            throw XCTSkip("bf16 not checked: \(problem)")
        }
    }

    /// Runs `body` with the engine's inference products in `precision` on the avx512 kernel
    /// set, then restores the kernel set and precision that ran before.
    public func withPrecision<Result>(_ precision: Precision, _ body: () throws -> Result) throws -> Result {
        let (set, previous) = (Engine.kernelSet, Engine.precision)
        defer {
            Engine.useKernels(set)
            Engine.usePrecision(previous)
        }
        Engine.useKernels(.avx512)
        Engine.usePrecision(precision)
        return try body()
    }
}
