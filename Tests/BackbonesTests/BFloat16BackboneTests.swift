import Backbones
import Foundation
import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// The teachers' feature extraction in bf16 against f32: the pretrained networks the method runs,
/// BatchNorm folded, taps 0..2 as RSTPM uses them.
final class BFloat16BackboneTests: XCTestCase {
    /// Each convolution rounds its weights and inputs to bf16 (at most 2^-8 relative each) and the
    /// errors add up over the layers; the bound is on the largest difference relative to the
    /// tap's largest magnitude, between two and four times what these networks show (0.8% to
    /// 1.3%; OpenVINO's bf16 RSTPM + D map differs from f32 by up to 4.8% in the same measure).
    func testTeacherTapsInBFloat16StayCloseToF32() throws {
        try requireBFloat16()
        let input = patternTensor(name: "bf16_input", shape: [2, 3, 96, 96], scale: 2)
        for (kind, bound) in [(BackboneKind.efficientNetLite0, Float(0.03)), (.efficientNetLite2, 0.03)] {
            let backbone = try Backbone.pretrained(kind: kind, checkpoint: checkpointURL(kind))
            backbone.setMode(.inference)
            backbone.foldBatchNorm()
            let f32 = try withPrecision(.f32) { backbone.features(input, upTo: 3) }
            let bf16 = try withPrecision(.bf16) { backbone.features(input, upTo: 3) }
            for (level, (a, b)) in zip(bf16, f32).enumerated() {
                let difference = maxRelativeDifference(a.scalars, b.scalars)
                print("\(kind.rawValue) tap\(level): bf16 against f32, max relative difference \(difference)")
                XCTAssertLessThanOrEqual(difference, bound, "\(kind.rawValue) tap\(level)")
                XCTAssertGreaterThan(difference, 0, "\(kind.rawValue) tap\(level): identical to f32: did bf16 run?")
            }
        }
    }
}
