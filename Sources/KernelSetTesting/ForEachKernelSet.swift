import TensorEngine
import XCTest

// Test-only: imported by the test targets whose numeric checks must hold on every kernel route.
extension XCTestCase {
    /// Runs `body` once under each kernel set of `sets` (Engine.useKernels), restoring the
    /// engine's set afterwards, so that one test run checks every route: AVX-512, AVX2 and the
    /// generic Swift loops. A set this CPU lacks is skipped with a printed line, never silently
    /// (and a test whose sets all lack ends in XCTSkip); failures under a set are followed by one
    /// that names it.
    public func forEachKernelSet(_ sets: [KernelSet] = KernelSet.allCases, file: StaticString = #filePath, line: UInt = #line,
                          _ body: (KernelSet) throws -> Void) throws {
        let previous = Engine.kernelSet
        defer { Engine.useKernels(previous) }
        var ran = 0
        for set in sets {
            guard set.isAvailable else {
                print("kernel set \(set.rawValue) skipped: this CPU lacks its instructions")
                continue
            }
            Engine.useKernels(set)
            let failures = testRun?.totalFailureCount ?? 0
            try body(set)
            if (testRun?.totalFailureCount ?? 0) > failures { XCTFail("the failures above ran on kernel set \(set.rawValue)", file: file, line: line) }
            ran += 1
        }
        if ran == 0 { throw XCTSkip("this CPU runs none of the kernel sets \(sets.map(\.rawValue))") }
    }
}
