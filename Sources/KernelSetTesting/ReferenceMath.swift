import TensorEngine
import XCTest

// Test-only: the double-precision side of the kernel tests.
extension XCTestCase {
    /// A fused activation applied in double, as the reference loops apply it.
    public func activate(_ value: Double, _ activation: FusedActivation) -> Double {
        switch activation {
        case .none: value
        case .relu: max(value, 0)
        case .relu6: min(max(value, 0), 6)
        }
    }

    /// max |actual - expected| over max |expected| (infinite where a value is NaN).
    public func scaledError(_ actual: [Float], _ expected: [Double]) -> Double {
        precondition(actual.count == expected.count)
        if actual.contains(where: \.isNaN) { return .infinity }
        let scale = expected.map(abs).max() ?? 0
        let error = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
        return scale > 0 ? error / scale : error
    }
}
