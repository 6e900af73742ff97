import CImageCodecs
import Foundation
import Imaging
import TestSupport
import XCTest

/// The direct PNG path (libdeflate and SIMD filters) against the pixels a file was built from,
/// and against libpng on the same bytes; and what it leaves to libpng.
final class PNGDirectDecodeTests: XCTestCase {
    struct Decoded: Equatable {
        var status: Int32
        var width = 0, height = 0, channels = 0, orientation = 0
        var pixels: [UInt8] = []
    }

    static func decode(_ file: [UInt8], with decoder: ic_png_decoder) -> Decoded {
        var options = ic_decode_options(max_pixels: 0, target_width: 0, target_height: 0, png_decoder: Int32(decoder.rawValue))
        var image = ic_image()
        var message = [CChar](repeating: 0, count: 256)
        let status = ic_decode_png(file, file.count, &options, &image, &message, message.count)
        defer { ic_image_free(&image) }
        guard status == Int32(IC_OK.rawValue) else { return Decoded(status: status) }
        XCTAssertEqual(image.bit_depth, 8)
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        return Decoded(status: status, width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                       orientation: Int(image.orientation),
                       pixels: Array(UnsafeBufferPointer(start: image.pixels.assumingMemoryBound(to: UInt8.self), count: count)))
    }

    /// Every filter on every layout the direct path takes, at widths that leave RGB rows an odd
    /// number of 4-byte words, with runs of Paeth rows (undone two at a time) and IDAT split.
    func testDirectPathMatchesSourcePixelsAndLibpng() {
        var generator = SystemRandomNumberGenerator()
        var cases = 0
        for colour in [0, 2, 4, 6] as [UInt8] {
            let channels = PNGBuilder.channels(colour)
            for width in [1, 2, 3, 5, 17, 64] {
                for height in [1, 2, 3, 8] {
                    for pattern in 0..<3 {
                        // Smooth gradients plus noise, so every filter sees carries and ties.
                        let pixels = (0..<width * height * channels).map { i -> UInt8 in
                            UInt8(truncatingIfNeeded: (i / channels) % width * 7 + (i / channels / width) * 5 + i % channels * 50
                                  + Int.random(in: 0..<(pattern == 2 ? 256 : 6), using: &generator))
                        }
                        let filters: [UInt8] = (0..<height).map { row in
                            pattern == 0 ? 4 : pattern == 1 ? UInt8(row % 5) : UInt8.random(in: 0...4, using: &generator)
                        }
                        let file = PNGBuilder.build(width: width, height: height, colour: colour, pixels: pixels,
                                                    filters: filters, idatPieces: pattern + 1)
                        let direct = Self.decode(file, with: IC_PNG_DIRECT), reference = Self.decode(file, with: IC_PNG_LIBPNG)
                        let label = "colour \(colour) \(width)x\(height) filters \(filters)"
                        XCTAssertEqual(direct.status, Int32(IC_OK.rawValue), label)
                        XCTAssertEqual(direct, reference, label)
                        let kept = channels == 2 || channels == 4 ? channels - 1 : channels
                        let expected = (0..<width * height).flatMap { p in pixels[p * channels..<p * channels + kept] }
                        XCTAssertEqual(direct.pixels, expected, label)
                        XCTAssertEqual(direct.channels, kept, label)
                        cases += 1
                    }
                }
            }
        }
        XCTAssertEqual(cases, 4 * 6 * 4 * 3)
    }

    func testExifOrientationBeforeTheImageData() {
        let pixels = [UInt8](repeating: 90, count: 4 * 3 * 3)
        // A big-endian TIFF block with one IFD0 entry: Orientation (0x0112), SHORT, value 6.
        let exif: [UInt8] = [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]
        let file = PNGBuilder.build(width: 4, height: 3, colour: 2, pixels: pixels, filters: [1, 2, 4], extra: [("eXIf", exif)])
        let direct = Self.decode(file, with: IC_PNG_DIRECT)
        XCTAssertEqual(direct.orientation, 6)
        XCTAssertEqual(direct, Self.decode(file, with: IC_PNG_LIBPNG))
    }

    /// The camera-sized PNGs of the shared data decode identically on both paths.
    func testSharedDatasetPNGsMatchLibpng() throws {
        let folder = TestPaths.sharedDatasets.appendingPathComponent("fullres/bottle")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".png") }.sorted()
        XCTAssertFalse(names.isEmpty, "no PNGs in \(folder.path)")
        for name in names.prefix(3) {
            let file = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
            let direct = Self.decode(file, with: IC_PNG_DIRECT)
            XCTAssertEqual(direct.status, Int32(IC_OK.rawValue), name)
            XCTAssertEqual(direct, Self.decode(file, with: IC_PNG_LIBPNG), name)
        }
    }

    /// Files the direct path does not take, intact or not, get libpng's answer unchanged.
    func testUnusualOrDamagedFilesAreLeftToLibpng() {
        let pixels = (0..<6 * 4 * 3).map { UInt8($0 % 251) }
        let good = PNGBuilder.build(width: 6, height: 4, colour: 2, pixels: pixels, filters: [0, 1, 3, 4])
        XCTAssertEqual(Self.decode(good, with: IC_PNG_DIRECT).status, Int32(IC_OK.rawValue))

        func declined(_ file: [UInt8], _ label: String, libpngStatus: ic_status) {
            XCTAssertEqual(Self.decode(file, with: IC_PNG_DIRECT).status, Int32(IC_ERR_UNSUPPORTED.rawValue), label)
            let auto = Self.decode(file, with: IC_PNG_AUTO)
            XCTAssertEqual(auto.status, Int32(libpngStatus.rawValue), label)
            XCTAssertEqual(auto, Self.decode(file, with: IC_PNG_LIBPNG), label)
        }
        declined(PNGBuilder.build(width: 6, height: 4, colour: 2, pixels: pixels, filters: [0, 5, 0, 0]),
                 "filter type 5", libpngStatus: IC_ERR_CORRUPT)
        declined(Array(good.dropLast(12)), "no IEND", libpngStatus: IC_ERR_TRUNCATED)
        var damagedText = PNGBuilder.build(width: 6, height: 4, colour: 2, pixels: pixels, filters: [0, 1, 3, 4],
                                           extra: [("tEXt", Array("note\u{0}hello".utf8))])
        damagedText[8 + 25 + 8 + 2] ^= 1  // a byte inside tEXt: its CRC no longer matches
        declined(damagedText, "damaged ancillary chunk (libpng skips it)", libpngStatus: IC_OK)
        var wrongChecksum = good
        let idatEnd = wrongChecksum.count - 12 - 4  // the CRC of the last IDAT
        wrongChecksum[idatEnd - 1] ^= 0xFF  // the zlib stream's Adler-32...
        PNGBuilder.fixCRC(of: &wrongChecksum, chunkEndingAt: idatEnd)  // ...behind a valid chunk CRC
        declined(wrongChecksum, "wrong Adler-32", libpngStatus: IC_ERR_CORRUPT)
        // Found by the differential fuzzer (Tests/ImagingFuzz): libpng refuses both.
        declined(PNGBuilder.build(width: 6, height: 4, colour: 2, pixels: pixels, filters: [0, 1, 3, 4],
                                  extra: [("eXI\u{7F}", [0, 0])]),
                 "a chunk type that is not four letters", libpngStatus: IC_ERR_CORRUPT)
        let palette = [UInt8](repeating: 7, count: 6)
        declined(PNGBuilder.build(width: 6, height: 4, colour: 2, pixels: pixels, filters: [0, 1, 3, 4],
                                  extra: [("PLTE", palette), ("PLTE", palette)]),
                 "a duplicated suggested palette", libpngStatus: IC_ERR_CORRUPT)
        var interlaced = good
        interlaced[8 + 8 + 12] = 1
        PNGBuilder.fixCRC(of: &interlaced, chunkEndingAt: 8 + 8 + 13)
        XCTAssertEqual(Self.decode(interlaced, with: IC_PNG_DIRECT).status, Int32(IC_ERR_UNSUPPORTED.rawValue), "interlaced")
    }
}

/// The fast encoder (libdeflate) writes files libpng reads back exactly, with valid chunk CRCs.
final class PNGFastEncodeTests: XCTestCase {
    func testFastFilesReadBackThroughLibpngWithTheirText() throws {
        for (channels, width, height) in [(3, 37, 23), (1, 5, 2), (3, 1, 1)] {
            let pixels = (0..<width * height * channels).map { UInt8(truncatingIfNeeded: $0 * 37 + $0 / 7) }
            let text = ["rstpm.model": "bottle 3", "rstpm.score": "0.25"]
            let file = [UInt8](channels == 3
                ? try PNGEncoder.encode(rgb8: pixels, width: width, height: height, text: text, compression: .fast)
                : try PNGEncoder.encode(gray: pixels, width: width, height: height, text: text, compression: .fast))
            let decoded = PNGDirectDecodeTests.decode(file, with: IC_PNG_LIBPNG)
            XCTAssertEqual(decoded.pixels, pixels, "\(channels) channels \(width)x\(height)")
            var position = 8, chunks: [String] = []
            while position + 12 <= file.count {
                let length = Int(PNGBuilder.readBigEndian(file, position))
                let typed = Array(file[position + 4..<position + 8 + length])
                XCTAssertEqual(PNGBuilder.crc32(typed), PNGBuilder.readBigEndian(file, position + 8 + length))
                chunks.append(String(decoding: typed.prefix(4), as: UTF8.self))
                position += 12 + length
            }
            XCTAssertEqual(position, file.count)
            XCTAssertEqual(chunks.first, "IHDR")
            XCTAssertEqual(chunks.last, "IEND")
            XCTAssertEqual(chunks.filter { $0 == "tEXt" }.count, 2)
            XCTAssertNotNil(Data(file).range(of: Data("tEXtrstpm.model\u{0}bottle 3".utf8)))
        }
    }
}
