import Foundation
import Imaging
import RSTPM
import OperatorErrors
import TestSupport
import XCTest

/// `ModelInput.prepare`, the one way from a file to the networks: decode (a large JPEG through
/// libjpeg's scaled IDCT), resize, normalise.
final class ModelInputTests: XCTestCase {
    static let corpus = TestPaths.fixtures.appendingPathComponent("images")
    static let (width, height) = (64, 48)

    /// What every caller computed before `prepare`, written out: the float decode (DCT-scaled
    /// towards the input size), the antialiased resize, CHW planes, `(v - mean) / std`.
    static func reference(_ url: URL) throws -> [Float] {
        let decoded = try ImageDecoder.decode(contentsOf: url, targetSize: ImageSize(width: width, height: height))
        let resized = Resize.bilinear(decoded, width: width, height: height, antialias: true)
        let plane = width * height
        var values = [Float](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            for c in 0..<3 { values[c * plane + i] = (resized.pixels[3 * i + c] - ModelInput.mean[c]) * (1 / ModelInput.std[c]) }
        }
        return values
    }

    /// The corpus (every PNG/JPEG layout and orientation) and a JPEG large enough to be
    /// decoded at 1/4 scale.
    func files() throws -> [URL] {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path)
            .filter { ($0.hasSuffix(".png") || $0.hasSuffix(".jpg")) && !$0.hasPrefix("huge_declared") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 50, "the corpus lost variants")
        let large = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-model-input-\(UUID().uuidString).jpg")
        let (w, h) = (4 * Self.width + 7, 4 * Self.height + 3)
        let pixels = (0..<(w * h * 3)).map { i -> Float in
            let (x, y, c) = ((i / 3) % w, (i / 3) / w, i % 3)
            return Float((x * (c + 1) + 3 * y + (x * y) % 17) % 256) / 255
        }
        try JPEGEncoder.encode(RGBImage(width: w, height: h, pixels: pixels), quality: 90).write(to: large)
        addTeardownBlock { try? FileManager.default.removeItem(at: large) }
        return names.map { Self.corpus.appendingPathComponent($0) } + [large]
    }

    func testPrepareGivesTheReferenceInputBitForBit() throws {
        for url in try files() {
            let input = try ModelInput.prepare(Data(contentsOf: url), name: url.path, width: Self.width, height: Self.height)
            XCTAssertEqual(input.values, try Self.reference(url), url.lastPathComponent)
            let full = try ImageDecoder.decode(contentsOf: url)
            XCTAssertEqual(input.imageSize, ImageSize(width: full.width, height: full.height), url.lastPathComponent)
        }
    }

    /// The large JPEG really is decoded scaled: a full-size decode would give another input.
    func testALargeJPEGIsDecodedScaled() throws {
        let large = try XCTUnwrap(try files().last)
        let input = try ModelInput.prepare(Data(contentsOf: large), name: large.path, width: Self.width, height: Self.height)
        let full = try ImageDecoder.decode(contentsOf: large)
        let fullSizeInput = ModelInput(image: PlanarImage(Resize.bilinear(full, width: Self.width, height: Self.height)))
        XCTAssertNotEqual(input.values, fullSizeInput.values)
        XCTAssertEqual(input.imageSize, ImageSize(width: full.width, height: full.height))
    }

    /// Training keeps no original, so it decodes once, scaled by the codec; it must see what
    /// `prepare` gives rstpmd, also at the edges of the codec's rule (2t - 1 and 2t - 2 wide).
    func testTrainingDecodesOnceToTheSameInput() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-training-decode-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        for (index, (w, h)) in [(4 * Self.width + 7, 4 * Self.height + 3), (2 * Self.width - 1, 2 * Self.height - 1),
                                (2 * Self.width - 2, 2 * Self.height + 5)].enumerated() {
            let pixels = (0..<(w * h * 3)).map { i -> Float in Float(((i / 3) % w * (i % 3 + 1) + 5 * ((i / 3) / w)) % 256) / 255 }
            try JPEGEncoder.encode(RGBImage(width: w, height: h, pixels: pixels), quality: 90)
                .write(to: folder.appendingPathComponent("\(index).jpg"))
        }
        let training = try TrainingImages.load(from: folder, width: Self.width, height: Self.height)
        XCTAssertEqual(training.files.count, 3)
        for (file, image) in zip(training.files, training.images) {
            let prepared = try ModelInput.prepare(Data(contentsOf: file), name: file.path, width: Self.width, height: Self.height)
            XCTAssertTrue(ModelInput(image: image).values == prepared.values, "\(file.lastPathComponent): training and prepare see different inputs")
        }
    }

    func testPrepareReportsTheFileItCannotDecode() {
        XCTAssertThrowsError(try ModelInput.prepare([UInt8]("not an image".utf8), name: "note.png", width: 8, height: 8)) { error in
            XCTAssertEqual((error as? OperatorError)?.path, "note.png", "\(error)")
        }
    }

    func testBatchStacksInputsInOrder() {
        let a = ModelInput(image: PlanarImage(width: 2, height: 1, repeating: 0.25)), b = ModelInput(image: PlanarImage(width: 2, height: 1, repeating: 0.75))
        let batch = ModelInput.batch([a, b])
        XCTAssertEqual(batch.shape, [2, 3, 1, 2])
        XCTAssertEqual(batch.scalars, a.values + b.values)
        XCTAssertEqual(a.values[0], (0.25 - ModelInput.mean[0]) / ModelInput.std[0], accuracy: 1e-6)
        XCTAssertEqual(a.values[5], (0.25 - ModelInput.mean[2]) / ModelInput.std[2], accuracy: 1e-6)
    }
}
