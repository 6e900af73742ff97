import Backbones
import Foundation
import Imaging
import RSTPM
import TensorEngine
import TestSupport
import XCTest

/// ImageNet sanity of the real weights through the whole pipeline (decode, resize, normalise, network).
final class ClassificationTests: XCTestCase {
    static let catClasses = 281...285
    static let coffeeClasses = 967...968

    func image(_ name: String) -> URL {
        TestPaths.sharedDatasets.appendingPathComponent("imagenet_samples/\(name)")
    }

    func testLiteBackbonesRecogniseTheCatAndTheCoffee() throws {
        for kind in [BackboneKind.efficientNetLite0, .efficientNetLite1, .efficientNetLite2] {
            let backbone = try Backbone.pretrained(kind: kind, checkpoint: checkpointURL(kind))
            backbone.setMode(.inference)
            backbone.foldBatchNorm()
            let size = kind.nativeResolution
            for (name, expected) in [("chelsea.png", Self.catClasses), ("coffee.png", Self.coffeeClasses)] {
                let input = try ModelInput.prepare(ImageDecoder.read(image(name)), name: name, width: size, height: size)
                let top = topClasses(logits: backbone.logits(ModelInput.batch([input])).scalars, count: 5)
                print("\(kind.rawValue) \(name): top-1 \(top[0].index) \(imageNetClassNames[top[0].index]) p=\(top[0].probability)")
                XCTAssertTrue(expected.contains(top[0].index), "\(kind.rawValue) \(name): top-1 \(top[0].index), expected \(expected)")
            }
        }
    }

    func testClassifyCommandPrintsACatFirst() throws {
        _ = try checkpointURL(.efficientNetLite0)
        let output = try runRSTPM(["classify", "--backbone", "efficientnet-lite0", image("chelsea.png").path])
        XCTAssertEqual(output.status, 0, output.text)
        let firstRank = output.text.split(separator: "\n").first { $0.contains("1. ") }
        let index = firstRank.flatMap { Int($0.split(separator: " ")[1]) }
        XCTAssertTrue(index.map { Self.catClasses.contains($0) } ?? false, output.text)
    }

    func testWeightsFetchRefusesAFileWhoseHashDoesNotMatchItsName() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-weights-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("src/efficientnet-lite0-57934424.pth")
        try FileManager.default.createDirectory(at: source.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("not the checkpoint".utf8).write(to: source)
        let target = folder.appendingPathComponent("weights")
        let output = try runRSTPM(["weights", "fetch", "--dir", target.path, "--from", source.path])
        XCTAssertNotEqual(output.status, 0, output.text)
        XCTAssertTrue(output.text.contains("SHA-256"), output.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target.appendingPathComponent(source.lastPathComponent).path))
    }

    /// A folder given to --from said "NSCocoaErrorDomain error 256".
    func testWeightsFetchFromAFolderSaysWhatIsWrong() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-weights-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("efficientnet-lite0-57934424.pth")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        let output = try runRSTPM(["weights", "fetch", "--dir", folder.appendingPathComponent("weights").path, "--from", source.path])
        XCTAssertNotEqual(output.status, 0, output.text)
        XCTAssertTrue(output.text.contains("not a regular file"), output.text)
        XCTAssertFalse(output.text.contains("NSCocoaErrorDomain"), output.text)
    }

    func testWeightsDirectoryResolutionOrder() {
        XCTAssertEqual(WeightsDirectory.resolve(override: "/x", environment: ["RSTPM_WEIGHTS": "/y"]).path, "/x")
        XCTAssertEqual(WeightsDirectory.resolve(override: nil, environment: ["RSTPM_WEIGHTS": "/y", "XDG_DATA_HOME": "/z"]).path, "/y")
        XCTAssertEqual(WeightsDirectory.resolve(override: nil, environment: ["XDG_DATA_HOME": "/z"]).path, "/z/rstpm/weights")
        XCTAssertEqual(WeightsDirectory.expectedHashPrefix(fileName: "resnet18-f37072fd.pth"), "f37072fd")
        XCTAssertNil(WeightsDirectory.expectedHashPrefix(fileName: "model.pth"))
    }

    /// Runs the built `rstpm` (beside the test bundle in .build/release) and captures its output.
    func runRSTPM(_ arguments: [String]) throws -> (status: Int32, text: String) {
        guard let binary = Tools.builtExecutable("rstpm") else {
            XCTFail("rstpm is not built: run `swift build -c release` first")
            throw XCTSkip("no rstpm binary")
        }
        let result = try Tools.run(binary, arguments)
        return (result.status, result.output)
    }
}
