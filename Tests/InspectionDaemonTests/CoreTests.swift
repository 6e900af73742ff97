import DaemonSupport
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

final class RegionTests: XCTestCase {
    func testEightConnectedComponentsAtFullResolution() {
        // Two components: a diagonal chain (8-connected, not 4-connected) and a single pixel.
        let W = 6, H = 4
        var map = [Float](repeating: 0, count: W * H)
        map[0 * W + 0] = 0.9
        map[1 * W + 1] = 0.7
        map[2 * W + 2] = 0.8
        map[0 * W + 5] = 0.6
        let (regions, truncated) = RegionExtractor.regions(map: map, mapWidth: W, mapHeight: H, imageWidth: W, imageHeight: H, threshold: 0.5)
        XCTAssertFalse(truncated)
        XCTAssertEqual(regions, [
            AnomalyRegion(x: 0, y: 0, width: 3, height: 3, area: 3, peakScore: 0.9),
            AnomalyRegion(x: 5, y: 0, width: 1, height: 1, area: 1, peakScore: 0.6),
        ])
    }

    func testMapIsScaledToTheOriginalImage() {
        // A 2x2 map with one hot cell, scaled to 8x8: the region lies in that quadrant.
        let map: [Float] = [0, 0, 0, 1]
        let (regions, _) = RegionExtractor.regions(map: map, mapWidth: 2, mapHeight: 2, imageWidth: 8, imageHeight: 8, threshold: 0.99)
        XCTAssertEqual(regions.count, 1)
        XCTAssertEqual(regions[0].x, 6)
        XCTAssertEqual(regions[0].y, 6)
        XCTAssertEqual(regions[0].width, 2)
        XCTAssertEqual(regions[0].area, 4)
        XCTAssertEqual(regions[0].peakScore, 1)
    }

    func testUpsampleMatchesAlignCornersFalse() {
        // torch.nn.functional.interpolate([[0, 1]], size=4, mode="linear", align_corners=False)
        let row = RegionExtractor.upsample(map: [0, 1], mapWidth: 2, mapHeight: 1, width: 4, height: 1)
        XCTAssertEqual(row, [0, 0.25, 0.75, 1])
    }

    func testRegionCountIsCapped() {
        let W = 9
        var map = [Float](repeating: 0, count: W)
        for x in stride(from: 0, to: W, by: 2) { map[x] = 1 }
        let (regions, truncated) = RegionExtractor.regions(map: map, mapWidth: W, mapHeight: 1, imageWidth: W, imageHeight: 1, threshold: 0.5, maximumRegions: 3)
        XCTAssertEqual(regions.count, 3)
        XCTAssertTrue(truncated)
    }
}

/// A valid one-line configuration over `folders`, plus `extra` YAML appended.
func lineYAML(_ folders: LineFolders, extra: String = "") -> String {
    """
    instance: host-a
    lines:
      - name: line-1
        inbox: \(folders.path("inbox"))
        work: \(folders.path("work"))
        outbox: \(folders.path("outbox"))
        archive: \(folders.path("archive"))
        quarantine: \(folders.path("quarantine"))
        model: \(folders.path("model"))
        threshold: 0.25
        settle_interval_seconds: 3
        processed_inputs: archive
    \(extra)
    """
}

/// A one-line configuration over `folders` with only the folders, the model and `settings`
/// (`key: value` lines of the line), for daemons run with `--once`.
func bareLineYAML(_ folders: LineFolders, settings: [String]) -> String {
    (["instance: test-host", "lines:", "  - name: line-1"]
        + ["inbox", "work", "outbox", "archive", "quarantine", "model"].map { "    \($0): \(folders.path($0))" }
        + settings.map { "    " + $0 }).joined(separator: "\n")
}

final class ConfigurationTests: XCTestCase {
    func testValidConfiguration() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let configuration = try DaemonConfiguration.parse(yaml: lineYAML(folders), file: "test.yaml")
        XCTAssertEqual(configuration.instance, "host-a")
        XCTAssertEqual(configuration.lines.count, 1)
        XCTAssertEqual(configuration.lines[0].thresholdOverride, 0.25)
        XCTAssertEqual(configuration.lines[0].settleIntervalSeconds, 3)
        XCTAssertEqual(configuration.lines[0].pollIntervalSeconds, 2, "default")
        XCTAssertEqual(configuration.lines[0].processedInputs, .archive)
        XCTAssertEqual(configuration.lines[0].inbox, folders.path("inbox"))
    }

    func testEveryProblemIsReportedWithItsKey() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let text = lineYAML(folders, extra: """
          - name: line-2
            inbox: \(folders.path("inbox"))/
            work: \(folders.path("missing-work"))
            outbox: relative/outbox
            quarantine: \(folders.path("quarantine"))
            model: \(folders.path("model"))
            batch_size: many
            colour: blue
            processed_inputs: shred
        metrics_fle: /tmp/x.prom
        """)
        XCTAssertThrowsError(try DaemonConfiguration.parse(yaml: text, file: "/etc/rstpmd/rstpmd.yaml")) { error in
            guard let error = error as? ConfigurationError else { return XCTFail("\(error)") }
            let keys = error.problems.map(\.key)
            for key in ["lines[1].inbox", "lines[1].work", "lines[1].outbox", "lines[1].batch_size", "lines[1].colour", "lines[1].processed_inputs", "metrics_fle"] {
                XCTAssertTrue(keys.contains(key), "\(key) missing from \(keys)")
            }
            XCTAssertTrue(error.description.hasPrefix("/etc/rstpmd/rstpmd.yaml: \(error.problems.count) problems"), error.description)
            XCTAssertTrue(error.description.contains("two lines cannot share an inbox"), error.description)
            XCTAssertTrue(error.description.contains("unknown key"), error.description)
            XCTAssertTrue(error.description.contains("must be an integer"), error.description)
            XCTAssertTrue(error.problems.contains { $0.key == "lines[1].colour" && $0.fileLine == 20 }, "\(error.problems)")
        }
    }

    func testHeatmapMaxSide() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        func parse(_ value: String) throws -> HeatmapResolution {
            try DaemonConfiguration.parse(yaml: lineYAML(folders, extra: "    heatmap_max_side: \(value)"), file: "test.yaml")
                .lines[0].heatmapResolution
        }
        XCTAssertEqual(try DaemonConfiguration.parse(yaml: lineYAML(folders), file: "test.yaml").lines[0].heatmapResolution, .maximumSide(512), "default")
        XCTAssertEqual(try parse("original"), .original)
        XCTAssertEqual(try parse("300"), .maximumSide(300))
        for (bad, message) in [("8", "must be between 16 and 65536"), ("half", "must be `original` or the longest side"), ("51.2", "must be `original`")] {
            XCTAssertThrowsError(try parse(bad), bad) { error in
                let problems = (error as? ConfigurationError)?.problems ?? []
                XCTAssertEqual(problems.map(\.key), ["lines[0].heatmap_max_side"], "\(problems)")
                XCTAssertTrue(problems.first?.message.contains(message) == true, "\(problems)")
            }
        }
    }

    func testHeatmapSizeKeepsTheAspectRatioAndNeverEnlarges() {
        XCTAssertTrue(HeatmapResolution.maximumSide(512).size(width: 900, height: 900) == (512, 512))
        XCTAssertTrue(HeatmapResolution.maximumSide(512).size(width: 2448, height: 2048) == (512, 428))
        XCTAssertTrue(HeatmapResolution.maximumSide(512).size(width: 600, height: 1200) == (256, 512))
        XCTAssertTrue(HeatmapResolution.maximumSide(512).size(width: 256, height: 256) == (256, 256))
        XCTAssertTrue(HeatmapResolution.original.size(width: 2448, height: 2048) == (2448, 2048))
    }

    func testMissingArchiveAndEmptyLines() {
        XCTAssertThrowsError(try DaemonConfiguration.parse(yaml: "lines: []\n", file: "a.yaml", checkFileSystem: false)) { error in
            XCTAssertEqual((error as? ConfigurationError)?.problems.map(\.key), ["lines"])
        }
        let noArchive = "lines:\n  - {name: a, inbox: /i, work: /w, outbox: /o, quarantine: /q, model: /m}\n"
        XCTAssertThrowsError(try DaemonConfiguration.parse(yaml: noArchive, file: "a.yaml", checkFileSystem: false)) { error in
            XCTAssertEqual((error as? ConfigurationError)?.problems.map(\.key), ["lines[0].archive"])
        }
        XCTAssertNoThrow(try DaemonConfiguration.parse(yaml: noArchive.replacingOccurrences(of: "}", with: ", processed_inputs: delete}"), file: "a.yaml", checkFileSystem: false))
    }

    func testShippedExampleParses() throws {
        let example = TestPaths.repositoryRoot.appendingPathComponent("etc/rstpmd/rstpmd.yaml")
        let text = try String(contentsOf: example, encoding: .utf8)
        let configuration = try DaemonConfiguration.parse(yaml: text, file: FilePath(example.path), checkFileSystem: false)
        XCTAssertEqual(configuration.lines.map(\.name), ["bottle-line-1"])
    }
}

final class MetricsTests: XCTestCase {
    func testExpositionFormat() {
        let metrics = MetricsRegistry()
        metrics.increment("rstpmd_inputs_total", labels: ["line": "a", "verdict": "ok"])
        metrics.increment("rstpmd_inputs_total", labels: ["line": "a", "verdict": "ok"])
        metrics.observe("rstpmd_stage_seconds", labels: ["line": "a", "stage": "infer"], seconds: 0.3)
        let text = metrics.exposition()
        XCTAssertTrue(text.contains("# TYPE rstpmd_inputs_total counter\n"), text)
        XCTAssertTrue(text.contains(#"rstpmd_inputs_total{line="a",verdict="ok"} 2.0"#), text)
        XCTAssertTrue(text.contains(#"rstpmd_stage_seconds_bucket{line="a",stage="infer",le="0.25"} 0"#), text)
        XCTAssertTrue(text.contains(#"rstpmd_stage_seconds_bucket{line="a",stage="infer",le="0.5"} 1"#), text)
        XCTAssertTrue(text.contains(#"rstpmd_stage_seconds_bucket{line="a",stage="infer",le="+Inf"} 1"#), text)
        XCTAssertTrue(text.contains(#"rstpmd_stage_seconds_count{line="a",stage="infer"} 1"#), text)
    }
}

/// The `rstpmd` binary itself: --check-config, and the clear start-up failure while model
/// bundles cannot be loaded in this build.
final class ExecutableTests: XCTestCase {
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard let binary = Tools.builtExecutable("rstpmd") else { throw XCTSkip("rstpmd is not built: run `swift build -c release` first") }
        return try Tools.run(binary, arguments, environment: ["PATH": "/usr/bin:/bin"])
    }

    func testCheckConfigAndModelLoaderMessage() throws {
        let folders = try LineFolders()
        defer { folders.remove() }
        let good = lineYAML(folders)
        try folders.write(Array(good.utf8), to: "good.yaml")
        try folders.write(Array((good + "\nbogus: 1\n").utf8), to: "bad.yaml")

        // The folders are right but the model folder is empty: the gate loads the model as the
        // daemon would, so it refuses, naming the YAML key (it once printed OK here).
        let checked = try run(["--check-config", folders.path("good.yaml").string])
        XCTAssertEqual(checked.status, 1, checked.output)
        XCTAssertTrue(checked.output.contains("lines[0].model:") && checked.output.contains("missing or unreadable manifest"), checked.output)
        XCTAssertTrue(checked.output.contains("point lines[].model at") && !checked.output.contains("--model"), checked.output)

        let bad = try run(["--check-config", "--config", folders.path("bad.yaml").string])
        XCTAssertEqual(bad.status, 1, bad.output)
        XCTAssertTrue(bad.output.contains("bogus: unknown key"), bad.output)

        let once = try run(["--config", folders.path("good.yaml").string, "--once"])
        XCTAssertEqual(once.status, 1, once.output)
        XCTAssertTrue(once.output.contains("cannot load model bundle") && once.output.contains("missing or unreadable manifest"), once.output)
    }
}
