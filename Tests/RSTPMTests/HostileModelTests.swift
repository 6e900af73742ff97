import Foundation
import OperatorErrors
import RSTPM
import XCTest

/// Teacher files, manifests and configurations an attacker or a careless operator leaves behind:
/// each is refused with an error naming the file and what is wrong, never a crash.
final class HostileModelTests: XCTestCase {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testTeacherFileUnderAKnownNameIsHashedBeforeItIsParsed() throws {
        // A deep pickle under the teacher's name crashed rstpmd at start: it was parsed before
        // its SHA-256 was compared. Now the name's hash prefix is checked first.
        let weights = try temporaryDirectory()
        let deepPickle: [UInt8] = [0x80, 0x02, 0x4b, 0x01] + [UInt8](repeating: 0x85, count: 50_000) + [0x2e]
        for name in ["efficientnet-lite0-57934424.pth", "efficientnet-lite2-9656183e.pth"] {
            try Data(deepPickle).write(to: weights.appendingPathComponent(name))
        }
        XCTAssertThrowsError(try TeacherSet.pretrained(teacher1: "efficientnet-lite0", teacher2: "efficientnet-lite2", weightsDirectory: weights)) { error in
            guard let error = error as? OperatorError else { return XCTFail("\(type(of: error)): \(error)") }
            XCTAssertEqual(error.kind, .malformed)
            XCTAssertTrue(error.path.hasSuffix("efficientnet-lite0-57934424.pth"), error.description)
            XCTAssertTrue(error.problem.contains("SHA-256") && error.problem.contains("57934424"), error.description)
        }
    }

    /// A bundle whose manifest decodes, with `configure` applied to its configuration and
    /// `threshold` as its threshold; its weights file is absent, which is only checked later.
    func bundle(threshold: Float = 0.5, _ configure: (inout [String: Any]) -> Void = { _ in }) throws -> URL {
        let directory = try temporaryDirectory()
        var configuration = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(RSTPMConfiguration())) as? [String: Any])
        configure(&configuration)
        let manifest = Self.craftedManifest(configuration: configuration, threshold: threshold)
        try JSONSerialization.data(withJSONObject: manifest).write(to: directory.appendingPathComponent("manifest.json"))
        return directory
    }

    /// Every field of a format-1 manifest (as rstpm wrote it before it recorded its version).
    static func craftedManifest(configuration: [String: Any], threshold: Float = 0.5) -> [String: Any] {
        let teachers = [["role": "T1", "kind": "efficientnet-lite0", "checkpointFile": "a.pth", "checkpointSHA256": "00"],
                        ["role": "T2", "kind": "efficientnet-lite2", "checkpointFile": "b.pth", "checkpointSHA256": "00"]]
        let manifest: [String: Any] = [
            "formatVersion": 1, "modelID": "hostile", "createdAt": "2026-01-01T00:00:00Z", "configuration": configuration,
            "teachers": teachers, "inputWidth": configuration["inputWidth"] ?? 256, "inputHeight": configuration["inputHeight"] ?? 256,
            "normalization": ["mean": ModelInput.mean.map(Double.init), "std": ModelInput.std.map(Double.init)],
            "threshold": ["value": threshold, "rule": "max-times-margin", "statement": "crafted"],
            "training": ["imageCount": 1, "trainingCount": 1, "validationCount": 1, "folder": "x", "fileListSHA256": "00",
                         "studentEpochs": 1, "discriminatorEpochs": 1, "seconds": 1],
            "validation": ["studentLoss": 1, "studentBestEpoch": 0, "discriminatorLoss": 1, "discriminatorBestEpoch": 0, "scoreMax": 1, "scoreMean": 1],
            "weightsSHA256": "00", "tensors": [String: [Int]](),
        ]
        return manifest
    }

    /// Reading the bundle must fail on the manifest, naming the manifest file and `field`.
    func assertRefused(_ bundle: URL, naming field: String, line: UInt = #line) {
        XCTAssertThrowsError(try ModelBundle.read(from: bundle), line: line) { error in
            guard let error = error as? OperatorError else { return XCTFail("\(type(of: error)): \(error)", line: line) }
            XCTAssertEqual(error.path, bundle.appendingPathComponent("manifest.json").path, error.description, line: line)
            XCTAssertTrue(error.problem.contains(field), "expected \(field) in: \(error.description)", line: line)
        }
    }

    func testCraftedManifestValuesAreRefusedNamingTheField() throws {
        // The untouched manifest gets past every check on the manifest, to the missing weights.
        XCTAssertThrowsError(try ModelBundle.read(from: try bundle())) { error in
            XCTAssertTrue("\(error)".contains("missing or unreadable weights"), "\(error)")
        }
        // Each of these crashed inference or the check itself (SIGFPE, allocation abort) or let
        // an input size through that aborted the daemon on its first image, at every restart.
        let cases: [(String, Any)] = [
            ("discriminatorDownscale", 0), ("discriminatorDownscale", -4), ("discriminatorLevels", 64), ("discriminatorLevels", -1),
            ("attentionHiddenChannels", 1_000_000_000), ("discriminatorBaseWidth", 1_000_000), ("paperResidualBlocks", 1_000_000),
            ("inputWidth", 100_000), ("inputHeight", 100_000), ("inputWidth", 0), ("batchSize", 0),
            ("studentLearningRate", -1), ("thresholdMargin", 0), ("thresholdQuantile", 2), ("validationFraction", 1),
        ]
        for (field, value) in cases {
            assertRefused(try bundle { $0[field] = value }, naming: field)
        }
    }

    func testThresholdsThatCannotSeparateAreRefused() throws {
        // -1 and 0 made every image a defect, 3e38 every image ok.
        for threshold: Float in [-1, 0, 3e38, BundleManifest.largestPossibleScore * 2] {
            assertRefused(try bundle(threshold: threshold), naming: "threshold")
        }
        XCTAssertNil(BundleManifest.thresholdProblem(0.37))
        XCTAssertNil(BundleManifest.thresholdProblem(BundleManifest.largestPossibleScore))
    }
}
