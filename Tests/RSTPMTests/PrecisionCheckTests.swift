import Foundation
import KernelSetTesting
import Logging
import RSTPM
import TensorEngine
import XCTest

/// The accuracy check of a reduced precision (`PrecisionCheck`): training records it in the
/// manifest, the record round-trips, the bar fails what it must, and a network's own
/// precision runs while the engine stays f32.
final class PrecisionCheckTests: XCTestCase {
    private var directory: URL!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-precision-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func trainTiny() throws -> (RSTPMModel, URL) {
        var configuration = TinySetup.configuration()
        (configuration.studentEpochs, configuration.discriminatorEpochs) = (1, 1)
        let images = TinySetup.images(count: 12, seed: 5)
        let data = TrainingImages(folder: directory, files: images.indices.map { directory.appendingPathComponent("\($0).png") }, images: images)
        let bundle = directory.appendingPathComponent("model")
        let trainer = try RSTPMTrainer(configuration: configuration, teachers: TinySetup.teachers(), data: data, output: bundle,
                                       textures: ProceduralTextureSource(count: 8, seed: 1), logger: Logger(label: "test"))
        return (try trainer.run(), bundle)
    }

    func testTrainingRecordsTheBFloat16CheckAndTheRecordRoundTrips() throws {
        try requireBFloat16()
        guard Engine.kernelSet == .avx512 else { throw XCTSkip("bf16 runs on the avx512 kernel set; the engine runs \(Engine.kernelSet)") }
        let (model, bundle) = try trainTiny()
        let check = try XCTUnwrap(model.manifest.precisions?["bf16"], "training on a CPU with avx512_bf16 records the bf16 check")
        print("tiny model's bf16 check \(check.summary)")
        XCTAssertEqual(check.normalImages, 3)
        XCTAssertEqual(check.anomalousImages, 3 * PrecisionCheck.pseudoAnomalousVariants, "several pseudo-anomalous variants per image, so that one swapped pair stays below the AUROC tolerance")
        XCTAssertTrue((0...1).contains(check.verdictAgreement))
        XCTAssertEqual(check.passed, check.verdictAgreement >= PrecisionCheck.minimumAgreement
            && abs(check.imageAUROCChange) <= PrecisionCheck.aurocTolerance && abs(check.pixelAUROCChange) <= PrecisionCheck.aurocTolerance)
        // bf16 rounds: some score moves, but not by half.
        XCTAssertGreaterThan(check.maxRelativeScoreChange, 0)
        XCTAssertLessThan(check.maxRelativeScoreChange, 0.5)
        XCTAssertNil(model.manifest.precisions?["f32"], "f32 is the reference, not checked against itself")

        let read = try ModelBundle.read(from: bundle).manifest
        XCTAssertEqual(read.precisions, model.manifest.precisions)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: bundle.appendingPathComponent("manifest.json"))) as? [String: Any])
        let recorded = try XCTUnwrap((json["precisions"] as? [String: Any])?["bf16"] as? [String: Any])
        XCTAssertEqual(recorded["passed"] as? Bool, check.passed)
        XCTAssertNotNil(recorded["checkedAt"] as? String)
    }

    func testAManifestWithoutTheRecordDecodesWithNone() throws {
        let configuration = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(RSTPMConfiguration())) as? [String: Any])
        let old = try JSONSerialization.data(withJSONObject: HostileModelTests.craftedManifest(configuration: configuration))
        XCTAssertNil(try JSONDecoder().decode(BundleManifest.self, from: old).precisions)
    }

    /// The bar: verdict agreement, image and pixel AUROC each fail a check on their own.
    func testTheBarFailsOnDisagreementOrAUROCChange() throws {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1]
        let reference = PrecisionCheck.Run(scores: [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9],
                                           maps: labels.map { [Float]([0.1, 0.2, 0.3, $0 == 1 ? 0.9 : 0.15]) })
        let masks: [[UInt8]?] = labels.map { $0 == 1 ? [0, 0, 0, 255] : nil }
        func judge(_ candidate: PrecisionCheck.Run, threshold: Float = 0.5) throws -> PrecisionCheck {
            try PrecisionCheck.compare(candidate, with: reference, threshold: threshold, labels: labels, masks: masks,
                                       referenceAUROC: (1, 1), normalImages: 4)
        }
        let same = try judge(reference)
        XCTAssertTrue(same.passed, same.summary)
        XCTAssertEqual(same.verdictAgreement, 1)
        XCTAssertEqual(same.maxRelativeScoreChange, 0)

        var crossing = reference
        crossing.scores[3] = 0.52  // a normal image crosses the threshold: 7 of 8 agree; AUROC unchanged
        let disagreeing = try judge(crossing)
        XCTAssertFalse(disagreeing.passed, disagreeing.summary)
        XCTAssertEqual(disagreeing.verdictAgreement, 7.0 / 8.0)
        XCTAssertEqual(disagreeing.imageAUROCChange, 0)

        var swapped = reference
        (swapped.scores[0], swapped.scores[1]) = (0.45, 0.1)  // the normals change places only: passes
        XCTAssertTrue(try judge(swapped).passed)
        swapped.scores[4] = 0.35  // an anomalous image now ranks below two normal ones; at 0.95 every verdict stays ok
        let reordered = try judge(swapped, threshold: 0.95)
        XCTAssertEqual(reordered.verdictAgreement, 1)
        XCTAssertEqual(reordered.imageAUROCChange, -2.0 / 16.0, accuracy: 1e-12)
        XCTAssertFalse(reordered.passed, reordered.summary)

        var pixels = reference
        pixels.maps[0][0] = 0.95  // one normal pixel above every defect pixel
        let pixelCheck = try judge(pixels)
        XCTAssertLessThan(pixelCheck.pixelAUROCChange, -PrecisionCheck.aurocTolerance)
        XCTAssertFalse(pixelCheck.passed, pixelCheck.summary)
        XCTAssertEqual(pixelCheck.verdictAgreement, 1)
    }

    /// A model's networks run bf16 while the engine (and another model) stays f32: the same
    /// maps as the engine-wide bf16, not f32's.
    func testANetworksOwnPrecisionRunsWhileTheEngineStaysF32() throws {
        try requireBFloat16()
        let configuration = TinySetup.configuration()
        let networks = RSTPMNetworks(configuration: configuration, teachers: TinySetup.teachers())
        let model = RSTPMModel(manifest: try manifest(for: configuration), networks: networks)
        let probe = TinySetup.images(count: 2, seed: 9)
        try withPrecision(.f32) {
            let f32 = model.inspect(probe.map { ModelInput(image: $0) }).map(\.finalMap)
            let engineWide = try withPrecision(.bf16) { model.inspect(probe.map { ModelInput(image: $0) }).map(\.finalMap) }
            XCTAssertNotEqual(engineWide, f32)
            networks.setInferencePrecision(.bf16)
            XCTAssertEqual(Engine.precision, .f32)
            XCTAssertEqual(model.inspect(probe.map { ModelInput(image: $0) }).map(\.finalMap), engineWide)
            networks.setInferencePrecision(nil)
            XCTAssertEqual(model.inspect(probe.map { ModelInput(image: $0) }).map(\.finalMap), f32)
        }
    }

    private func manifest(for configuration: RSTPMConfiguration) throws -> BundleManifest {
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)) as? [String: Any])
        return try JSONDecoder().decode(BundleManifest.self, from: JSONSerialization.data(withJSONObject: HostileModelTests.craftedManifest(configuration: json)))
    }
}
