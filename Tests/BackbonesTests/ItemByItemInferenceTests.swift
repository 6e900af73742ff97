import Backbones
import TensorEngine
import TestSupport
import XCTest

/// In `.inference` a batch runs through the backbone one item at a time (cache-sized
/// activations); the taps must be those of the whole batch run layer by layer.
final class ItemByItemInferenceTests: XCTestCase {
    func testInferenceTapsEqualWholeBatchTaps() throws {
        let backbone = Backbone(kind: .efficientNetLite0, seed: 5)
        // Pattern weights and running statistics, so that no BatchNorm is the identity.
        try backbone.load(stateDict: patternStateDict(for: backbone), source: "pattern")
        let input = SeededGenerator(seed: 6).uniformTensor(shape: [3, 3, 64, 96], bound: 2)
        backbone.setMode(.evaluation)
        let wholeBatch = backbone.features(input, upTo: 4)
        backbone.setMode(.inference)
        let itemByItem = backbone.features(input, upTo: 4)
        XCTAssertEqual(itemByItem.map(\.shape), wholeBatch.map(\.shape))
        for (level, (tap, expected)) in zip(itemByItem, wholeBatch).enumerated() {
            let difference = maxRelativeDifference(tap.scalars, expected.scalars)
            print("tap\(level): max relative difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-5, "tap\(level)")
        }
    }
}
