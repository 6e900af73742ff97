import Backbones
import TensorEngine
import TestSupport
import XCTest

/// In `.inference` a batch runs through the backbone one item at a time (cache-sized
/// activations), the items side by side on the engine's workers; the taps must be those of the
/// whole batch run layer by layer, and those of each item run alone.
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

    /// Items run on two workers at once, in a fresh backbone (so the two race to pack the frozen
    /// weights), at a size where the fused inverted-residual blocks run: each item's taps equal
    /// those of the item run alone, bit for bit.
    func testItemsSideBySideEqualEachItemAlone() throws {
        let previous = Engine.threadCount
        Engine.configure(threadCount: 2)
        defer { Engine.configure(threadCount: previous) }
        for kind in [BackboneKind.efficientNetLite0, .resnet18] {
            let backbone = Backbone(kind: kind, seed: 7)
            try backbone.load(stateDict: patternStateDict(for: backbone), source: "pattern")
            backbone.setMode(.inference)
            let input = SeededGenerator(seed: 8).uniformTensor(shape: [4, 3, 160, 128], bound: 2)
            let batch = backbone.features(input, upTo: 3)
            for n in 0..<4 {
                let alone = backbone.features(input.batchItem(n), upTo: 3)
                for level in 0..<3 {
                    XCTAssertEqual(batch[level].batchItem(n).scalars, alone[level].scalars, "\(kind) item \(n) tap\(level)")
                }
            }
        }
    }
}
