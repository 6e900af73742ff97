import Foundation
import RSTPM
import XCTest

final class PseudoAnomalyTextureTests: XCTestCase {
    /// A GIMP pattern file built byte by byte (docs/devel-docs/pat.txt).
    private func patternFile(name: String, width: Int, height: Int, depth: Int, pixels: [UInt8], magic: String = "GPAT") -> Data {
        let nameBytes = Array(name.utf8) + [0]
        var bytes: [UInt8] = []
        for word in [24 + nameBytes.count, 1, width, height, depth] {
            bytes += [UInt8(word >> 24 & 0xFF), UInt8(word >> 16 & 0xFF), UInt8(word >> 8 & 0xFF), UInt8(word & 0xFF)]
        }
        bytes += Array(magic.utf8) + nameBytes + pixels
        return Data(bytes)
    }

    func testHandcraftedRGBPatternDecodesAndTiles() throws {
        let pixels: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255,
                               10, 20, 30, 40, 50, 60, 70, 80, 90]
        let pattern = try GIMPPattern(data: patternFile(name: "tiny", width: 3, height: 2, depth: 3, pixels: pixels), path: "tiny.pat")
        XCTAssertEqual(pattern.name, "tiny")
        XCTAssertEqual(pattern.width, 3)
        XCTAssertEqual(pattern.height, 2)
        XCTAssertEqual(pattern.rgb, pixels)
        let tiled = pattern.tiled(width: 5, height: 3)
        XCTAssertEqual(tiled[0, 0, 0], 1)
        XCTAssertEqual(tiled[1, 0, 1], 1)
        XCTAssertEqual(tiled[1, 1, 1], 50 / 255)
        XCTAssertEqual(tiled[0, 0, 3], 1)        // x 3 wraps to 0
        XCTAssertEqual(tiled[1, 2, 4], 1)        // y 2 wraps to 0, x 4 to 1
        XCTAssertEqual(tiled[2, 1, 4], 60 / 255) // x 4 wraps to 1
    }

    func testGreyAndAlphaPatternsBecomeRGB() throws {
        let grey = try GIMPPattern(data: patternFile(name: "g", width: 2, height: 1, depth: 1, pixels: [7, 200]), path: "g.pat")
        XCTAssertEqual(grey.rgb, [7, 7, 7, 200, 200, 200])
        let greyAlpha = try GIMPPattern(data: patternFile(name: "ga", width: 2, height: 1, depth: 2, pixels: [7, 255, 200, 0]), path: "ga.pat")
        XCTAssertEqual(greyAlpha.rgb, [7, 7, 7, 255, 255, 255])  // transparent shows the white backing
        let rgba = try GIMPPattern(data: patternFile(name: "a", width: 1, height: 1, depth: 4, pixels: [0, 100, 200, 51]), path: "a.pat")
        XCTAssertEqual(rgba.rgb, [204, 224, 244])  // 20% opaque over white
    }

    func testMalformedPatternsThrowWithThePath() {
        let good = patternFile(name: "x", width: 2, height: 2, depth: 3, pixels: [UInt8](repeating: 9, count: 12))
        XCTAssertThrowsError(try GIMPPattern(data: good.prefix(good.count - 1), path: "/p/short.pat")) { error in
            XCTAssertTrue("\(error)".contains("/p/short.pat"), "\(error)")
        }
        let badMagic = patternFile(name: "x", width: 2, height: 2, depth: 3, pixels: [UInt8](repeating: 9, count: 12), magic: "GIMP")
        XCTAssertThrowsError(try GIMPPattern(data: badMagic, path: "m.pat"))
        let badDepth = patternFile(name: "x", width: 1, height: 1, depth: 5, pixels: [1, 2, 3, 4, 5])
        XCTAssertThrowsError(try GIMPPattern(data: badDepth, path: "d.pat"))
        XCTAssertThrowsError(try GIMPPattern(data: Data([0, 0]), path: "tiny.pat"))
    }

    func testInstalledGIMPPatternsAllLoad() throws {
        let directory = URL(fileURLWithPath: "/usr/share/gimp/2.0/patterns")
        guard FileManager.default.fileExists(atPath: directory.path) else {
            print("skipping: \(directory.path) does not exist (Debian package gimp-data installs it)")
            throw XCTSkip("\(directory.path) does not exist (install gimp-data)")
        }
        let source = try GIMPPatternSource(directory: directory)
        print("GIMP patterns: \(source.count) loaded, sizes \(Set(source.patterns.map { "\($0.width)x\($0.height)" }).count) distinct")
        XCTAssertGreaterThan(source.count, 10)
        for index in 0..<source.count {
            let texture = try source.texture(at: index, width: 64, height: 48)
            XCTAssertEqual(texture.values.count, 3 * 64 * 48)
            let mean = texture.values.reduce(0, +) / Float(texture.values.count)
            XCTAssertTrue((0.001...0.999).contains(mean), "\(source.patterns[index].name) has mean \(mean)")
        }
    }

    func testEmptyFolderThrows() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-empty-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        XCTAssertThrowsError(try GIMPPatternSource(directory: directory)) { error in
            XCTAssertTrue("\(error)".contains(directory.path))
        }
    }

    func testProceduralTexturesAreRepeatableAndVaried() throws {
        let source = ProceduralTextureSource(count: 20, seed: 9)
        let width = 64, height = 96
        var textures: [PlanarImage] = []
        for index in 0..<source.count {
            let texture = try source.texture(at: index, width: width, height: height)
            XCTAssertEqual(texture, try source.texture(at: index, width: width, height: height))
            XCTAssertTrue(texture.values.allSatisfy { (0...1).contains($0) })
            let mean = texture.values.reduce(0, +) / Float(texture.values.count)
            let variance = texture.values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(texture.values.count)
            XCTAssertGreaterThan(variance, 1e-4, "texture \(index) (\(source.kind(at: index))) is flat")
            textures.append(texture)
        }
        XCTAssertEqual(Set(textures.map(\.values)).count, textures.count)
        XCTAssertNotEqual(try ProceduralTextureSource(count: 20, seed: 10).texture(at: 0, width: width, height: height), textures[0])
        XCTAssertEqual(Set((0..<5).map { "\(source.kind(at: $0))" }).count, 5)
    }
}
