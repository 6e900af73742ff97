import Foundation
import Imaging
import TestSupport
import XCTest

/// Heatmap PNGs say what they show: tEXt chunks with the scale and verdict, and optionally a
/// label with the score and verdict in the corner.
final class HeatmapLabelTests: XCTestCase {
    func testTextChunksReadBackFromAValidPNG() throws {
        let text = Heatmap.textChunks(model: "bottle 7", score: 0.75, threshold: 0.5, isDefect: true, scale: 0...1)
        for compression in [PNGEncoder.Compression.compact, .fast] {
            let file = [UInt8](try PNGEncoder.encode(rgb8: [UInt8](repeating: 90, count: 6 * 4 * 3), width: 6, height: 4,
                                                     text: text, compression: compression))
            let chunks = try XCTUnwrap(PNGBuilder.chunks(of: file), "signature, lengths and every CRC")
            XCTAssertEqual(chunks.first?.type, "IHDR")
            let read = try XCTUnwrap(PNGBuilder.text(of: file))
            XCTAssertEqual(read["rstpm.verdict"], "defect")
            XCTAssertEqual(read["rstpm.score"], "0.75")
            XCTAssertEqual(read["rstpm.threshold"], "0.5")
            XCTAssertEqual(read["rstpm.scale.min"], "0.0")
            XCTAssertEqual(read["rstpm.scale.max"], "1.0")
            XCTAssertEqual(read["rstpm.model"], "bottle 7")
            XCTAssertTrue(read["rstpm.colormap"]?.hasPrefix("turbo") == true)
            XCTAssertEqual(read, text)
            XCTAssertEqual(try ImageDecoder.decode(data: Data(file), name: "heatmap").width, 6)
        }
        XCTAssertEqual(Heatmap.textChunks(model: "m", score: 0.2, threshold: 0.5, isDefect: false, scale: 0...1)["rstpm.verdict"], "ok")
    }

    func testDamagedCRCIsNoticed() throws {
        var file = [UInt8](try PNGEncoder.encode(gray: [1, 2, 3, 4], width: 2, height: 2, text: ["k": "value"]))
        XCTAssertNotNil(PNGBuilder.text(of: file))
        let position = try XCTUnwrap(Data(file).range(of: Data("value".utf8))).lowerBound
        file[position] ^= 1
        XCTAssertNil(PNGBuilder.chunks(of: file), "a flipped bit in tEXt breaks its CRC")
    }

    func testLabelText() {
        XCTAssertEqual(Heatmap.labelText(score: 0.9123, threshold: 0.4551, isDefect: true), "DEFECT 0.912 >= 0.455")
        XCTAssertEqual(Heatmap.labelText(score: 0.1, threshold: 0.4551, isDefect: false), "OK 0.100 < 0.455")
    }

    func testLabelIsDrawnInTheCornerOnly() {
        let width = 400, height = 300, grey: UInt8 = 90
        var pixels = [UInt8](repeating: grey, count: width * height * 3)
        Heatmap.drawLabel(score: 0.9, threshold: 0.5, isDefect: true, into: &pixels, width: width, height: height)
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { Array(pixels[3 * (y * width + x)..<3 * (y * width + x) + 3]) }
        // A dot is 300 / 200 = 1 pixel, padding 2: the box is 2 + 21 characters x 6 - 1 + 2 wide, 2 + 7 + 2 high.
        let text = "DEFECT 0.900 >= 0.500"
        XCTAssertEqual(pixel(0, 0), [150, 0, 0], "the box: dark red for a defect")
        XCTAssertEqual(pixel(2 + text.count * 6 - 1 + 2 - 1, 10), [150, 0, 0], "the box's last pixel")
        XCTAssertEqual(pixel(2 + text.count * 6 - 1 + 2, 0), [grey, grey, grey], "right of the box")
        XCTAssertEqual(pixel(0, 11), [grey, grey, grey], "below the box")
        // "D": its first column is set in all 7 rows, its second only in the top and bottom row.
        for row in 0..<7 { XCTAssertEqual(pixel(2, 2 + row), [255, 255, 255], "D column 0, row \(row)") }
        XCTAssertEqual(pixel(3, 2), [255, 255, 255])
        XCTAssertEqual(pixel(3, 5), [150, 0, 0])
        XCTAssertEqual(pixels[(3 * width * 20)...].filter { $0 != grey }.count, 0, "nothing drawn below the corner")

        var ok = [UInt8](repeating: grey, count: width * height * 3)
        Heatmap.drawLabel(score: 0.1, threshold: 0.5, isDefect: false, into: &ok, width: width, height: height)
        XCTAssertEqual(Array(ok[0..<3]), [0, 100, 0], "dark green for ok")
    }

    func testLabelIsClippedOnATinyImage() {
        var pixels = [UInt8](repeating: 0, count: 8 * 4 * 3)
        Heatmap.drawLabel(score: 12.5, threshold: 0.5, isDefect: true, into: &pixels, width: 8, height: 4)
        XCTAssertEqual(pixels.count, 8 * 4 * 3)
        XCTAssertTrue(pixels.contains(150))
    }
}
