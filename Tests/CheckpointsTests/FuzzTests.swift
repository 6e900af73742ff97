import Checkpoints
import Foundation
import OperatorErrors
import TestSupport
import XCTest

/// Randomized mutations of valid files: every input must either load or throw an OperatorError
/// (a crash, a hang or another error type fails the run).
final class FuzzTests: XCTestCase {
    /// Opcodes the unpickler knows plus a few it must refuse, to splice into pickles.
    static let opcodes: [UInt8] = Array("(.0123GJKMNQRTUXabcdeghjlqrstu}])".utf8) + [0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x93, 0x94, 0x95, 0x8f, 0xff]

    static func mutate(_ original: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
        var bytes = original
        let rounds = 1 + random.below(4)
        for _ in 0..<rounds {
            guard !bytes.isEmpty else { break }
            switch random.below(7) {
            case 0:  // flip a bit
                bytes[random.below(bytes.count)] ^= UInt8(1) << UInt8(random.below(8))
            case 1:  // truncate
                bytes.removeLast(random.below(bytes.count))
            case 2:  // insert random bytes
                let count = 1 + random.below(8)
                bytes.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: random.below(bytes.count + 1))
            case 3:  // splice in an opcode
                bytes.insert(opcodes[random.below(opcodes.count)], at: random.below(bytes.count + 1))
            case 4:  // overwrite with an opcode
                bytes[random.below(bytes.count)] = opcodes[random.below(opcodes.count)]
            case 5:  // interesting integers: sizes and lengths at their edges
                let position = random.below(bytes.count)
                let edges: [UInt8] = [0xff, 0x7f, 0x80, 0x00]
                let edge = edges[random.below(edges.count)]
                let end = min(bytes.count, position + 1 + random.below(8))
                for index in position..<end { bytes[index] = edge }
            default:  // duplicate a chunk
                let start = random.below(bytes.count)
                let chunk = bytes[start..<min(bytes.count, start + 1 + random.below(64))]
                bytes.insert(contentsOf: chunk, at: random.below(bytes.count + 1))
            }
        }
        return bytes
    }

    func run(_ seeds: [(String, [UInt8])], cases: Int, seed: UInt64, load: ([UInt8], String) throws -> Void) -> (loaded: Int, refused: [OperatorError.Kind: Int]) {
        var random = SplitMix64(state: seed)
        var loaded = 0
        var refused: [OperatorError.Kind: Int] = [:]
        for index in 0..<cases {
            let (name, original) = seeds[index % seeds.count]
            let mutated = Self.mutate(original, &random)
            do {
                try load(mutated, "\(name)#\(index)")
                loaded += 1
            } catch let error as OperatorError {
                XCTAssertEqual(error.path, "\(name)#\(index)")
                refused[error.kind, default: 0] += 1
            } catch {
                XCTFail("case \(index) of \(name) (seed \(seed)) threw \(type(of: error)): \(error)")
            }
        }
        return (loaded, refused)
    }

    func testMutatedTorchCheckpointsFailWithTypedErrors() throws {
        let names = ["state_zip.ptfix", "state_legacy.ptfix", "nested_zip.ptfix", "nested_legacy.ptfix",
                     "malicious_zip.ptfix", "malicious_legacy.ptfix", "single_legacy.ptfix", "deflated_zip.ptfix",
                     "zip64_zip.ptfix", "parameter_zip.ptfix"]
        let seeds = try names.map { ($0, try CheckpointFixtures.bytes($0)) }
        let (loaded, refused) = run(seeds, cases: 4000, seed: 0x5eed) { bytes, path in _ = try TorchCheckpoint.load(bytes: bytes, path: path) }
        print("torch fuzz: 4000 cases, \(loaded) loaded, refused \(refused)")
        XCTAssertGreaterThan(refused.values.reduce(0, +), 2000)
        XCTAssertGreaterThan(refused[.malformed, default: 0], 0)
        XCTAssertGreaterThan(refused[.truncated, default: 0], 0)
    }

    /// Mutates only the bytes of `<folder>/data.pkl` in place and rewrites its CRC-32 in both
    /// headers, so the mutated pickle gets past the zip layer to the unpickler.
    func testMutatedPicklesInsideZipFailWithTypedErrors() throws {
        let original = try CheckpointFixtures.bytes("state_zip.ptfix")
        // data.pkl is the first entry: local header at 0, data after its name and extra field.
        let nameLength = Int(original[26]) | Int(original[27]) << 8
        let extraLength = Int(original[28]) | Int(original[29]) << 8
        XCTAssertEqual(String(decoding: original[30..<(30 + nameLength)], as: UTF8.self), "state_zip/data.pkl")
        // torch writes data descriptors, so the size is in the (first) central directory entry.
        let central = try XCTUnwrap((0..<(original.count - 4)).first { original[$0..<($0 + 4)] == [0x50, 0x4b, 0x01, 0x02] })
        XCTAssertEqual(String(decoding: original[(central + 46)..<(central + 46 + nameLength)], as: UTF8.self), "state_zip/data.pkl")
        let size = original[(central + 24)..<(central + 28)].reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertGreaterThan(size, 1000)
        let pickle = (30 + nameLength + extraLength)..<(30 + nameLength + extraLength + size)
        var random = SplitMix64(state: 0x21b)
        var loaded = 0
        var refused: [OperatorError.Kind: Int] = [:]
        for index in 0..<1500 {
            var bytes = original
            for _ in 0..<(1 + random.below(3)) {
                let position = pickle.lowerBound + random.below(pickle.count)
                if random.below(2) == 0 {
                    bytes[position] ^= UInt8(1) << UInt8(random.below(8))
                } else {
                    bytes[position] = Self.opcodes[random.below(Self.opcodes.count)]
                }
            }
            let crc = crc32(bytes[pickle])
            for headerCRC in [14, central + 16] {
                for byte in 0..<4 { bytes[headerCRC + byte] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(byte))) }
            }
            do {
                _ = try TorchCheckpoint.load(bytes: bytes, path: "zip#\(index)")
                loaded += 1
            } catch let error as OperatorError {
                XCTAssertFalse(error.problem.contains("CRC"), "case \(index): CRC fix-up failed: \(error)")
                refused[error.kind, default: 0] += 1
            } catch {
                XCTFail("case \(index) threw \(type(of: error)): \(error)")
            }
        }
        print("zip pickle fuzz: 1500 cases, \(loaded) loaded, refused \(refused)")
        XCTAssertGreaterThan(refused.values.reduce(0, +), 500)
    }

    func testMutatedSafeTensorsFailWithTypedErrors() throws {
        let written = SafeTensors.encode([
            ("w", StoredTensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])),
            ("b", StoredTensor(shape: [2], values: [-1, 1])),
            ("s", StoredTensor(shape: [], values: [9])),
        ], metadata: ["format": "pt"])
        let seeds = [("encoded", written), ("foreign.stfix", try CheckpointFixtures.bytes("foreign.stfix"))]
        let (loaded, refused) = run(seeds, cases: 2000, seed: 0xfeed) { bytes, path in _ = try SafeTensors.read(bytes: bytes, path: path) }
        print("safetensors fuzz: 2000 cases, \(loaded) loaded, refused \(refused)")
        XCTAssertGreaterThan(refused.values.reduce(0, +), 1000)
    }
}
