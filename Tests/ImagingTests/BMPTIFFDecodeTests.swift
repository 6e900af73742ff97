import Foundation
import Imaging
import OperatorErrors
import TestSupport
import XCTest

/// BMP and TIFF as industrial cameras and Windows tools write them, through the one decoder
/// entry point, with the hostile-input guarantees of PNG and JPEG.
final class BMPTIFFDecodeTests: XCTestCase {
    let width = 13, height = 7

    /// A pattern that differs in every pixel and channel.
    func pattern(channels: Int, maximum: Int = 255) -> [UInt16] {
        (0..<width * height * channels).map { UInt16(($0 * 37 + $0 / 5 * 11) % (maximum + 1)) }
    }

    func decode(_ bytes: [UInt8], limits: ImageLimits = .default) throws -> RGB8Image {
        guard case let .bytes(image) = try ImageDecoder.decodeCompact(data: bytes, name: "camera/x", limits: limits) else {
            throw XCTSkip("BMP and TIFF must decode to 8 bits")
        }
        return image
    }

    /// The RGB bytes a grey or RGB 8-bit pattern must decode to.
    func rgb(_ values: [UInt16], channels: Int) -> [UInt8] {
        channels == 3 ? values.map { UInt8($0) } : values.flatMap { [UInt8($0), UInt8($0), UInt8($0)] }
    }

    func error(_ bytes: [UInt8], limits: ImageLimits = .default) -> OperatorError? {
        do {
            _ = try ImageDecoder.decode(data: Data(bytes), name: "camera/x", limits: limits)
            return nil
        } catch {
            return error as? OperatorError
        }
    }

    // MARK: BMP

    func testBMPGreyPaletteTrueColourAndBitFields() throws {
        let grey = pattern(channels: 1)
        let greyPalette = (0..<256).map { (UInt8($0), UInt8($0), UInt8($0)) }
        let g8 = BMPBuilder.build(width: width, height: height, bits: 8, palette: greyPalette, indices: grey.map { UInt8($0) })
        XCTAssertEqual(try decode(g8).pixels, rgb(grey, channels: 1), "8-bit grey palette (bottom-up)")
        let colour = pattern(channels: 3)
        let c24 = BMPBuilder.build(width: width, height: height, bits: 24, rgb: colour.map { UInt8($0) }, topDown: true)
        let image = try decode(c24)
        XCTAssertEqual([image.width, image.height], [width, height])
        XCTAssertEqual(image.pixels, rgb(colour, channels: 3), "24-bit BGR, top-down")
        let c32 = BMPBuilder.build(width: width, height: height, bits: 32, rgb: colour.map { UInt8($0) }, masks: (0xff00_0000, 0xff_0000, 0xff00))
        XCTAssertEqual(try decode(c32).pixels, rgb(colour, channels: 3), "32-bit BI_BITFIELDS RGBX")
        // 5-6-5: each channel goes through fewer bits; full and empty channels survive exactly.
        let extremes = colour.map { $0 >= 128 ? UInt8(255) : 0 }
        let c16 = BMPBuilder.build(width: width, height: height, bits: 16, rgb: extremes, masks: (0xf800, 0x07e0, 0x001f))
        XCTAssertEqual(try decode(c16).pixels, extremes, "16-bit 5-6-5")
        // 4-bit with a colour palette: index 2 is red.
        let palette: [(UInt8, UInt8, UInt8)] = [(0, 0, 0), (255, 255, 255), (255, 0, 0)]
        let indices = (0..<width * height).map { UInt8($0 % 3) }
        let p4 = BMPBuilder.build(width: width, height: height, bits: 4, palette: palette, indices: indices)
        XCTAssertEqual(try decode(p4).pixels, indices.flatMap { [palette[Int($0)].0, palette[Int($0)].1, palette[Int($0)].2] })
    }

    func testHostileBMPsAreTypedErrors() throws {
        let colour = pattern(channels: 3).map { UInt8($0) }
        let good = BMPBuilder.build(width: width, height: height, bits: 24, rgb: colour)
        XCTAssertEqual(error(Array(good.prefix(good.count - 5)))?.kind, .truncated)
        XCTAssertEqual(error(Array(good.prefix(30)))?.kind, .truncated)
        XCTAssertEqual(error(Array("BM".utf8))?.kind, .truncated)
        let huge = BMPBuilder.build(width: width, height: height, bits: 24, rgb: colour, declaredWidth: 60000, declaredHeight: 60000)
        let tooLarge = try XCTUnwrap(error(huge))
        XCTAssertEqual(tooLarge.kind, .imageTooLarge(width: 60000, height: 60000))
        XCTAssertEqual(error(BMPBuilder.build(width: width, height: height, bits: 24, rgb: colour, declaredWidth: 0))?.kind, .malformed)
        XCTAssertEqual(error(BMPBuilder.build(width: width, height: height, bits: 24, rgb: colour, declaredHeight: Int32.min))?.kind, .malformed)
        var rle = good
        rle[30] = 1  // BI_RLE8
        XCTAssertEqual(error(rle)?.kind, .unsupported)
        let outOfPalette = BMPBuilder.build(width: width, height: height, bits: 8, palette: [(0, 0, 0), (9, 9, 9)], indices: Array(repeating: 7, count: width * height))
        XCTAssertEqual(error(outOfPalette)?.kind, .malformed)
        let overlapping = BMPBuilder.build(width: width, height: height, bits: 32, rgb: colour, masks: (0xffff_0000, 0x00ff_ff00, 0xff))
        XCTAssertEqual(error(overlapping)?.kind, .malformed)
    }

    // MARK: TIFF

    func testTIFF8BitGreyAndRGBInEveryLayout() throws {
        for channels in [1, 3] {
            let values = pattern(channels: channels)
            var builders: [(String, TIFFBuilder)] = []
            let base = TIFFBuilder(width: width, height: height, samplesPerPixel: channels, bits: 8, photometric: channels == 1 ? 1 : 2, samples: values)
            builders.append(("one strip", base))
            var strips = base; strips.rowsPerStrip = 3
            builders.append(("strips of 3 rows, PackBits", { var b = strips; b.packBits = true; return b }()))
            var tiles = base; tiles.tile = (16, 16)
            builders.append(("16x16 tiles", tiles))
            if channels == 3 {
                var planes = strips; planes.separatePlanes = true
                builders.append(("separate planes", planes))
                var alpha = TIFFBuilder(width: width, height: height, samplesPerPixel: 4, bits: 8, photometric: 2,
                                        samples: (0..<width * height).flatMap { i in values[3 * i..<3 * i + 3] + [UInt16(99)] })
                alpha.extraSamples = [2]
                builders.append(("RGBA, alpha dropped", alpha))
            }
            for (name, builder) in builders {
                XCTAssertEqual(try decode(builder.build()).pixels, rgb(values, channels: channels), "\(channels) channel(s), \(name)")
            }
        }
    }

    /// 16-bit samples scale linearly from 0...MaxSampleValue to 0...255, rounded.
    func testTIFF16BitScalesToEightBits() throws {
        let full = pattern(channels: 3, maximum: 65535).map { $0 &* 97 }
        let rgb16 = TIFFBuilder(width: width, height: height, samplesPerPixel: 3, bits: 16, photometric: 2, samples: full)
        XCTAssertEqual(try decode(rgb16.build()).pixels, full.map { UInt8((UInt32($0) * 255 + 32767) / 65535) })
        // A 12-bit camera that writes MaxSampleValue 4095 uses the whole 8-bit range.
        let twelveBit = pattern(channels: 1, maximum: 4095)
        var grey16 = TIFFBuilder(width: width, height: height, samplesPerPixel: 1, bits: 16, photometric: 1, samples: twelveBit)
        grey16.maxSampleValue = 4095
        grey16.rowsPerStrip = 2
        let expected = twelveBit.map { UInt8((UInt32($0) * 255 + 2047) / 4095) }
        XCTAssertEqual(try decode(grey16.build()).pixels, rgb(expected.map(UInt16.init), channels: 1))
        // MinIsWhite: 0 is white.
        var white = TIFFBuilder(width: width, height: height, samplesPerPixel: 1, bits: 8, photometric: 0, samples: pattern(channels: 1))
        white.orientation = 1
        XCTAssertEqual(try decode(white.build()).pixels, rgb(pattern(channels: 1).map { 255 - $0 }, channels: 1))
    }

    func testTIFFOrientationIsApplied() throws {
        var builder = TIFFBuilder(width: width, height: height, samplesPerPixel: 1, bits: 8, photometric: 1, samples: pattern(channels: 1))
        builder.orientation = 6  // rotate 90 degrees clockwise to display
        let image = try decode(builder.build())
        XCTAssertEqual([image.width, image.height], [height, width])
    }

    func testHostileTIFFsAreTypedErrorsAndPrintNothing() throws {
        let values = pattern(channels: 3)
        let good = TIFFBuilder(width: width, height: height, samplesPerPixel: 3, bits: 8, photometric: 2, samples: values).build()
        var huge = TIFFBuilder(width: width, height: height, samplesPerPixel: 3, bits: 8, photometric: 2, samples: values)
        huge.declaredSize = (200_000, 100_000)
        let tooLarge = try XCTUnwrap(error(huge.build()))
        XCTAssertEqual(tooLarge.kind, .imageTooLarge(width: 200_000, height: 100_000))
        XCTAssertEqual(error(good, limits: ImageLimits(maxPixels: 50))?.kind, .imageTooLarge(width: width, height: height))
        // The pixel data cut short: the strip is read past the end of the file.
        var tiled = TIFFBuilder(width: width, height: height, samplesPerPixel: 3, bits: 8, photometric: 2, samples: values)
        tiled.tile = (16, 16)
        let tiledBytes = tiled.build()
        let stripStart = 8  // the builder puts the pixel data right after the header, the IFD after it
        var cut = Array(good)
        cut.replaceSubrange(stripStart + 20..<stripStart + values.count, with: [])  // IFD offset now points past the end
        for (name, bytes) in [("cut", cut), ("header only", Array(good.prefix(8))), ("4 bytes", Array(good.prefix(4))), ("tiled, cut", Array(tiledBytes.prefix(200)))] {
            let failure = try XCTUnwrap(error(bytes), name)
            XCTAssertTrue([.truncated, .malformed].contains(failure.kind), "\(name): \(failure)")
            XCTAssertFalse(failure.problem.hasSuffix("the codec gave no reason"), name)
        }
        // Strip offsets past the end of the file: the image ends early.
        let ifdOffset = Int(good[4]) | Int(good[5]) << 8
        var pastEnd = good
        let entries = Int(good[ifdOffset]) | Int(good[ifdOffset + 1]) << 8
        for entry in 0..<entries where good[ifdOffset + 2 + 12 * entry] == 17 && good[ifdOffset + 3 + 12 * entry] == 1 {  // tag 273
            pastEnd[ifdOffset + 2 + 12 * entry + 8] = 0xff
            pastEnd[ifdOffset + 2 + 12 * entry + 9] = 0xff
        }
        XCTAssertEqual(error(pastEnd)?.kind, .truncated, "\(String(describing: error(pastEnd)))")
        XCTAssertEqual(error(Array("II*\0".utf8) + [0xff, 0xff, 0xff, 0x7f])?.kind, .truncated)
        XCTAssertEqual(error(Array("MM".utf8) + [1, 2])?.kind, .unsupported)
        // Floating-point samples are not an image we score.
        var float = TIFFBuilder(width: width, height: height, samplesPerPixel: 1, bits: 32, photometric: 1, samples: [])
        float.samples = Array(repeating: 0, count: width * height * 2)
        XCTAssertNotNil(error(float.build()))
    }

    /// libtiff prints nothing to stderr for a broken file (its default handlers would).
    func testLibtiffWritesNothingToStandardError() throws {
        let values = pattern(channels: 1)
        var broken = TIFFBuilder(width: width, height: height, samplesPerPixel: 1, bits: 8, photometric: 1, samples: values).build()
        broken.removeLast(broken.count - 40)
        let captured = try captureStandardError {
            _ = error(broken)
            _ = error(Array("II*\0".utf8) + [8, 0, 0, 0, 0xff, 0xff])
        }
        XCTAssertEqual(captured, "", "libtiff wrote to stderr")
    }

    func testExtensionsListTheFormats() {
        for name in ["a.png", "a.JPG", "a.jpeg", "a.bmp", "a.TIF", "a.tiff"] {
            XCTAssertTrue(ImageDecoder.hasImageExtension(URL(fileURLWithPath: name)), name)
        }
        XCTAssertFalse(ImageDecoder.hasImageExtension(URL(fileURLWithPath: "a.json")))
    }

    /// Runs `body` with file descriptor 2 pointed at a pipe; returns what was written.
    func captureStandardError(_ body: () throws -> Void) throws -> String {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        let saved = dup(2)
        dup2(ends[1], 2)
        close(ends[1])
        defer { dup2(saved, 2); close(saved) }
        try body()
        fflush(stderr)
        dup2(saved, 2)
        let flags = fcntl(ends[0], F_GETFL)
        _ = fcntl(ends[0], F_SETFL, flags | O_NONBLOCK)
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = read(ends[0], &bytes, bytes.count)
        close(ends[0])
        return count > 0 ? String(decoding: bytes.prefix(count), as: UTF8.self) : ""
    }
}
