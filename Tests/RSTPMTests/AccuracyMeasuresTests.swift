import Foundation
import SeededRandom
import RSTPM
import TensorEngine
import XCTest

/// The choices that made the default more accurate (docs/accuracy.md): denoising students,
/// pseudo-anomalies cut from the product's own images, grey anomalies on grey products, the
/// smoothed S-T map, and stored configurations that keep meaning what they meant.
final class AccuracyMeasuresTests: XCTestCase {
    // MARK: denoising students

    /// A denoising step compares the students' features of the input with the teachers' features
    /// of the clean image: with clean == input it is the paper's step, with another clean image
    /// its loss (taken before the step) differs.
    func testDenoisingStepMatchesTheStudentsAgainstTheCleanImagesFeatures() {
        let configuration = TinySetup.configuration()
        let images = TinySetup.images(count: 4, seed: 21)
        let clean = ModelInput.batch(images[0..<2].map { ModelInput(image: $0) })
        let altered = ModelInput.batch(images[2..<4].map { ModelInput(image: $0) })
        func firstLoss(input: Tensor, clean: Tensor?) -> Float {
            let networks = RSTPMNetworks(configuration: configuration, teachers: TinySetup.teachers())
            let optimizer = SGD(parameters: networks.student1Parameters + networks.student2Parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 0)
            return networks.studentTrainingStep(input: input, clean: clean, optimizers: [optimizer])
        }
        XCTAssertEqual(firstLoss(input: clean, clean: clean), firstLoss(input: clean, clean: nil))
        XCTAssertNotEqual(firstLoss(input: altered, clean: clean), firstLoss(input: altered, clean: nil))
    }

    // MARK: anomaly sources

    func testProductImageSourceGivesFlippedAndShiftedCopiesOfTheProduct() throws {
        var image = PlanarImage(width: 4, height: 2, repeating: 0)
        for c in 0..<3 { for y in 0..<2 { for x in 0..<4 { image[c, y, x] = Float(c * 100 + y * 10 + x) } } }
        let source = ProductImageSource(images: [image, PlanarImage(width: 4, height: 2, repeating: 1)])
        XCTAssertEqual(source.count, 8)
        let mirrored = try source.texture(at: 0, width: 4, height: 2)
        let flipped = try source.texture(at: 1, width: 4, height: 2)
        let shifted = try source.texture(at: 2, width: 4, height: 2)
        let rotated = try source.texture(at: 3, width: 4, height: 2)
        XCTAssertEqual(mirrored[1, 0, 0], image[1, 0, 3])
        XCTAssertEqual(flipped[2, 0, 1], image[2, 1, 1])
        XCTAssertEqual(shifted[0, 0, 0], image[0, 1, 2])
        XCTAssertEqual(rotated[0, 1, 3], image[0, 0, 0])
        XCTAssertEqual(try source.texture(at: 5, width: 4, height: 2).values, [Float](repeating: 1, count: 24))
    }

    func testInterleavedSourceDrawsHalfFromEach() throws {
        let first = ProductImageSource(images: [PlanarImage(width: 2, height: 2, repeating: 0)])  // 4 textures
        let second = ProductImageSource(images: (1...3).map { PlanarImage(width: 2, height: 2, repeating: Float($0)) })  // 12 textures
        let source = InterleavedTextureSource(first, second)
        XCTAssertEqual(source.count, 24)
        let values = try (0..<source.count).map { try source.texture(at: $0, width: 2, height: 2).values[0] }
        XCTAssertEqual(values.enumerated().filter { $0.offset % 2 == 0 }.map(\.element), [Float](repeating: 0, count: 12))
        XCTAssertEqual(Set(values.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)), [1, 2, 3])
    }

    /// Grey products get grey pseudo-anomalies; colour products keep the textures' colours.
    func testGreyProductsGetGreyAnomalies() throws {
        var generator = PseudoAnomalyGenerator(source: ProceduralTextureSource(count: 8, seed: 2))
        generator.normalProbability = 0
        generator.opacityRange = 0.8...0.8
        var grey = PlanarImage(width: 48, height: 48, repeating: 0)
        for y in 0..<48 { for x in 0..<48 { for c in 0..<3 { grey[c, y, x] = Float(x + y) / 96 } } }
        XCTAssertTrue(PseudoAnomalyGenerator.isGrey(grey))
        let colour = pseudoAnomalyTestImage(width: 48, height: 48)
        XCTAssertFalse(PseudoAnomalyGenerator.isGrey(colour))
        var random = SplitMix64(state: 9)
        var colouredAnomalies = 0, greyAnomalies = 0
        for _ in 0..<8 {
            let onGrey = try generator.sample(from: grey, using: &random)
            if onGrey.hasAnomaly { greyAnomalies += 1 }
            XCTAssertTrue(PseudoAnomalyGenerator.isGrey(onGrey.image), "a grey product got a coloured anomaly")
            let onColour = try generator.sample(from: colour, using: &random)
            let plane = 48 * 48
            // Inside the mask the colour image takes the texture's colour: its channel differences change.
            let changed = (0..<plane).filter { onColour.mask[$0] == 1 }.contains { p in
                let before = colour.values[p] - colour.values[plane + p], after = onColour.image.values[p] - onColour.image.values[plane + p]
                return abs(before - after) > 0.05
            }
            if changed { colouredAnomalies += 1 }
        }
        XCTAssertGreaterThan(greyAnomalies, 0)
        XCTAssertGreaterThan(colouredAnomalies, 0, "colour products lost their coloured anomalies")
    }

    // MARK: smoothing

    /// An impulse becomes the normalised Gaussian (taps to 4 sigma, as scipy.ndimage's
    /// gaussian_filter with truncate 4); a constant plane stays constant (reflected borders).
    func testGaussianSmoothingIsScipysGaussianFilter() {
        let (H, W) = (41, 45)
        var impulse = [Float](repeating: 0, count: H * W)
        impulse[20 * W + 22] = 1
        let sigma: Float = 4
        let smoothed = MapFusion.gaussianSmoothed(impulse, height: H, width: W, sigma: sigma)
        let norm = (-16...16).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }.reduce(0, +)
        for (dy, dx) in [(0, 0), (3, -5), (-16, 16), (10, 1)] {
            let expected = exp(-Float(dy * dy) / (2 * sigma * sigma)) * exp(-Float(dx * dx) / (2 * sigma * sigma)) / (norm * norm)
            XCTAssertEqual(smoothed[(20 + dy) * W + 22 + dx], expected, accuracy: 1e-7)
        }
        XCTAssertEqual(smoothed[(20 + 17) * W + 22], 0, "taps end at 4 sigma")
        XCTAssertEqual(smoothed.reduce(0, +), 1, accuracy: 1e-5)
        let constant = MapFusion.gaussianSmoothed([Float](repeating: 0.25, count: H * W), height: H, width: W, sigma: sigma)
        for value in constant { XCTAssertEqual(value, 0.25, accuracy: 1e-6) }
        XCTAssertEqual(MapFusion.gaussianSmoothed(impulse, height: H, width: W, sigma: 0), impulse)
    }

    /// Eq. 1 with the smoothed S-T map: final = smoothed(A64 * A32 * A16) * Omega7.
    func testModelSmoothsTheStudentTeacherMapBeforeEq1() throws {
        var configuration = TinySetup.configuration()
        configuration.studentTeacherSmoothing = 2
        let networks = RSTPMNetworks(configuration: configuration, teachers: TinySetup.teachers())
        var rough = configuration
        rough.studentTeacherSmoothing = 0
        let roughNetworks = RSTPMNetworks(configuration: rough, teachers: TinySetup.teachers())
        let manifest = try JSONDecoder().decode(BundleManifest.self, from: TinyManifest.json(configuration: configuration))
        let roughManifest = try JSONDecoder().decode(BundleManifest.self, from: TinyManifest.json(configuration: rough))
        let probe = TinySetup.images(count: 1, seed: 4)
        let smooth = RSTPMModel(manifest: manifest, networks: networks).inspect(probe.map { ModelInput(image: $0) })[0]
        let plain = RSTPMModel(manifest: roughManifest, networks: roughNetworks).inspect(probe.map { ModelInput(image: $0) })[0]
        XCTAssertEqual(smooth.discriminatorMap, plain.discriminatorMap)
        let expected = MapFusion.gaussianSmoothed(plain.studentTeacherMap, height: 64, width: 64, sigma: 2)
        for i in stride(from: 0, to: expected.count, by: 37) {
            XCTAssertEqual(smooth.studentTeacherMap[i], expected[i], accuracy: 1e-5 * max(1, expected[i]))
            XCTAssertEqual(smooth.finalMap[i], smooth.studentTeacherMap[i] * smooth.discriminatorMap[i], accuracy: 1e-6 * max(1, smooth.finalMap[i]))
        }
    }

    // MARK: stored configurations

    /// A manifest written before these choices existed decodes to the model it was: paper
    /// students, texture anomalies, no smoothing; a new one round-trips.
    func testStoredConfigurationsKeepTheirMeaning() throws {
        var fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(RSTPMConfiguration())) as! [String: Any]
        for key in ["denoisingStudents", "productImageAnomalies", "studentTeacherSmoothing"] { fields.removeValue(forKey: key) }
        let legacy = try JSONDecoder().decode(RSTPMConfiguration.self, from: JSONSerialization.data(withJSONObject: fields))
        XCTAssertFalse(legacy.denoisingStudents)
        XCTAssertFalse(legacy.productImageAnomalies)
        XCTAssertEqual(legacy.studentTeacherSmoothing, 0)
        var current = RSTPMConfiguration()
        current.attention = "+-"
        current.seed = 42
        XCTAssertEqual(try JSONDecoder().decode(RSTPMConfiguration.self, from: JSONEncoder().encode(current)), current)
        XCTAssertTrue(RSTPMConfiguration().denoisingStudents)
        current.studentTeacherSmoothing = -1
        XCTAssertFalse(current.problems().isEmpty)
    }
}

/// A manifest for networks built in memory (the trainer writes real ones).
enum TinyManifest {
    static func json(configuration: RSTPMConfiguration) throws -> Data {
        let fields: [String: Any] = [
            "formatVersion": BundleManifest.currentFormatVersion, "modelID": "tiny", "createdAt": "2026-01-01T00:00:00Z",
            "configuration": try JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)),
            "teachers": TinySetup.teachers().records.map { ["role": $0.role, "kind": $0.kind, "checkpointFile": $0.checkpointFile, "checkpointSHA256": $0.checkpointSHA256] },
            "inputWidth": configuration.inputWidth, "inputHeight": configuration.inputHeight,
            "normalization": ["mean": ModelInput.mean, "std": ModelInput.std],
            "threshold": ["value": 1, "rule": "max-times-margin", "statement": "test"],
            "training": ["imageCount": 0, "trainingCount": 0, "validationCount": 0, "folder": "", "fileListSHA256": "",
                         "studentEpochs": 0, "discriminatorEpochs": 0, "seconds": 0],
            "validation": ["studentLoss": 0, "studentBestEpoch": 0, "discriminatorLoss": 0, "discriminatorBestEpoch": 0, "scoreMax": 0, "scoreMean": 0],
            "weightsSHA256": "", "tensors": [String: [Int]](),
        ]
        return try JSONSerialization.data(withJSONObject: fields)
    }
}
