import BuildInfo
import Foundation
import InspectionDaemon
import TestSupport
import XCTest

/// `--version` of both binaries, and the version recorded in verdicts and model manifests.
final class VersionTests: XCTestCase {
    func testBothBinariesPrintTheVersionAndTheCommitTheyWereBuiltFrom() throws {
        XCTAssertNotNil(RSTPMBuild.description.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$"#, options: .regularExpression),
                        RSTPMBuild.description)
        for name in ["rstpm", "rstpmd"] {
            guard let binary = Tools.builtExecutable(name) else { throw XCTSkip("\(name) is not built") }
            let (status, output) = try Tools.run(binary, ["--version"])
            XCTAssertEqual(status, 0, output)
            XCTAssertEqual(output, RSTPMBuild.description + "\n", name)
        }
        // Built from a checkout: the commit is one of its commits (not a made-up string).
        let repository = TestPaths.repositoryRoot.path
        let git = try Tools.run(URL(fileURLWithPath: "/bin/sh"), ["-c", "command -v git >/dev/null && git -C \"$1\" rev-parse --git-dir", "sh", repository])
        guard git.status == 0 else { return }
        let commit = try XCTUnwrap(RSTPMBuild.commit, "built in a git checkout, yet the commit is unknown")
        let hash = String(commit.prefix { $0 != "-" })
        let known = try Tools.run(URL(fileURLWithPath: "/bin/sh"), ["-c", "git -C \"$1\" cat-file -e \"$2^{commit}\"", "sh", repository, hash])
        XCTAssertEqual(known.status, 0, "\(hash) is not a commit of \(repository): \(known.output)")
    }

    func testVerdictsRecordTheVersionAndOldVerdictsStillDecode() throws {
        let verdict = Verdict(
            file: "a.png", sha256: "00", size: .init(bytes: 1, width: 1, height: 1), receivedAt: "t", decidedAt: "t", line: "l", instance: "i",
            model: ModelIdentity(identifier: "m", version: "v"), verdict: .ok, score: 0.1, threshold: .init(value: 0.5, source: .model), regions: [],
            regionsTruncated: false, heatmap: "a.png.heatmap.png", timingsMilliseconds: .init(decode: 0, infer: 0, heatmap: 0, write: 0), error: nil)
        var fields = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(verdict.encoded())) as? [String: Any])
        XCTAssertEqual(fields["rstpm_version"] as? String, RSTPMBuild.description)
        XCTAssertEqual(try JSONDecoder().decode(Verdict.self, from: Data(verdict.encoded())), verdict)
        // rstpmd reads verdicts back (processed_inputs: leave); those of older versions lack the key.
        fields["rstpm_version"] = nil
        let old = try JSONDecoder().decode(Verdict.self, from: JSONSerialization.data(withJSONObject: fields))
        XCTAssertNil(old.rstpmVersion)
        XCTAssertEqual(old.score, verdict.score)
    }

    func testTrainedManifestRecordsTheVersionAndABundleWithoutItStillInspects() throws {
        let model = try BinaryHarness.tinyModel()
        let manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("manifest.json"))) as? [String: Any])
        XCTAssertEqual(manifest["rstpmVersion"] as? String, RSTPMBuild.description)

        let folders = try LineFolders()
        defer { folders.remove() }
        let old = URL(fileURLWithPath: folders.path("old-model").string)
        try FileManager.default.copyItem(at: model, to: old)
        var stripped = manifest
        stripped["rstpmVersion"] = nil
        try JSONSerialization.data(withJSONObject: stripped).write(to: old.appendingPathComponent("manifest.json"))
        let image = BinaryHarness.bottle.appendingPathComponent("test/good/000.png")
        let (status, output) = try Tools.run(BinaryHarness.cliBinary, [
            "infer", "--model", old.path, "--out", folders.path("outbox").string, "--weights-dir", TestPaths.weightsDirectory.path, image.path,
        ])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folders.path("outbox/000.png.json").string), output)
    }
}
