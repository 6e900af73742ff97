import Foundation
import Imaging
import OperatorErrors
import TestSupport
import XCTest

final class ImagingTests: XCTestCase {
    static let corpus = TestPaths.fixtures.appendingPathComponent("images")

    func file(_ name: String) -> URL { Self.corpus.appendingPathComponent(name) }

    func data(_ name: String) throws -> Data { try Data(contentsOf: file(name)) }

    /// Every corpus file decodes to PIL's pixels: exactly for PNG, within 1 level for JPEG.
    func testCorpusMatchesPIL() throws {
        let fixture = try TensorFixture(named: "images/reference.tensors")
        let images = try XCTUnwrap(fixture.meta["images"] as? [String: [String: Any]])
        XCTAssertGreaterThanOrEqual(images.count, 56, "the corpus lost variants")
        var worst: [String: Float] = [:]
        for (key, info) in images.sorted(by: { $0.key < $1.key }) {
            let name = try XCTUnwrap(info["file"] as? String)
            let maxval = Float(try XCTUnwrap(info["maxval"] as? Int))
            let tolerance = Float(try XCTUnwrap(info["tolerance"] as? Int))
            let target = key.hasSuffix("@40x30") ? ImageSize(width: 40, height: 30) : nil
            let image = try ImageDecoder.decode(contentsOf: file(name), targetSize: target)
            let expected = fixture[key]
            XCTAssertEqual([image.height, image.width, 3], expected.shape, key)
            guard [image.height, image.width, 3] == expected.shape else { continue }
            var difference: Float = 0
            for i in 0..<expected.values.count {
                difference = max(difference, abs(image.pixels[i] * maxval - expected.values[i]))
            }
            worst[key] = difference
            // PNG: 0.5 absorbs float rounding of v / maxval only; any wrong level fails.
            XCTAssertLessThanOrEqual(difference, tolerance + 0.5, "\(key) differs from PIL by \(difference) levels")
        }
        let pngs = worst.filter { $0.key.hasSuffix(".png") }.values.max() ?? -1
        let jpegs = worst.filter { !$0.key.hasSuffix(".png") }.values.max() ?? -1
        print("corpus: \(worst.count) variants; max |difference| PNG \(pngs) levels, JPEG \(jpegs) levels")
    }

    func testScaledJPEGDecodesFullSizeWithoutTarget() throws {
        let full = try ImageDecoder.decode(contentsOf: file("scaled.jpg"))
        XCTAssertEqual(ImageSize(width: full.width, height: full.height), ImageSize(width: 160, height: 120))
        let half = try ImageDecoder.decode(contentsOf: file("scaled.jpg"), targetSize: ImageSize(width: 41, height: 30))
        XCTAssertEqual(ImageSize(width: half.width, height: half.height), ImageSize(width: 80, height: 60),
                       "1/4 would give 40 < 41 columns, so 1/2 is the smallest allowed scale")
    }

    func testMaskDecodesToBytes() throws {
        let fixture = try TensorFixture(named: "images/reference.tensors")
        let mask = try ImageDecoder.decodeMask(contentsOf: file("gray1.png"))
        let expected = fixture["gray1.png"]
        XCTAssertEqual(mask.pixels.count, expected.values.count / 3)
        for i in 0..<mask.pixels.count { XCTAssertEqual(Float(mask.pixels[i]), expected.values[3 * i]) }
        XCTAssertEqual(Set(mask.pixels), [0, 255])
    }

    func testErrorsAreTypedAndNameTheFile() throws {
        func kind(_ bytes: Data, limits: ImageLimits = .default, _ name: String = "inbox/x") -> OperatorError.Kind? {
            do {
                _ = try ImageDecoder.decode(data: bytes, name: name, limits: limits)
                return nil
            } catch let error as OperatorError {
                XCTAssertEqual(error.path, name)
                XCTAssertTrue(error.description.contains(name), error.description)
                XCTAssertFalse(error.problem.hasSuffix("the codec gave no reason"), error.problem)
                return error.kind
            } catch {
                XCTFail("untyped error \(error)")
                return nil
            }
        }
        let png = try data("rgb8.png"), jpeg = try data("progressive.jpg")
        XCTAssertEqual(kind(Data()), .empty)
        XCTAssertEqual(kind(Data("GIF89a....".utf8)), .unsupported)
        XCTAssertEqual(kind(png.prefix(png.count / 2)), .truncated)
        XCTAssertEqual(kind(png.prefix(5)), .truncated)
        XCTAssertEqual(kind(png.dropLast(12)), .truncated, "cut off right before IEND")
        XCTAssertEqual(kind(jpeg.prefix(jpeg.count / 2)), .truncated)
        XCTAssertEqual(kind(jpeg.prefix(100)), .truncated)
        XCTAssertEqual(kind(try data("huge_declared.png")), .imageTooLarge(width: 20000, height: 20000))
        XCTAssertEqual(kind(try data("huge_declared.jpg")), .imageTooLarge(width: 20000, height: 20000))
        XCTAssertEqual(kind(png, limits: ImageLimits(maxPixels: 1000)), .imageTooLarge(width: 37, height: 29))
        var flipped = png
        flipped[flipped.count / 2] ^= 0x10
        XCTAssertEqual(kind(flipped), .malformed, "a flipped IDAT bit fails its CRC")
        var badHeader = png
        badHeader[12] = UInt8(ascii: "X")  // IHDR -> XHDR
        XCTAssertEqual(kind(badHeader), .malformed)
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: file("missing.png"))) { error in
            XCTAssertEqual((error as? OperatorError)?.kind, .unreadable)
        }
    }

    /// Resize matches PIL's float bilinear resize (antialiased down, plain up).
    func testResizeMatchesPILFloat() throws {
        let fixture = try TensorFixture(named: "images/reference.tensors")
        let source = fixture["resize_source"]
        let image = RGBImage(width: source.shape[1], height: source.shape[0], pixels: source.values)
        for (width, height) in [(16, 11), (80, 50), (37, 7)] {
            let expected = fixture["resize_\(width)x\(height)"]
            let resized = Resize.bilinear(image, width: width, height: height)
            let difference = zip(resized.pixels, expected.values).map { abs($0 - $1) }.max() ?? 1
            XCTAssertLessThan(difference, 1e-5, "\(width)x\(height)")
        }
    }

    func testResizeWithoutAntialiasHalvingAveragesPairs() {
        let pixels = (0..<(4 * 2 * 3)).map { Float($0) }
        let image = RGBImage(width: 4, height: 2, pixels: pixels)
        let half = Resize.bilinear(image, width: 2, height: 1, antialias: false)
        // Output (0, 0) red = mean of red at (0,0), (1,0), (0,1), (1,1) = (0 + 3 + 12 + 15) / 4.
        XCTAssertEqual(half.pixels[0], 7.5, accuracy: 1e-6)
        let antialiased = Resize.bilinear(image, width: 2, height: 1, antialias: true)
        XCTAssertNotEqual(antialiased.pixels[0], 7.5, "antialiasing widens the filter to 4 columns")
    }

    /// The daemon resizes 8-bit files from their bytes; that must equal resizing the float
    /// decode bit for bit (the model's input stays what training saw), for every layout,
    /// orientation and size change.
    func testCompactDecodeResizesLikeTheFloatDecode() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path)
            .filter { ($0.hasSuffix(".png") || $0.hasSuffix(".jpg")) && !$0.hasPrefix("huge_declared") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 50, "the corpus lost variants")
        for name in names {
            let bytes = try data(name)
            let float = try ImageDecoder.decode(data: bytes, name: name)
            let compact = try ImageDecoder.decodeCompact(data: bytes, name: name)
            switch compact {
            case .bytes(let image):
                XCTAssertFalse(name.contains("16"), "\(name): a 16-bit file must keep its precision")
                XCTAssertEqual(image.floats(), float, name)
            case .floats(let image):
                XCTAssertTrue(name.contains("16"), "\(name): an 8-bit file decoded to floats")
                XCTAssertEqual(image, float, name)
            }
            let w = float.width, h = float.height
            for (toWidth, toHeight) in [(max(w / 3, 1), max(h / 2, 1)), (w, max(h / 3, 1)), (max(w / 2, 1), h), (w, h), (2 * w + 1, 3 * h)] {
                XCTAssertEqual(compact.resized(width: toWidth, height: toHeight),
                               Resize.bilinear(float, width: toWidth, height: toHeight), "\(name) to \(toWidth)x\(toHeight)")
            }
        }
    }

    func testGrayIsReplicatedToRGB() throws {
        let image = try ImageDecoder.decode(contentsOf: file("gray.jpg"))
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            XCTAssertEqual(image.pixels[i], image.pixels[i + 1])
            XCTAssertEqual(image.pixels[i], image.pixels[i + 2])
        }
    }

    func testEncodersRoundTrip() throws {
        let original = try ImageDecoder.decode(contentsOf: file("rgb8.png"))
        let png = try PNGEncoder.encode(original, text: ["Comment": "rstpm test"])
        XCTAssertEqual(try ImageDecoder.decode(data: png, name: "roundtrip.png"), original)
        XCTAssertNotNil(png.range(of: Data("tEXtComment\0rstpm test".utf8)))
        let fastPNG = try PNGEncoder.encode(original, compression: .fast)
        XCTAssertEqual(try ImageDecoder.decode(data: fastPNG, name: "fast.png"), original, "fast compression must stay lossless")

        let levels: [UInt16] = (0..<(7 * 5)).map { UInt16($0 * 1871) }
        let gray16 = try PNGEncoder.encode(gray16: levels, width: 7, height: 5)
        let decoded16 = try ImageDecoder.decode(data: gray16, name: "gray16.png")
        for i in 0..<levels.count { XCTAssertEqual(decoded16.pixels[3 * i] * 65535, Float(levels[i]), accuracy: 0.01) }

        let mask: [UInt8] = (0..<(9 * 4)).map { $0 % 3 == 0 ? 255 : 0 }
        let gray8 = try PNGEncoder.encode(gray: mask, width: 9, height: 4)
        XCTAssertEqual(try ImageDecoder.decodeMask(data: gray8, name: "mask.png").pixels, mask)

        let photo = try ImageDecoder.decode(contentsOf: file("baseline444.jpg"))
        for progressive in [false, true] {
            let jpeg = try JPEGEncoder.encode(photo, quality: 98, progressive: progressive)
            let again = try ImageDecoder.decode(data: jpeg, name: "roundtrip.jpg")
            let meanError = zip(again.pixels, photo.pixels).map { abs($0 - $1) }.reduce(0, +) / Float(photo.pixels.count)
            XCTAssertLessThan(meanError * 255, 2, "progressive \(progressive)")
        }
        let grayJPEG = try JPEGEncoder.encode(gray: [UInt8](repeating: 77, count: 64), width: 8, height: 8)
        XCTAssertEqual(try ImageDecoder.decodeMask(data: grayJPEG, name: "gray.jpg").pixels, [UInt8](repeating: 77, count: 64))
    }

    func testHeatmapColoursOutlinesAndRaw16() throws {
        let width = 64, height = 48
        let image = RGBImage(width: width, height: height, pixels: [Float](repeating: 0.5, count: width * height * 3))
        // 16x12 map: a 4x4 hot square in the middle.
        var map = [Float](repeating: 0, count: 16 * 12)
        for y in 4..<8 { for x in 6..<10 { map[y * 16 + x] = 1 } }
        let rendered = Heatmap.render(map: map, mapWidth: 16, mapHeight: 12, over: image, threshold: 0.5, scale: 0...1)
        XCTAssertEqual(ImageSize(width: rendered.width, height: rendered.height), ImageSize(width: width, height: height))
        func pixel(_ x: Int, _ y: Int) -> [Float] { Array(rendered.pixels[(y * width + x) * 3..<(y * width + x) * 3 + 3]) }
        let cold = pixel(2, 2), hot = pixel(32, 24)
        XCTAssertLessThan(cold.reduce(0, +), 1.5, "low scores darken the image (turbo starts dark blue)")
        XCTAssertGreaterThan(hot[0], hot[2], "high scores are red")
        XCTAssertEqual(pixel(32, 24), pixel(33, 23), "the inside of the region is not outlined")
        // Crossing the region horizontally at its middle row meets the outline twice.
        let whites = (0..<width).filter { pixel($0, 24) == [1, 1, 1] }
        XCTAssertFalse(whites.isEmpty)
        XCTAssertTrue(whites.allSatisfy { (20...44).contains($0) }, "outline at \(whites)")
        XCTAssertTrue(whites.contains { $0 < 32 } && whites.contains { $0 > 32 })
        let plain = Heatmap.render(map: map, mapWidth: 16, mapHeight: 12, over: image, threshold: nil, scale: 0...1)
        XCTAssertFalse(plain.pixels.enumerated().contains { $0.offset % 3 == 2 && plain.pixels[$0.offset - 2] == 1 && $0.element == 1 })
        // A degenerate scale (threshold 0, as a line's override may set): scores at its bottom
        // take the first colour, scores above it the last.
        let flat = Heatmap.render8(map: map, mapWidth: 16, mapHeight: 12, over: image, threshold: 0,
                                   scale: 0...Float.leastNormalMagnitude)
        let low = Heatmap.render8(map: [Float](repeating: 0, count: 16 * 12), mapWidth: 16, mapHeight: 12, over: image,
                                  threshold: nil, scale: 0...1)
        XCTAssertEqual(Array(flat[0..<3]), Array(low[0..<3]))
        XCTAssertGreaterThan(flat[(24 * width + 32) * 3], flat[(24 * width + 32) * 3 + 2], "above the scale is red")

        let scores: [Float] = [0, 0.25, 3, -1, 2, 1.5]
        let raw = try Heatmap.raw16(map: scores, mapWidth: 3, mapHeight: 2, scale: 0...2)
        XCTAssertNotNil(raw.range(of: Data("tEXtrstpm.scale.max\u{0}2.0".utf8)))
        let back = try ImageDecoder.decode(data: raw, name: "raw16.png")
        let restored = stride(from: 0, to: back.pixels.count, by: 3).map { back.pixels[$0] * 2 }
        for (value, expected) in zip(restored, [0, 0.25, 2, 0, 2, 1.5] as [Float]) { XCTAssertEqual(value, expected, accuracy: 2.0 / 65535) }
    }

    func testTurboRunsBlueGreenRed() {
        let (r0, g0, b0) = Heatmap.turbo(0.15), (r1, g1, b1) = Heatmap.turbo(0.5), (r2, g2, b2) = Heatmap.turbo(0.95)
        XCTAssertTrue(b0 > r0 && b0 > g0, "0.15 is blue")
        XCTAssertTrue(g1 > r1 && g1 > b1, "0.5 is green")
        XCTAssertTrue(r2 > g2 && r2 > b2, "0.95 is red")
    }

    func testConcurrentDecodesAgree() throws {
        let names = ["rgba16_interlaced.png", "progressive.jpg", "ycck_adobe.jpg", "palette4_trns.png"]
        let expected = try names.map { try ImageDecoder.decode(contentsOf: file($0)) }
        let results = UnsafeMutableBufferPointer<RGBImage?>.allocate(capacity: 32)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            results[i] = try? ImageDecoder.decode(contentsOf: file(names[i % names.count]))
        }
        for i in 0..<32 { XCTAssertEqual(results[i], expected[i % names.count]) }
    }
}
