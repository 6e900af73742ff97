import Foundation
import Imaging
import RSTPM
import TestSupport
import XCTest

final class TrainingImagesTests: XCTestCase {
    /// Training reads BMP and TIFF beside PNG (by extension, any case), and the same pixels give
    /// the same model input whatever the format.
    func testTrainingReadsBMPAndTIFF() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-training-images-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var random = TestSupport.SplitMix64(state: 7)
        let (width, height) = (40, 30)
        let rgb = random.bytes(width * height * 3)
        try PNGEncoder.encode(rgb8: rgb, width: width, height: height).write(to: folder.appendingPathComponent("a.png"))
        try Data(BMPBuilder.build(width: width, height: height, bits: 24, rgb: rgb)).write(to: folder.appendingPathComponent("b.BMP"))
        let tiff = TIFFBuilder(width: width, height: height, samplesPerPixel: 3, bits: 16, photometric: 2, samples: rgb.map { UInt16($0) * 257 })
        try Data(tiff.build()).write(to: folder.appendingPathComponent("c.tiff"))
        try Data("notes".utf8).write(to: folder.appendingPathComponent("d.txt"))
        let images = try TrainingImages.load(from: folder, width: 32, height: 32)
        XCTAssertEqual(images.files.map(\.lastPathComponent), ["a.png", "b.BMP", "c.tiff"])
        XCTAssertEqual(images.images[1].values, images.images[0].values)
        XCTAssertEqual(images.images[2].values, images.images[0].values)
    }
}
