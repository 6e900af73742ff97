import ContinuousLearning
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// A temporary folder tree for one test, removed at the end.
struct Scratch {
    let root: URL

    init(_ testName: String = #function) throws {
        let name = testName.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-learning-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    func path(_ relative: String) -> FilePath { FilePath(root.appendingPathComponent(relative).path) }

    func makeDirectory(_ relative: String) throws {
        try FileManager.default.createDirectory(at: root.appendingPathComponent(relative), withIntermediateDirectories: true)
    }

    func write(_ bytes: [UInt8], to relative: String) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    func write(_ text: String, to relative: String) throws { try write(Array(text.utf8), to: relative) }

    func read(_ relative: String) -> String? {
        try? String(contentsOf: root.appendingPathComponent(relative), encoding: .utf8)
    }

    func list(_ relative: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(relative).path)) ?? []).sorted()
    }

    func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: root.appendingPathComponent(relative).path) }

    func json(_ relative: String) throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent(relative))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func remove() { try? FileManager.default.removeItem(at: root) }

    /// A model store with `v0001` (a "good" bundle) and `current` pointing at it.
    func makeModelStore(_ relative: String = "models/line-1") throws -> ModelStore {
        try write(#"{"quality":"good"}"#, to: "\(relative)/v0001/manifest.json")
        try write([1, 2, 3], to: "\(relative)/v0001/weights.safetensors")
        try FileManager.default.createSymbolicLink(atPath: path("\(relative)/current").string, withDestinationPath: "v0001")
        return ModelStore(root: path(relative))
    }

    /// The test trainer: a shell script standing in for `rstpm train --data DIR --out DIR
    /// [--resume]`. It logs its arguments to `trainer.log`, writes `progress` to the candidate
    /// folder, hangs while `control/hang` exists (so a test can kill it), fails with status 3
    /// while `control/fail` exists, and writes a bundle whose manifest carries the quality in
    /// `control/quality` (default good) and the number of training images it saw.
    func makeTrainer() throws -> [String] {
        try makeDirectory("control")
        let script = """
        #!/bin/sh
        # Decided before the progress line, so a test that saw the line knows the mode.
        hang=no; if [ -f '\(path("control/hang"))' ]; then hang=yes; fi
        echo "$@" >> '\(path("trainer.log"))'
        while [ $# -gt 0 ]; do
          case "$1" in
            --data) data="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            *) shift ;;
          esac
        done
        mkdir -p "$out"
        echo "run $$" >> "$out/progress"
        echo "epoch 1/2 loss 0.5"
        if [ -f '\(path("control/fail"))' ]; then echo "out of memory" >&2; exit 3; fi
        if [ $hang = yes ]; then exec sleep 60; fi
        quality=$(cat '\(path("control/quality"))' 2>/dev/null || echo good)
        count=$(ls "$data" | wc -l)
        printf '{"quality":"%s","images":%s}\\n' "$quality" "$count" > "$out/manifest.json"
        printf 'weights' > "$out/weights.safetensors"
        echo "epoch 2/2 loss 0.2"
        """
        try write(script, to: "trainer.sh")
        chmod(path("trainer.sh").string, 0o755)
        return [path("trainer.sh").string, "--data", "{data}", "--out", "{out}"]
    }

    var trainerRuns: [String] {
        (read("trainer.log") ?? "").split(separator: "\n").map(String.init)
    }
}

/// The gate's evaluator double: reads the bundle's manifest. A "good" bundle scores normals
/// 0.1 and defects (paths containing "/defects/") 0.9 at threshold 0.5; a "worse" one scores
/// normals 0.6 and defects 0.4, so it rejects every normal and ranks defects below normals.
final class ManifestEvaluator: CandidateEvaluator {
    private let lock = NSLock()
    private(set) var evaluatedBundles: [String] = []

    func scores(bundle: FilePath, images: [FilePath]) throws -> BundleScores {
        lock.lock(); evaluatedBundles.append(bundle.lastComponent?.string ?? ""); lock.unlock()
        let manifest = try String(contentsOfFile: bundle.appending("manifest.json").string, encoding: .utf8)
        let good = manifest.contains("\"good\"")
        return BundleScores(scores: images.map { image in
            let defect = image.string.contains("/defects/")
            return good ? (defect ? 0.9 : 0.1) : (defect ? 0.4 : 0.6)
        }, threshold: 0.5)
    }
}

/// An inspector double for the daemon: every image scores 0.1 (ok) at threshold 0.5.
final class ConstantInspector: Inspector {
    let modelIdentity: ModelIdentity

    init(bundle: FilePath) throws {
        let manifest = try String(contentsOfFile: bundle.appending("manifest.json").string, encoding: .utf8)
        modelIdentity = ModelIdentity(identifier: manifest.contains("\"good\"") ? "test-good" : "test-worse", version: "manifest")
    }

    func inspect(prepared inputs: [InspectionInput]) -> [Result<InspectionOutcome, InspectionError>] {
        inputs.map { _ in
            .success(InspectionOutcome(
                score: 0.1, threshold: 0.5, anomalyMap: [0.1, 0.1, 0.1, 0.1], mapWidth: 2, mapHeight: 2,
                imageWidth: 4, imageHeight: 4, heatmapPNG: [0x89, 0x50, 0x4E, 0x47], timings: InspectionTimings(decodeMilliseconds: 0, inferMilliseconds: 0)))
        }
    }
}

/// A deterministic generator (SplitMix64) for the reservoir's draws.
final class SeededRandom: @unchecked Sendable {
    private var generator: SplitMix64
    init(seed: UInt64) { generator = SplitMix64(state: seed) }

    func below(_ bound: Int) -> Int { generator.below(bound) }
}

/// Distinct small "images": the bytes only need distinct digests.
func image(_ index: Int, tag: String = "img") -> [UInt8] {
    Array("P5\n2 2\n255\n\(tag)-\(index)".utf8)
}

/// A clock the test moves.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var date: Date

    /// `hour:minute` UTC on an arbitrary day.
    init(hour: Int, minute: Int = 0) { date = Self.at(hour: hour, minute: minute) }

    var now: Date { lock.lock(); defer { lock.unlock() }; return date }

    func set(hour: Int, minute: Int = 0) { lock.lock(); date = Self.at(hour: hour, minute: minute); lock.unlock() }

    static func at(hour: Int, minute: Int) -> Date {
        Date(timeIntervalSince1970: 1_795_000_000 - 1_795_000_000.truncatingRemainder(dividingBy: 86400) + Double(hour * 3600 + minute * 60))
    }
}

let utc = TimeZone(identifier: "UTC")!
