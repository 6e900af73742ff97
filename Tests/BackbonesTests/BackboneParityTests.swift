import Backbones
import Checkpoints
import Foundation
import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// Forward and backward against PyTorch (fixtures from scripts/fixtures/make_backbone*_fixtures.py),
/// under every kernel set this CPU runs.
final class BackboneParityTests: XCTestCase {
    func testResNetTapsAndLogitsMatchTorchvisionWithPatternWeights() throws {
        try forEachKernelSet { _ in
            let fixture = try TensorFixture(named: "backbones_v1.tensors")
            let input = Tensor(shape: fixture["input"].shape, scalars: fixture["input"].values)
            for kind in [BackboneKind.resnet18, .resnet50] {
                let backbone = Backbone(kind: kind, seed: 1)
                try backbone.load(stateDict: patternStateDict(for: backbone), source: "pattern")
                backbone.setMode(.inference)
                let taps = backbone.features(input, upTo: 4)
                XCTAssertEqual(taps.map { $0.shape[1] }, kind.tapChannels)
                for (level, tap) in taps.enumerated() {
                    assertClose(tap, fixture["\(kind.rawValue).tap\(level)"], "\(kind.rawValue) tap\(level)", tolerance: 1e-4)
                }
                assertClose(backbone.logits(input), fixture["\(kind.rawValue).logits"], "\(kind.rawValue) logits", tolerance: 1e-4)
            }
        }
    }

    func testLite0TapsAndLogitsMatchReferenceWithRealWeights() throws {
        try forEachKernelSet { _ in
            let fixture = try TensorFixture(named: "backbones_v1.tensors")
            let input = Tensor(shape: fixture["input"].shape, scalars: fixture["input"].values)
            let backbone = try Backbone.pretrained(kind: .efficientNetLite0, checkpoint: checkpointURL(.efficientNetLite0))
            backbone.setMode(.inference)
            let taps = backbone.features(input, upTo: 4)
            XCTAssertEqual(taps.map { $0.shape[1] }, BackboneKind.efficientNetLite0.tapChannels)
            for (level, tap) in taps.enumerated() {
                assertClose(tap, fixture["efficientnet-lite0.tap\(level)"], "lite0 tap\(level)", tolerance: 1e-4)
            }
            assertClose(backbone.logits(input), fixture["efficientnet-lite0.logits"], "lite0 logits", tolerance: 1e-4)
            // Folded BatchNorm must give the same taps and logits as the unfolded network.
            backbone.foldBatchNorm()
            for (level, tap) in backbone.features(input, upTo: 4).enumerated() {
                assertClose(tap, fixture["efficientnet-lite0.tap\(level)"], "lite0 folded tap\(level)", tolerance: 1e-4)
            }
            assertClose(backbone.logits(input), fixture["efficientnet-lite0.logits"], "lite0 folded logits", tolerance: 1e-4)
        }
    }

    func testFoldedBatchNormEqualsEvaluationMode() throws {
        try forEachKernelSet { _ in
            let input = patternTensor(name: "fold_input", shape: [2, 3, 64, 64], scale: 1)
            for kind in [BackboneKind.resnet18, .efficientNetLite2] {
                let backbone = Backbone(kind: kind, seed: 7)
                try backbone.load(stateDict: patternStateDict(for: backbone), source: "pattern")
                backbone.setMode(.evaluation)
                let expected = backbone.features(input, upTo: 4) + [backbone.logits(input)]
                backbone.setMode(.inference)
                backbone.foldBatchNorm()
                XCTAssertFalse(backbone.namedState().contains { $0.name.hasSuffix("running_mean") }, "BatchNorms left after folding")
                let folded = backbone.features(input, upTo: 4) + [backbone.logits(input)]
                for (index, (a, b)) in zip(folded, expected).enumerated() {
                    let difference = maxRelativeDifference(a.scalars, b.scalars)
                    print("\(kind.rawValue) folded vs evaluation output \(index): max relative difference \(difference)")
                    XCTAssertLessThanOrEqual(difference, 1e-4)
                }
            }
        }
    }

    /// Training-mode taps 0..2, loss sum(tap0 * g0) + sum(tap2 * g2), tap 1 without gradient.
    func testBackwardFromTapsMatchesTorch() throws {
        try forEachKernelSet { _ in
            let fixture = try TensorFixture(named: "backbone_grads_v1.tensors")
            let parameters = [
                BackboneKind.resnet18: ["conv1.weight", "bn1.weight", "layer2.0.downsample.0.weight", "layer3.1.bn2.bias"],
                .efficientNetLite0: ["_conv_stem.weight", "_bn0.bias", "_blocks.1._expand_conv.weight",
                                     "_blocks.4._depthwise_conv.weight", "_blocks.10._bn2.weight"],
            ]
            for (kind, names) in parameters.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                let backbone = Backbone(kind: kind, seed: 3)
                try backbone.load(stateDict: patternStateDict(for: backbone), source: "pattern")
                backbone.setMode(.training)
                let input = patternTensor(name: "grad_input", shape: [2, 3, 32, 32], scale: 1)
                let taps = backbone.features(input, upTo: 3)
                XCTAssertEqual(taps.count, 3)
                for (level, tap) in taps.enumerated() {
                    assertClose(tap, fixture["\(kind.rawValue).tap\(level)"], "\(kind.rawValue) training tap\(level)", tolerance: 1e-4)
                }
                let gradients: [Tensor?] = [patternTensor(name: "grad_tap0", shape: taps[0].shape, scale: 1), nil,
                                            patternTensor(name: "grad_tap2", shape: taps[2].shape, scale: 1)]
                let inputGradient = backbone.backward(tapGradients: gradients)
                assertClose(inputGradient, fixture["\(kind.rawValue).input_grad"], "\(kind.rawValue) input gradient", tolerance: 1e-3)
                let named = Dictionary(uniqueKeysWithValues: backbone.namedParameters().map { ($0.name, $0.parameter) })
                for name in names {
                    let parameter = try XCTUnwrap(named[name], "no parameter \(name)")
                    assertClose(parameter.gradient, fixture["\(kind.rawValue).grad.\(name)"], "\(kind.rawValue) d\(name)", tolerance: 1e-3)
                }
            }
        }
    }
}
