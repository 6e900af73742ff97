import Backbones
import Checkpoints
import Foundation
import OperatorErrors
import TensorEngine
import TestSupport
import XCTest

final class BackboneLoadingTests: XCTestCase {
    /// The encoded Lite block tables must produce exactly the real checkpoints' keys and shapes.
    func testLiteBlockTablesMatchRealCheckpoints() throws {
        for kind in [BackboneKind.efficientNetLite0, .efficientNetLite1, .efficientNetLite2] {
            let stateDict = try TorchCheckpoint.load(contentsOf: checkpointURL(kind))
            let backbone = Backbone(kind: kind, seed: 0)
            let state = backbone.namedState()
            XCTAssertEqual(state.map(\.name), stateDict.keys, "\(kind.rawValue): names or order differ from the checkpoint")
            for (name, tensor) in state where !name.hasSuffix("num_batches_tracked") {
                XCTAssertEqual(tensor.value.shape, stateDict[name]?.shape, "\(kind.rawValue) \(name)")
            }
        }
        XCTAssertEqual(BackboneKind.efficientNetLite0.liteTapBlocks, [2, 4, 10, 15])
        XCTAssertEqual(BackboneKind.efficientNetLite1.liteTapBlocks, [3, 6, 14, 20])
        XCTAssertEqual(BackboneKind.efficientNetLite2.liteTapBlocks, [3, 6, 14, 20])
        XCTAssertEqual(BackboneKind.efficientNetLite2.tapChannels, [24, 48, 120, 352])
    }

    func testMissingKeyAndWrongShapeThrowTypedErrors() throws {
        let backbone = Backbone(kind: .resnet18, seed: 0)
        var stateDict = patternStateDict(for: backbone)
        stateDict["layer2.1.bn1.running_var"] = nil
        XCTAssertThrowsError(try backbone.load(stateDict: stateDict, source: "/tmp/broken.pth")) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .missingTensors(["layer2.1.bn1.running_var"]))
            XCTAssertTrue("\(error)".contains("/tmp/broken.pth"), "\(error)")
        }
        stateDict = patternStateDict(for: backbone)
        stateDict["fc.weight"] = StoredTensor(shape: [10, 512], values: [Float](repeating: 0, count: 5120))
        XCTAssertThrowsError(try backbone.load(stateDict: stateDict, source: "/tmp/other.pth")) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .tensorShapesDiffer(["fc.weight"]))
            XCTAssertTrue("\(error)".contains("fc.weight is [10, 512], expected [1000, 512]"), "\(error)")
        }
        stateDict = patternStateDict(for: backbone)
        stateDict["head.extra"] = StoredTensor(shape: [1], values: [0])
        XCTAssertThrowsError(try backbone.load(stateDict: stateDict, source: "/tmp/other.pth")) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .unexpectedTensors(["head.extra"]))
        }
        // A Lite checkpoint for a ResNet: refused, and nothing was overwritten.
        let before = backbone.namedParameters()[0].parameter.value
        XCTAssertThrowsError(try backbone.load(stateDict: patternStateDict(for: Backbone(kind: .efficientNetLite0, seed: 0)), source: "lite"))
        XCTAssertEqual(backbone.namedParameters()[0].parameter.value, before)
    }
}
