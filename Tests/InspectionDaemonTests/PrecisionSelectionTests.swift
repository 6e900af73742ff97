import Foundation
import InspectionDaemon
import RSTPM
import SystemPackage
import TensorEngine
import TestSupport
import XCTest

/// rstpmd runs each model in the fastest precision its accuracy check passed, where this CPU's
/// kernel set runs it, else f32; RSTPM_PRECISION wins. The verdict's model block, the
/// journal and `rstpmd_model_info` say which.
final class PrecisionSelectionTests: XCTestCase {
    /// A format-1 manifest with `bf16`'s record as given (nil: none, as before the check).
    private func manifest(bf16 check: PrecisionCheck?) throws -> BundleManifest {
        let configuration = try JSONSerialization.jsonObject(with: JSONEncoder().encode(RSTPMConfiguration()))
        var json: [String: Any] = [
            "formatVersion": 1, "modelID": "m", "createdAt": "2026-01-01T00:00:00Z", "configuration": configuration,
            "teachers": [["role": "T1", "kind": "efficientnet-lite0", "checkpointFile": "a.pth", "checkpointSHA256": "00"],
                         ["role": "T2", "kind": "efficientnet-lite2", "checkpointFile": "b.pth", "checkpointSHA256": "00"]],
            "inputWidth": 256, "inputHeight": 256, "normalization": ["mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]],
            "threshold": ["value": 0.5, "rule": "max-times-margin", "statement": "test"],
            "training": ["imageCount": 1, "trainingCount": 1, "validationCount": 1, "folder": "x", "fileListSHA256": "00",
                         "studentEpochs": 1, "discriminatorEpochs": 1, "seconds": 1],
            "validation": ["studentLoss": 1, "studentBestEpoch": 0, "discriminatorLoss": 1, "discriminatorBestEpoch": 0, "scoreMax": 1, "scoreMean": 1],
            "weightsSHA256": "00", "tensors": [String: [Int]](),
        ]
        if let check {
            json["precisions"] = ["bf16": try JSONSerialization.jsonObject(with: JSONEncoder().encode(check))]
        }
        return try JSONDecoder().decode(BundleManifest.self, from: JSONSerialization.data(withJSONObject: json))
    }

    private func check(passed: Bool) -> PrecisionCheck {
        PrecisionCheck(passed: passed, verdictAgreement: passed ? 1 : 0.98, maxRelativeScoreChange: 0.03, imageAUROCChange: 0,
                       pixelAUROCChange: 0.0001, normalImages: 21, checkedAt: "2026-12-03T09:00:00Z", rstpmVersion: nil)
    }

    func testF32WhereTheCheckFailedIsMissingOrTheKernelSetLacksTheInstructions() throws {
        let passed = try manifest(bf16: check(passed: true))
        let lacking = PrecisionChoice.choose(for: passed, operatorChoice: nil, kernelSet: .avx2)
        XCTAssertEqual(lacking.precision, .f32, lacking.reason)
        XCTAssertTrue(lacking.reason.contains("bf16 check passed but cannot run here"), lacking.reason)
        XCTAssertEqual(PrecisionChoice.choose(for: passed, operatorChoice: nil, kernelSet: .generic).precision, .f32)

        let failed = PrecisionChoice.choose(for: try manifest(bf16: check(passed: false)), operatorChoice: nil, kernelSet: .avx512)
        XCTAssertEqual(failed.precision, .f32, failed.reason)
        XCTAssertTrue(failed.reason.contains("bf16 check failed: verdicts agree on 98.0%"), failed.reason)

        let old = PrecisionChoice.choose(for: try manifest(bf16: nil), operatorChoice: nil, kernelSet: .avx512)
        XCTAssertEqual(old.precision, .f32, old.reason)
        XCTAssertTrue(old.reason.contains("bf16 not checked"), old.reason)

        let forced = PrecisionChoice.choose(for: passed, operatorChoice: .f32, kernelSet: .avx512)
        XCTAssertEqual(forced.precision, .f32)
        XCTAssertTrue(forced.reason.contains("RSTPM_PRECISION=f32"), forced.reason)
    }

    func testBFloat16WhereItsCheckPassedAndTheCPURunsIt() throws {
        if let problem = Precision.bf16.problem(on: .avx512) { throw XCTSkip("bf16 not checked: \(problem)") }
        let chosen = PrecisionChoice.choose(for: try manifest(bf16: check(passed: true)), operatorChoice: nil, kernelSet: .avx512)
        XCTAssertEqual(chosen.precision, .bf16, chosen.reason)
        XCTAssertTrue(chosen.reason.contains("bf16 check passed"), chosen.reason)
        let forced = PrecisionChoice.choose(for: try manifest(bf16: nil), operatorChoice: .bf16, kernelSet: .avx512)
        XCTAssertEqual(forced.precision, .bf16, "the operator's choice wins over a missing record")
    }

    func testTheVerdictsModelBlockCarriesThePrecision() throws {
        func modelBlock(_ identity: ModelIdentity) throws -> [String: Any] {
            let verdict = Verdict(file: "a.png", sha256: "00", size: .init(bytes: 1, width: 1, height: 1), receivedAt: "t", decidedAt: "t", line: "l",
                                  instance: "i", model: identity, verdict: .ok, score: 0.1, threshold: .init(value: 0.5, source: .model), regions: [],
                                  regionsTruncated: false, heatmap: nil, timingsMilliseconds: .init(decode: 0, infer: 0, heatmap: 0, write: 0), error: nil)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(verdict.encoded())) as? [String: Any])
            return try XCTUnwrap(json["model"] as? [String: Any])
        }
        XCTAssertEqual(try modelBlock(ModelIdentity(identifier: "m", version: "v", precision: "bf16"))["precision"] as? String, "bf16")
        let unknown = try modelBlock(ModelIdentity(identifier: "m", version: "v"))
        XCTAssertTrue(unknown["precision"] is NSNull, "every key is present: \(unknown)")
        // A verdict written before the field existed still reads.
        let old = try JSONDecoder().decode(ModelIdentity.self, from: Data(#"{"id": "m", "version": "v"}"#.utf8))
        XCTAssertNil(old.precision)
    }

    /// The real rstpmd on the tiny model, its bf16 record marked passed: bf16 by default, f32
    /// where the kernel set lacks bf16 (RSTPM_KERNELS=avx2) or RSTPM_PRECISION says f32. The
    /// verdict, the journal and the metric agree.
    func testRstpmdRunsTheCheckedPrecisionAndSaysSo() throws {
        if let problem = Precision.bf16.problem(on: .avx512) { throw XCTSkip("bf16 not checked: \(problem)") }
        let trained = try BinaryHarness.tinyModel()
        let folders = try LineFolders()
        defer { folders.remove() }
        // `rstpm train` recorded the check on this CPU; whatever the tiny model scored, mark it passed.
        let model = folders.root.appendingPathComponent("checked-model")
        try FileManager.default.copyItem(at: trained, to: model)
        let manifestURL = model.appendingPathComponent("manifest.json")
        var manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as? [String: Any])
        var record = try XCTUnwrap((manifest["precisions"] as? [String: Any])?["bf16"] as? [String: Any], "rstpm train records the bf16 check")
        XCTAssertNotNil(record["verdictAgreement"] as? Double)
        record["passed"] = true
        manifest["precisions"] = ["bf16": record]
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)

        let configuration = try BinaryHarness.writeConfiguration(folders, model: model)
        let image = try Data(contentsOf: BinaryHarness.bottle.appendingPathComponent("test/good/002.png"))
        for (index, (environment, expected, reason)) in [([String: String](), "bf16", "bf16 check passed"),
                                                         (["RSTPM_KERNELS": "avx2"], "f32", "cannot run here"),
                                                         (["RSTPM_PRECISION": "f32"], "f32", "RSTPM_PRECISION=f32")].enumerated() {
            let daemon = try DaemonProcess(configuration: configuration, folders: folders, environment: environment)
            let name = "\(index).png"
            try BinaryHarness.drop(image, as: name, into: folders)
            XCTAssertTrue(BinaryHarness.wait(seconds: 60) { BinaryHarness.verdict(name, in: folders) != nil }, daemon.output)
            XCTAssertEqual(daemon.stop(), 0, daemon.output)
            let verdict = try XCTUnwrap(BinaryHarness.verdict(name, in: folders))
            XCTAssertEqual((verdict["model"] as? [String: Any])?["precision"] as? String, expected, "\(environment): \(verdict)")
            let journal = daemon.output.split(separator: "\n").first { $0.contains("line-1: model") && $0.contains(" runs ") }.map(String.init) ?? ""
            XCTAssertTrue(journal.contains("runs \(expected): ") && journal.contains(reason), "\(environment): \(daemon.output)")
            let metrics = try String(contentsOfFile: folders.path("metrics/rstpmd.prom").string, encoding: .utf8)
            XCTAssertTrue(metrics.contains(#"precision="\#(expected)""#), "\(environment): \(metrics)")
        }
    }
}
