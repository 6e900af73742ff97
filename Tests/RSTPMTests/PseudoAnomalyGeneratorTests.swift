import Foundation
import RSTPM
import TestSupport
import XCTest

/// A smooth synthetic "normal" image with some structure.
func pseudoAnomalyTestImage(width: Int, height: Int) -> PlanarImage {
    var image = PlanarImage(width: width, height: height, repeating: 0)
    for y in 0..<height {
        for x in 0..<width {
            let u = Float(x) / Float(width), v = Float(y) / Float(height)
            image[0, y, x] = 0.2 + 0.6 * u
            image[1, y, x] = 0.5 + 0.3 * sin(6 * u + 4 * v)
            image[2, y, x] = 0.3 + 0.4 * v
        }
    }
    return image
}

final class PseudoAnomalyGeneratorTests: XCTestCase {
    private let generator = PseudoAnomalyGenerator(source: ProceduralTextureSource())

    func testSameSeedSameSampleDifferentSeedDifferentSample() throws {
        let image = pseudoAnomalyTestImage(width: 64, height: 96)
        func samples(seed: UInt64) throws -> [PseudoAnomalySample] {
            var random = SplitMix64(state: seed)
            return try (0..<8).map { _ in try generator.sample(from: image, using: &random) }
        }
        let first = try samples(seed: 42), again = try samples(seed: 42), other = try samples(seed: 43)
        XCTAssertEqual(first.map(\.image), again.map(\.image))
        XCTAssertEqual(first.map(\.mask), again.map(\.mask))
        XCTAssertEqual(first.map(\.augmentations), again.map(\.augmentations))
        XCTAssertNotEqual(first.map(\.image), other.map(\.image))
        XCTAssertNotEqual(first.map(\.mask), other.map(\.mask))
    }

    func testImageChangesExactlyInsideTheMask() throws {
        let width = 64, height = 64
        let image = pseudoAnomalyTestImage(width: width, height: height)
        let plane = width * height
        var random = SplitMix64(state: 7)
        var anomalous = 0, normal = 0, changedInside = 0
        for _ in 0..<60 {
            let sample = try generator.sample(from: image, using: &random)
            XCTAssertEqual(sample.mask.count, plane)
            XCTAssertTrue(sample.mask.allSatisfy { $0 == 0 || $0 == 1 })
            XCTAssertEqual(sample.hasAnomaly, sample.mask.contains(1))
            if sample.sourceIndex == nil { normal += 1 } else { anomalous += 1 }
            XCTAssertTrue((0...0.8).contains(sample.opacity))
            for p in 0..<plane {
                for c in 0..<3 {
                    let before = image.values[c * plane + p], after = sample.image.values[c * plane + p]
                    if sample.mask[p] == 0 {
                        XCTAssertEqual(before.bitPattern, after.bitPattern, "pixel \(p) outside the mask changed")
                    } else if sample.opacity > 1e-3 && after == before {
                        // Unchanged inside the mask only where the source equals the image there.
                        let source = (after - (1 - sample.opacity) * before) / sample.opacity
                        XCTAssertEqual(source, before, accuracy: 2e-3, "pixel \(p) inside the mask did not change")
                    } else if after != before {
                        changedInside += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(normal, 15)
        XCTAssertGreaterThan(anomalous, 15)
        XCTAssertGreaterThan(changedInside, 1000)
    }

    func testCompositeFollowsEquationTwo() {
        let image = PlanarImage(width: 2, height: 1, values: [0.2, 0.4, 0.6, 0.8, 0.1, 0.3])
        let source = PlanarImage(width: 2, height: 1, values: [1, 1, 0, 0, 0.5, 0.5])
        let out = PseudoAnomalyGenerator.composite(image: image, source: source, mask: [0, 1], opacity: 0.25)
        let expected: [Float] = [0.2, 0.75 * 0.4 + 0.25, 0.6, 0.75 * 0.8, 0.1, 0.75 * 0.3 + 0.125]
        for (a, e) in zip(out.values, expected) { XCTAssertEqual(a, e, accuracy: 1e-6) }
        XCTAssertEqual(out.values[0].bitPattern, image.values[0].bitPattern)
    }

    func testSampleTimeAt256() throws {
        let image = pseudoAnomalyTestImage(width: 256, height: 256)
        var random = SplitMix64(state: 1)
        var anomalousGenerator = generator
        anomalousGenerator.normalProbability = 0
        _ = try anomalousGenerator.sample(from: image, using: &random)
        let count = 20
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<count { _ = try anomalousGenerator.sample(from: image, using: &random) }
        let milliseconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(count)
        print("pseudo-anomaly: \(String(format: "%.2f", milliseconds)) ms per anomalous 256x256 sample (procedural textures)")
        func time(_ label: String, _ body: () throws -> Void) rethrows {
            let begin = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<count { try body() }
            print("  \(label): \(String(format: "%.2f", Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e6 / Double(count))) ms")
        }
        let source = ProceduralTextureSource()
        try time("procedural texture (5 kinds in turn)") { _ = try source.texture(at: Int(random.next() % 500), width: 256, height: 256) }
        let texture = try source.texture(at: 0, width: 256, height: 256)
        time("3 augmentations") {
            var bytes = texture.bytes
            for augmentation in TextureAugmentation.randomSequence(count: 3, using: &random) {
                augmentation.apply(toPlanarBytes: &bytes, width: 256, height: 256)
            }
        }
        time("Perlin mask") { _ = PerlinNoise.mask(width: 256, height: 256, using: &random) }
        // Generous bound for a loaded 2-core machine; the target is a few ms.
        XCTAssertLessThan(milliseconds, 100)
    }

    /// With RSTPM_DUMP=1: a sheet of samples (rows: input, sample, mask) to /work/out/pseudo_samples.ppm.
    /// RSTPM_DUMP_IMAGE may name a raw file of 256x256 planar RGB float32 to use as the normal image.
    func testDumpSampleSheet() throws {
        let environment = ProcessInfo.processInfo.environment
        guard environment["RSTPM_DUMP"] == "1" else { throw XCTSkip("set RSTPM_DUMP=1 to write the sample sheet") }
        let size = 256
        var image = pseudoAnomalyTestImage(width: size, height: size)
        if let path = environment["RSTPM_DUMP_IMAGE"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            image = PlanarImage(width: size, height: size, values: data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
        }
        var sources: [any TextureSource] = [ProceduralTextureSource()]
        if let patterns = try? GIMPPatternSource(directory: URL(fileURLWithPath: "/usr/share/gimp/2.0/patterns")) {
            sources.append(patterns)
        }
        var random = SplitMix64(state: 2024)
        let columns = 8, rows = 3 * sources.count
        let sheetWidth = columns * size, plane = size * size
        var pixels = [UInt8](repeating: 0, count: sheetWidth * rows * size * 3)
        func put(_ values: [Float], channels: Int, row: Int, column: Int) {
            for y in 0..<size {
                for x in 0..<size {
                    for c in 0..<3 {
                        let v = values[(channels == 3 ? c : 0) * plane + y * size + x]
                        let offset = (((row * size + y) * sheetWidth) + column * size + x) * 3 + c
                        pixels[offset] = UInt8(clamping: Int((v * 255).rounded()))
                    }
                }
            }
        }
        for (s, source) in sources.enumerated() {
            var anomalous = PseudoAnomalyGenerator(source: source)
            anomalous.normalProbability = 0
            for column in 0..<columns {
                let sample = try anomalous.sample(from: image, using: &random)
                put(image.values, channels: 3, row: 3 * s, column: column)
                put(sample.image.values, channels: 3, row: 3 * s + 1, column: column)
                put(sample.mask, channels: 1, row: 3 * s + 2, column: column)
            }
        }
        let directory = URL(fileURLWithPath: "/work/out")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var file = Data("P6\n\(sheetWidth) \(rows * size)\n255\n".utf8)
        file.append(contentsOf: pixels)
        try file.write(to: directory.appendingPathComponent("pseudo_samples.ppm"))
    }
}
