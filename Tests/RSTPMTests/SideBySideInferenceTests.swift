import Backbones
import Foundation
import RSTPM
import TensorEngine
import XCTest

/// RSTPMModel.inspect runs T1, T2 and S1 and the batch's items side by side on the engine's
/// workers (RSTPMNetworks.inferenceFeatures): a batch's maps must be those of each image
/// inspected alone, so no network's or item's features went to another's place.
final class SideBySideInferenceTests: XCTestCase {
    func testBatchMapsEqualEachImageAlone() throws {
        let previous = Engine.threadCount
        Engine.configure(threadCount: 2)
        defer { Engine.configure(threadCount: previous) }
        // Lite0 with random weights and folded BatchNorms as every network, at 128x128 so that
        // the fused blocks run too.
        let backbone = { (seed: UInt64) -> Backbone in
            let network = Backbone(kind: .efficientNetLite0, seed: seed)
            network.foldBatchNorm()
            return network
        }
        let teachers = TeacherSet(teacher1: backbone(11), teacher2: backbone(12),
                                  records: [TeacherRecord(role: "T1", kind: "efficientnet-lite0", checkpointFile: "a.pth", checkpointSHA256: "a"),
                                            TeacherRecord(role: "T2", kind: "efficientnet-lite0", checkpointFile: "b.pth", checkpointSHA256: "b")],
                                  makeStudent: { Backbone(kind: .efficientNetLite0, seed: $0) })
        var configuration = TinySetup.configuration()
        (configuration.teacher1, configuration.teacher2) = ("efficientnet-lite0", "efficientnet-lite0")
        (configuration.inputWidth, configuration.inputHeight) = (128, 128)
        let networks = RSTPMNetworks(configuration: configuration, teachers: teachers)
        networks.freezeForInference()
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)) as? [String: Any])
        let manifest = try JSONDecoder().decode(BundleManifest.self,
                                                from: JSONSerialization.data(withJSONObject: HostileModelTests.craftedManifest(configuration: json)))
        let model = RSTPMModel(manifest: manifest, networks: networks)
        let images = TinySetup.images(count: 3, seed: 21, width: 128, height: 128)
        let batch = model.inspect(images.map { ModelInput(image: $0) })
        for (n, image) in images.enumerated() {
            let alone = model.inspect([ModelInput(image: image)])[0]
            for (name, together, single) in [("final", batch[n].finalMap, alone.finalMap), ("S-T", batch[n].studentTeacherMap, alone.studentTeacherMap),
                                             ("D", batch[n].discriminatorMap, alone.discriminatorMap)] {
                let scale = single.map(abs).max() ?? 0
                let difference = zip(together, single).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(difference, 1e-5 * max(scale, 1e-12), "image \(n) \(name) map")
            }
        }
        // Three different images: a mix-up of items would not go unnoticed.
        XCTAssertNotEqual(batch[0].finalMap, batch[1].finalMap)
    }
}
