import Foundation
import Imaging
import InspectionDaemon
import TestSupport
import XCTest

/// The heatmap PNGs of `rstpmd` and `rstpm infer` carry their scale and verdict in tEXt chunks,
/// and draw them into the corner when asked (`heatmap_label: true`, `infer --label`).
final class HeatmapTextTests: XCTestCase {
    /// The chunks agree with the verdict JSON; returns the decoded figure.
    private func checkChunks(heatmap: URL, verdict: [String: Any]) throws -> RGBImage {
        let file = [UInt8](try Data(contentsOf: heatmap))
        let text = try XCTUnwrap(PNGBuilder.text(of: file), "a valid PNG: signature, lengths, CRCs")
        let score = try XCTUnwrap((verdict["score"] as? NSNumber)?.floatValue)
        let threshold = try XCTUnwrap(((verdict["threshold"] as? [String: Any])?["value"] as? NSNumber)?.floatValue)
        XCTAssertEqual(text["rstpm.verdict"], verdict["verdict"] as? String)
        XCTAssertEqual(text["rstpm.score"].flatMap(Float.init), score)
        XCTAssertEqual(text["rstpm.threshold"].flatMap(Float.init), threshold)
        XCTAssertEqual(text["rstpm.scale.min"], "0.0")
        XCTAssertEqual(text["rstpm.scale.max"].flatMap(Float.init), 2 * threshold)
        XCTAssertEqual(text["rstpm.model"], (verdict["model"] as? [String: Any])?["id"] as? String)
        return try ImageDecoder.decode(data: Data(file), name: heatmap.path)
    }

    /// The label box's colour at the top-left pixel: dark red for defect, dark green for ok.
    private func hasLabel(_ figure: RGBImage, verdict: [String: Any]) -> Bool {
        let expected: [Float] = verdict["verdict"] as? String == "defect" ? [150, 0, 0] : [0, 100, 0]
        return Array(figure.pixels[0..<3]).map { ($0 * 255).rounded() } == expected
    }

    func testDaemonHeatmapsCarryTheirScaleAndVerdictAndTheLabelWhenConfigured() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let configuration = try BinaryHarness.writeConfiguration(folders, model: model, extra: "    heatmap_label: true")
        let daemon = try DaemonProcess(configuration: configuration, folders: folders)
        let names = ["good.png", "broken.png"]
        try BinaryHarness.drop(try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/000.png")), as: names[0], into: folders)
        try BinaryHarness.drop(try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/broken_large/000.png")), as: names[1], into: folders)
        XCTAssertTrue(BinaryHarness.wait(seconds: 60) { names.allSatisfy { BinaryHarness.verdict($0, in: folders) != nil } }, daemon.output)
        XCTAssertEqual(daemon.stop(), 0, daemon.output)
        for name in names {
            let verdict = try XCTUnwrap(BinaryHarness.verdict(name, in: folders))
            let figure = try checkChunks(heatmap: folders.root.appendingPathComponent("outbox/\(name).heatmap.png"), verdict: verdict)
            XCTAssertTrue(hasLabel(figure, verdict: verdict), "\(name): \(figure.pixels[0..<3])")
        }
    }

    func testInferHeatmapsCarryTheChunksAndTheLabelOnlyWithTheFlag() throws {
        let model = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        let image = BinaryHarness.bottle.appendingPathComponent("test/broken_large/000.png")
        for (out, flags) in [("outbox", ["--label"]), ("archive", [])] {
            let (status, output) = try Tools.run(BinaryHarness.cliBinary, [
                "infer", "--model", model.path, "--out", folders.path(out).string, "--weights-dir", TestPaths.weightsDirectory.path,
            ] + flags + [image.path], environment: ["PATH": "/usr/bin:/bin"])
            XCTAssertEqual(status, 0, output)
            let verdict = try folders.json("\(out)/000.png.json")
            let figure = try checkChunks(heatmap: folders.root.appendingPathComponent("\(out)/000.png.heatmap.png"), verdict: verdict)
            XCTAssertEqual(hasLabel(figure, verdict: verdict), !flags.isEmpty, "\(flags)")
        }
    }

    func testHeatmapLabelKey() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        func parse(_ extra: String) throws -> Bool {
            try DaemonConfiguration.parse(yaml: lineYAML(folders, extra: extra), file: "test.yaml").lines[0].heatmapLabel
        }
        XCTAssertFalse(try parse(""), "off by default")
        XCTAssertTrue(try parse("    heatmap_label: true"))
        XCTAssertFalse(try parse("    heatmap_label: false"))
        XCTAssertThrowsError(try parse("    heatmap_label: corner")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.problems.map(\.key), ["lines[0].heatmap_label"], "\(error)")
        }
    }
}
