import Checkpoints
import Foundation
import TestSupport
import XCTest

final class SafeTensorsTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-safetensors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// A file with `header` (JSON text) and `data`, laid out as safetensors.
    func file(header: String, data: [UInt8]) -> [UInt8] {
        let json = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json + data
    }

    func testReadsAForeignFile() throws {
        let expected = try CheckpointFixtures.expected()
        let foreignKeys = try XCTUnwrap(expected.meta["foreign_keys"] as? [String])
        let (tensors, metadata) = try SafeTensors.read(contentsOf: CheckpointFixtures.url("foreign.stfix"))
        XCTAssertEqual(metadata, ["format": "pt", "source": "make_checkpoint_fixtures"])
        XCTAssertEqual(tensors.keys, foreignKeys)  // data order, not alphabetical
        for key in foreignKeys {
            XCTAssertEqual(tensors[key]?.shape, expected["st/" + key].shape, key)
            XCTAssertEqual(tensors[key]?.values, expected["st/" + key].values, key)
        }
        XCTAssertEqual(tensors["a.f16"]?.values, [0.5, -2, 65504, 6.1035156e-05])
        XCTAssertEqual(tensors["c.i64"]?.values, [-5, 0, 1_048_576])
    }

    func testRoundTripIsExact() throws {
        let tensors = StateDict([
            ("conv.weight", StoredTensor(shape: [2, 1, 2, 2], values: [1, -2, .pi, -0.0, 1e-38, 3e38, .leastNonzeroMagnitude, 7])),
            ("empty", StoredTensor(shape: [0, 3], values: [])),
            ("scalar", StoredTensor(shape: [], values: [-1.5])),
            ("name \"quoted\" \\ é\n", StoredTensor(shape: [3], values: [0.1, 0.2, 0.3])),
        ])
        let metadata = ["format": "pt", "note": "line\nbreak \"quoted\"", "": "empty key"]
        let url = folder.appendingPathComponent("round.safetensors")
        try SafeTensors.write(tensors, metadata: metadata, to: url)
        let (read, readMetadata) = try SafeTensors.read(contentsOf: url)
        XCTAssertEqual(read.keys, tensors.keys)
        for key in tensors.keys { XCTAssertEqual(read[key], tensors[key], key) }
        XCTAssertEqual(readMetadata, metadata)
        let bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0, "data section must start 8-byte aligned")
        XCTAssertEqual(bytes.count, 8 + headerLength + 4 * 12)
    }

    func testWriteReplacesAtomicallyAndLeavesNoTemporaryFile() throws {
        let url = folder.appendingPathComponent("model.safetensors")
        try SafeTensors.write([("a", StoredTensor(shape: [1], values: [1]))], metadata: [:], to: url)
        try SafeTensors.write([("b", StoredTensor(shape: [2], values: [2, 3]))], metadata: [:], to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["model.safetensors"])
        let (read, metadata) = try SafeTensors.read(contentsOf: url)
        XCTAssertEqual(read.keys, ["b"])
        XCTAssertEqual(metadata, [:])
    }

    func testWriteIntoAMissingFolderIsATypedError() {
        let url = folder.appendingPathComponent("missing/model.safetensors")
        assertCheckpointError(.writeFailed, path: url.path) { try SafeTensors.write([], metadata: [:], to: url) }
    }

    func testRejectsBadOffsets() {
        let eight = [UInt8](repeating: 0, count: 8)
        let cases: [(String, String, [UInt8])] = [
            ("overlap", #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, eight),
            ("gap", #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, eight),
            ("out of range", #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, eight),
            ("size mismatch", #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, eight),
            ("reversed", #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, eight),
            ("trailing bytes", #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, eight),
            ("negative shape", #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, eight),
            ("fractional offset", #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}"#, eight),
            ("not an object", #"[1,2]"#, eight),
            ("bad metadata", #"{"__metadata__":{"a":1}}"#, []),
        ]
        for (name, header, data) in cases {
            let error = assertCheckpointError(.malformed, path: name) { try SafeTensors.read(bytes: file(header: header, data: data), path: name) }
            XCTAssertNotNil(error, name)
        }
        assertCheckpointError(.unsupported, path: "dtype") {
            try SafeTensors.read(bytes: file(header: #"{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, data: [0]), path: "dtype")
        }
    }

    func testRejectsHeaderSizes() {
        var huge = withUnsafeBytes(of: UInt64(200_000_000).littleEndian, Array.init)
        huge += Array("{}".utf8)
        let error = assertCheckpointError(.malformed, path: "huge") { try SafeTensors.read(bytes: huge, path: "huge") }
        XCTAssertTrue(error?.problem.contains("limit") == true)
        assertCheckpointError(.truncated, path: "long") { try SafeTensors.read(bytes: withUnsafeBytes(of: UInt64(64).littleEndian, Array.init) + Array("{}".utf8), path: "long") }
        assertCheckpointError(.truncated, path: "short") { try SafeTensors.read(bytes: [1, 0, 0], path: "short") }
        assertCheckpointError(.malformed, path: "max") { try SafeTensors.read(bytes: [UInt8](repeating: 0xff, count: 8), path: "max") }
    }
}

final class SHA256Tests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(sha256Hex(of: []), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(sha256Hex(of: Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // "abcdbcde...nopq": 14 runs of four consecutive letters (448 bits, padding spills into a second block).
        let runs = (0..<14).flatMap { start in (0..<4).map { UInt8(ascii: "a") + UInt8(start + $0) } }
        XCTAssertEqual(sha256Hex(of: runs),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(sha256Hex(of: Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testFileInChunksMatchesTheMillionAVector() throws {
        // 1,000,000 'a' spans a chunk boundary only if chunks are smaller; write it twice over to cross one.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rstpm-sha-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(repeating: 0x61, count: 1_000_000).write(to: url)
        XCTAssertEqual(try sha256Hex(of: url), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        try Data(repeating: 0x61, count: (1 << 20) + 3).write(to: url)
        XCTAssertEqual(try sha256Hex(of: url), sha256Hex(of: [UInt8](repeating: 0x61, count: (1 << 20) + 3)))
        assertCheckpointError(.unreadable, path: url.path + ".missing") { try sha256Hex(of: URL(fileURLWithPath: url.path + ".missing")) }
    }
}
