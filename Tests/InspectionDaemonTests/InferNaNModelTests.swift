import Checkpoints
import Foundation
import SystemPackage
import TestSupport
import XCTest

/// `rstpm infer` on a model whose weights hold NaN: reported as rstpmd reports it
/// (inference_failure, naming the model), not as a JSON encoder's complaint.
final class InferNaNModelTests: XCTestCase {
    func testNaNModelIsAnInferenceFailureNamingTheModel() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let bundle = folders.root.appendingPathComponent("nan-model")
        try FileManager.default.copyItem(at: try BinaryHarness.tinyModel(), to: bundle)
        // Poison the discriminator's tensors, then re-seal the bundle so that it still loads.
        let weightsURL = bundle.appendingPathComponent("weights.safetensors")
        let original = try SafeTensors.read(contentsOf: weightsURL)
        var tensors = original.tensors
        let poisoned = tensors.keys.filter { $0.contains("discriminator") }
        XCTAssertFalse(poisoned.isEmpty, "\(tensors.keys.sorted().prefix(10))")
        for name in poisoned {
            let tensor = tensors[name]!
            tensors[name] = StoredTensor(shape: tensor.shape, values: [Float](repeating: .nan, count: tensor.values.count))
        }
        let oldDigest = try sha256Hex(of: weightsURL)
        try SafeTensors.write(tensors, metadata: original.metadata, to: weightsURL)
        let manifestURL = bundle.appendingPathComponent("manifest.json")
        let manifest = try String(contentsOf: manifestURL, encoding: .utf8)
        try manifest.replacingOccurrences(of: oldDigest, with: try sha256Hex(of: weightsURL)).write(to: manifestURL, atomically: true, encoding: .utf8)

        let image = BinaryHarness.bottle.appendingPathComponent("test/good/000.png").path
        let (status, output) = try Tools.run(BinaryHarness.cliBinary, [
            "infer", "--model", bundle.path, "--out", folders.path("outbox").string, "--weights-dir", TestPaths.weightsDirectory.path, image,
        ], environment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.contains("inference_failure") && output.contains(bundle.path) && output.contains("not finite"), output)
        XCTAssertFalse(output.contains("EncodingError"), output)
        XCTAssertEqual(folders.list("outbox"), [], "no verdict for a score that is not a number")
    }
}
