import Foundation
import Imaging
import TestSupport
import XCTest

/// The command line of the real `rstpm`: mistyped commands, `weights list`, `infer` on
/// folders with a bad file among them, BMP/TIFF inputs.
final class CLIHandlingTests: XCTestCase {
    func rstpm(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: BinaryHarness.cliBinary.path) else {
            throw XCTSkip("\(BinaryHarness.cliBinary.path) missing: run swift build -c release first")
        }
        return try Tools.run(BinaryHarness.cliBinary, arguments)
    }

    func scratchFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-cli-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testMistypedCommandNamesTheNearestOne() throws {
        for (arguments, suggestion) in [(["trian"], "did you mean 'rstpm train'?"), (["infr", "x.png"], "did you mean 'rstpm infer'?"),
                                        (["model", "lsit", "line-1"], "did you mean 'rstpm model list'?"),
                                        (["weights", "fecth"], "did you mean 'rstpm weights fetch'?")] {
            let result = try rstpm(arguments)
            XCTAssertEqual(result.status, 64, result.output)
            XCTAssertTrue(result.output.contains("unknown command '\(arguments[arguments.count > 2 || arguments[0] == "weights" ? 1 : 0])'"), result.output)
            XCTAssertTrue(result.output.contains(suggestion), result.output)
            XCTAssertFalse(result.output.lowercased().contains("usage:"), result.output)
        }
        let far = try rstpm(["xyzzy"])
        XCTAssertEqual(far.status, 64)
        XCTAssertFalse(far.output.contains("did you mean"), far.output)
        XCTAssertTrue(far.output.contains("commands: weights, classify"), far.output)
        // Real commands and options are untouched.
        XCTAssertEqual(try rstpm(["train", "--help"]).status, 0)
        XCTAssertEqual(try rstpm(["--help"]).status, 0)
        XCTAssertEqual(try rstpm(["help", "train"]).status, 0)
    }

    func testWeightsListVerifiesHashes() throws {
        let folder = try scratchFolder()
        let good = Array("a checkpoint".utf8)
        let goodName = "custom-\(sha256Hex(good).prefix(8)).pth"
        try Data(good).write(to: folder.appendingPathComponent(goodName))
        let list = try rstpm(["weights", "list", "--dir", folder.path])
        XCTAssertEqual(list.status, 0, list.output)
        XCTAssertTrue(list.output.contains("ok      \(goodName)"), list.output)
        XCTAssertTrue(list.output.contains("missing efficientnet-lite0-57934424.pth (efficientnet-lite0)"), list.output)
        try Data("not the weights".utf8).write(to: folder.appendingPathComponent("efficientnet-lite0-57934424.pth"))
        let corrupt = try rstpm(["weights", "list", "--dir", folder.path])
        XCTAssertEqual(corrupt.status, 1, corrupt.output)
        XCTAssertTrue(corrupt.output.contains("BAD     efficientnet-lite0-57934424.pth (efficientnet-lite0)"), corrupt.output)
        XCTAssertTrue(corrupt.output.contains("does not start with 57934424"), corrupt.output)
        // The installed teachers (when this machine has them) pass.
        let installed = TestPaths.weightsDirectory.appendingPathComponent("efficientnet-lite0-57934424.pth")
        if FileManager.default.fileExists(atPath: installed.path) {
            let real = try rstpm(["weights", "list", "--dir", TestPaths.weightsDirectory.path])
            XCTAssertTrue(real.output.contains("ok      efficientnet-lite0-57934424.pth"), real.output)
        }
    }

    /// A folder stands for its images (sorted, not recursive); a bad file among them is
    /// reported and skipped, the rest are inspected, and the exit status says one was skipped.
    /// BMP and TIFF inputs decode like PNG.
    func testInferOnAFolderSkipsABadFile() throws {
        let model = try BinaryHarness.tinyModel()
        let folder = try scratchFolder()
        let images = folder.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images.appendingPathComponent("sub"), withIntermediateDirectories: true)
        let bottle = try ImageDecoder.decode(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/000.png"))
        let small = Resize.bilinear(bottle, width: 80, height: 72, antialias: true)
        let bytes = small.pixels.map { UInt8(($0 * 255).rounded()) }
        try PNGEncoder.encode(small).write(to: images.appendingPathComponent("a.png"))
        try Data(BMPBuilder.build(width: 80, height: 72, bits: 24, rgb: bytes)).write(to: images.appendingPathComponent("b.bmp"))
        var tiff = TIFFBuilder(width: 80, height: 72, samplesPerPixel: 3, bits: 16, photometric: 2, samples: bytes.map { UInt16($0) * 257 })
        tiff.rowsPerStrip = 8
        try Data(tiff.build()).write(to: images.appendingPathComponent("c.tif"))
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]).write(to: images.appendingPathComponent("d.png"))
        try Data("notes".utf8).write(to: images.appendingPathComponent("notes.txt"))
        try PNGEncoder.encode(small).write(to: images.appendingPathComponent("sub/e.png"))
        try PNGEncoder.encode(small).write(to: images.appendingPathComponent("old.heatmap.png"))
        let out = folder.appendingPathComponent("out")
        let result = try rstpm(["infer", "--model", model.path, "--out", out.path, "--weights-dir", TestPaths.weightsDirectory.path, images.path])
        XCTAssertEqual(result.status, 1, result.output)
        XCTAssertTrue(result.output.contains("skipped \(images.path)/d.png: the file is truncated"), result.output)
        XCTAssertTrue(result.output.contains("1 of 4 image(s) skipped"), result.output)
        let written = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        XCTAssertEqual(written, ["a.png.heatmap.png", "a.png.json", "b.bmp.heatmap.png", "b.bmp.json", "c.tif.heatmap.png", "c.tif.json"])
        // The same pixels give the same score whatever the format.
        func score(_ name: String) throws -> Double {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(name))) as? [String: Any]
            return try XCTUnwrap(json?["score"] as? Double)
        }
        let png = try score("a.png.json")
        XCTAssertEqual(try score("b.bmp.json"), png, accuracy: 1e-4 * max(1, abs(png)))
        XCTAssertEqual(try score("c.tif.json"), png, accuracy: 1e-4 * max(1, abs(png)))
        // A folder without images is an error before the model loads.
        let empty = folder.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let none = try rstpm(["infer", "--model", model.path, "--out", out.path, empty.path])
        XCTAssertEqual(none.status, 1, none.output)
        XCTAssertTrue(none.output.contains("the folder holds no .png"), none.output)
    }

    /// The model's input comes from the decode training uses (a JPEG at least twice the input
    /// size DCT-scaled), the heatmap and the verdict's size from the full-size image.
    func testInferDecodesLikeTraining() throws {
        let model = try BinaryHarness.tinyModel()
        let folder = try scratchFolder()
        let bottle = try ImageDecoder.decode(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/broken_large/000.png"))
        let jpeg = folder.appendingPathComponent("large.jpg")
        try JPEGEncoder.encode(Resize.bilinear(bottle, width: 320, height: 256, antialias: true), quality: 90).write(to: jpeg)
        let out = folder.appendingPathComponent("out")
        let result = try rstpm(["infer", "--model", model.path, "--out", out.path, "--weights-dir", TestPaths.weightsDirectory.path, jpeg.path])
        XCTAssertEqual(result.status, 0, result.output)
        let verdict = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("large.jpg.json"))) as? [String: Any])
        let size = try XCTUnwrap(verdict["size"] as? [String: Any])
        XCTAssertEqual(size["width"] as? Int, 320)
        XCTAssertEqual(size["height"] as? Int, 256)
        let heatmap = try ImageDecoder.decode(contentsOf: out.appendingPathComponent("large.jpg.heatmap.png"))
        XCTAssertEqual([heatmap.width, heatmap.height], [320, 256])
        // rstpmd decodes it so too: its verdict's score is the same.
        let folders = try LineFolders()
        defer { folders.remove() }
        let config = try BinaryHarness.writeConfiguration(folders, model: model)
        try FileManager.default.copyItem(at: jpeg, to: URL(fileURLWithPath: folders.path("inbox/large.jpg").string))
        // In infer's precision (f32): rstpmd would take bf16 where the model's check passed.
        let daemon = try Tools.run(BinaryHarness.daemonBinary, ["--config", config.string, "--once", "--weights-dir", TestPaths.weightsDirectory.path],
                                   environment: ["PATH": "/usr/bin:/bin", "RSTPM_PRECISION": "f32"])
        XCTAssertEqual(daemon.status, 0, daemon.output)
        let daemonVerdict = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folders.path("outbox/large.jpg.json").string))) as? [String: Any])
        for each in [verdict, daemonVerdict] { XCTAssertEqual((each["model"] as? [String: Any])?["precision"] as? String, "f32") }
        let inferScore = try XCTUnwrap(verdict["score"] as? Double), daemonScore = try XCTUnwrap(daemonVerdict["score"] as? Double)
        // A full-size decode moves the score by about 3e-5 of it on this image (10x the tolerance).
        XCTAssertEqual(inferScore, daemonScore, accuracy: 3e-6 * abs(daemonScore), "infer \(inferScore), rstpmd \(daemonScore)")
        print("infer \(inferScore), rstpmd \(daemonScore)")
    }

    /// `eval` and `infer --category` (the same code) on a category that is a symbolic link, with
    /// linked images and no train/good.
    func testEvalAndInferCategoryFollowSymbolicLinks() throws {
        let model = try BinaryHarness.tinyModel()
        let folder = try scratchFolder()
        let real = folder.appendingPathComponent("real"), bottle = BinaryHarness.bottle
        let manager = FileManager.default
        for type in ["good", "broken_large"] {
            try manager.createDirectory(at: real.appendingPathComponent("test/\(type)"), withIntermediateDirectories: true)
            if type != "good" { try manager.createDirectory(at: real.appendingPathComponent("ground_truth/\(type)"), withIntermediateDirectories: true) }
            for index in ["000", "001"] {
                try manager.createSymbolicLink(at: real.appendingPathComponent("test/\(type)/\(index).png"), withDestinationURL: bottle.appendingPathComponent("test/\(type)/\(index).png"))
                if type != "good" {
                    try manager.createSymbolicLink(at: real.appendingPathComponent("ground_truth/\(type)/\(index)_mask.png"),
                                                   withDestinationURL: bottle.appendingPathComponent("ground_truth/\(type)/\(index)_mask.png"))
                }
            }
        }
        let linked = folder.appendingPathComponent("linked")
        try manager.createSymbolicLink(at: linked, withDestinationURL: real)
        let eval = try rstpm(["eval", "--model", model.path, "--data", linked.path, "--weights-dir", TestPaths.weightsDirectory.path])
        XCTAssertEqual(eval.status, 0, eval.output)
        XCTAssertTrue(eval.output.contains("overall          2          2"), eval.output)
        let out = folder.appendingPathComponent("out")
        let infer = try rstpm(["infer", "--model", model.path, "--out", out.path, "--category", linked.path, "--weights-dir", TestPaths.weightsDirectory.path])
        XCTAssertEqual(infer.status, 0, infer.output)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("evaluation.json"))) as? [String: Any])
        XCTAssertEqual((report["maps"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, ["S-T", "D", "full"])
    }

    /// `rstpm eval` says which precision it ran in: on the terminal, in report.json and in the
    /// HTML report's header line; f32 by default, bf16 with --precision bf16 where the CPU runs it.
    func testEvalReportsItsPrecision() throws {
        let model = try BinaryHarness.tinyModel()
        let folder = try scratchFolder()
        let data = folder.appendingPathComponent("bottle"), bottle = BinaryHarness.bottle
        let manager = FileManager.default
        for (type, index) in [("good", "000"), ("broken_large", "000")] {
            try manager.createDirectory(at: data.appendingPathComponent("test/\(type)"), withIntermediateDirectories: true)
            try manager.createSymbolicLink(at: data.appendingPathComponent("test/\(type)/\(index).png"),
                                           withDestinationURL: bottle.appendingPathComponent("test/\(type)/\(index).png"))
            guard type != "good" else { continue }
            try manager.createDirectory(at: data.appendingPathComponent("ground_truth/\(type)"), withIntermediateDirectories: true)
            try manager.createSymbolicLink(at: data.appendingPathComponent("ground_truth/\(type)/\(index)_mask.png"),
                                           withDestinationURL: bottle.appendingPathComponent("ground_truth/\(type)/\(index)_mask.png"))
        }
        for precision in ["f32", "bf16"] {
            let report = folder.appendingPathComponent("report-\(precision)")
            let eval = try rstpm(["eval", "--model", model.path, "--data", data.path, "--weights-dir", TestPaths.weightsDirectory.path,
                                  "--report", report.path] + (precision == "f32" ? [] : ["--precision", precision]))
            if precision == "bf16" && eval.status == 2 && eval.output.contains("lacks avx512_bf16") {
                print("bf16 eval not checked: this CPU lacks avx512_bf16")
                continue
            }
            XCTAssertEqual(eval.status, 0, eval.output)
            XCTAssertTrue(eval.output.contains("precision \(precision) (inference convolutions"), eval.output)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: report.appendingPathComponent("report.json"))) as? [String: Any])
            XCTAssertEqual(json["precision"] as? String, precision)
            let html = try String(contentsOf: report.appendingPathComponent("index.html"), encoding: .utf8)
            XCTAssertTrue(html.contains("· precision \(precision) ·"), "index.html does not name precision \(precision)")
        }
    }
}
