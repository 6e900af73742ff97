import Backbones
import Checkpoints
import Foundation
import TensorEngine
import TestSupport
import XCTest

/// A state_dict of pattern values (as scripts/fixtures/pattern.py) for the backbone's own names and shapes.
func patternStateDict(for backbone: Backbone) -> StateDict {
    StateDict(backbone.namedState().map { entry in
        let shape = entry.tensor.value.shape
        return (entry.name, StoredTensor(shape: shape, values: PatternWeights.stateDictValues(name: entry.name, shape: shape)))
    })
}

func patternTensor(name: String, shape: [Int], scale: Double) -> Tensor {
    Tensor(shape: shape, scalars: PatternWeights.values(name: name, count: shape.reduce(1, *), scale: scale))
}

/// The real checkpoint of `kind` in the weights directory; fails (not skips) when it is missing.
func checkpointURL(_ kind: BackboneKind, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
    let url = TestPaths.weightsDirectory.appendingPathComponent(kind.defaultCheckpointFileName)
    guard FileManager.default.fileExists(atPath: url.path) else {
        XCTFail("\(url.path) is missing: run `.build/release/rstpm weights fetch` first (scripts/test.sh does)", file: file, line: line)
        throw XCTSkip("weights missing")
    }
    return url
}

/// Asserts `actual` matches the fixture entry within `tolerance` (max relative difference) and prints it.
func assertClose(_ actual: Tensor, _ expected: TensorFixture.Entry, _ label: String, tolerance: Float,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "\(label) shape", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let difference = maxRelativeDifference(actual.scalars, expected.values)
    print("\(label): max relative difference \(difference)")
    XCTAssertLessThanOrEqual(difference, tolerance, label, file: file, line: line)
}
