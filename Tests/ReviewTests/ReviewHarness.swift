import ContinuousLearning
import Foundation
import InspectionDaemon
import SystemPackage
import TestSupport
import XCTest

/// A line's folders with verdicts written as rstpmd writes them (archived input, heatmap,
/// verdict), an rstpmd.yaml with a learning block, and the real `rstpm review` on a free port.
final class ReviewFixture {
    let root: URL
    let secret = "TOP-SECRET-\(UUID().uuidString)"

    init(_ testName: String = #function) throws {
        let name = testName.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-review-\(name)-\(UUID().uuidString.prefix(8))")
        for folder in ["inbox", "work", "outbox", "archive", "quarantine", "accepted", "defects", "training", "originals", "state", "models/v0001", "control"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try write(Array(#"{"quality":"good"}"#.utf8), to: "models/v0001/manifest.json")
        try FileManager.default.createSymbolicLink(atPath: path("models/current"), withDestinationPath: "v0001")
        // Outside every line's folders: what traversal tries to reach.
        try write(Array(secret.utf8), to: "secret.txt")
        try writeTrainer()
        try write(Array("""
        instance: test
        lines:
          - name: line-1
            inbox: \(path("inbox"))
            work: \(path("work"))
            outbox: \(path("outbox"))
            archive: \(path("archive"))
            quarantine: \(path("quarantine"))
            model: \(path("models"))
            learning:
              accepted: \(path("accepted"))
              defects: \(path("defects"))
              store: \(path("training"))
              originals: \(path("originals"))
              trainer: ["\(path("trainer.sh"))", "--data", "{data}", "--out", "{out}"]
              min_new_images: 50
              capacity: 100
              held_out_share: 0.2

        """.utf8), to: "rstpmd.yaml")
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    func write(_ bytes: [UInt8], to relative: String) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    func read(_ relative: String) -> [UInt8]? { (try? Data(contentsOf: root.appendingPathComponent(relative))).map(Array.init) }

    func list(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path(folder))) ?? []).sorted()
    }

    /// A distinct 8x8 gray PNG per index.
    static func image(_ index: Int) -> [UInt8] {
        PNGBuilder.build(width: 8, height: 8, colour: 0, pixels: (0..<64).map { UInt8(truncatingIfNeeded: $0 * 3 + index * 7) },
                         filters: [UInt8](repeating: 0, count: 8), extra: [("tEXt", Array("index\u{0}\(index)".utf8))])
    }

    /// Writes `name` into the archive and its heatmap and verdict into the outbox.
    @discardableResult
    func addVerdict(_ name: String, index: Int, decision: Verdict.Decision, score: Float?, threshold: Float = 0.5,
                    decidedAt: String = "2026-12-01T10:00:00.000Z", regions: [AnomalyRegion] = []) throws -> Verdict {
        let bytes = Self.image(index)
        try write(bytes, to: "archive/\(name)")
        let heatmap = decision == .error ? nil : name + ".heatmap.png"
        if let heatmap { try write(Self.image(10_000 + index), to: "outbox/\(heatmap)") }
        let verdict = Verdict(
            file: name, sha256: sha256Hex(bytes), size: .init(bytes: bytes.count, width: 8, height: 8), receivedAt: decidedAt, decidedAt: decidedAt,
            line: "line-1", instance: "test", model: ModelIdentity(identifier: "rstpm-test", version: "v0001"), verdict: decision, score: score,
            threshold: decision == .error ? nil : .init(value: threshold, source: .model), regions: regions, regionsTruncated: false, heatmap: heatmap,
            timingsMilliseconds: .init(decode: 1, infer: 1, heatmap: 1, write: 1), error: nil)
        try write(verdict.encoded(), to: "outbox/\(name).json")
        return verdict
    }

    /// The trainer double: records its arguments and the images of its snapshot, writes a bundle.
    private func writeTrainer() throws {
        let script = """
        #!/bin/sh
        while [ $# -gt 0 ]; do
          case "$1" in
            --data) data="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            *) shift ;;
          esac
        done
        mkdir -p "$out"
        ls "$data" > '\(path("control/trained-on"))'
        printf '{"quality":"good","images":%s}\\n' "$(ls "$data" | wc -l)" > "$out/manifest.json"
        printf 'weights' > "$out/weights.safetensors"
        """
        try write(Array(script.utf8), to: "trainer.sh")
        chmod(path("trainer.sh"), 0o755)
    }
}

/// `rstpm review` on the fixture's configuration and state folder; skips when rstpm is not built.
typealias StationProcess = ReviewStation

extension ReviewStation {
    convenience init(_ fixture: ReviewFixture, arguments: [String] = []) throws {
        guard let binary = Tools.builtExecutable("rstpm") else { throw XCTSkip("rstpm not built: run swift build -c release") }
        try self.init(binary: binary, configuration: fixture.path("rstpmd.yaml"), stateDirectory: fixture.path("state"), arguments: arguments)
    }
}

/// The review log's records.
func reviewLog(_ fixture: ReviewFixture) -> [[String: Any]] {
    guard let bytes = fixture.read("state/review-line-1.jsonl") else { return [] }
    return bytes.split(separator: 10).compactMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }
}

/// Gate scores for the learning test: every bundle is "good".
final class FixedEvaluator: CandidateEvaluator {
    func scores(bundle: FilePath, images: [FilePath]) throws -> BundleScores {
        BundleScores(scores: images.map { $0.string.contains("/defects/") ? 0.9 : 0.1 }, threshold: 0.5)
    }
}
