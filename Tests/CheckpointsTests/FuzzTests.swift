import Checkpoints
import Foundation
import XCTest

/// SplitMix64: a fixed seed makes every failing case reproducible from its index.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
}

/// Randomized mutations of valid files: every input must either load or throw a CheckpointError
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

    func run(_ seeds: [(String, [UInt8])], cases: Int, seed: UInt64, load: ([UInt8], String) throws -> Void) -> (loaded: Int, refused: [CheckpointError.Kind: Int]) {
        var random = SplitMix64(state: seed)
        var loaded = 0
        var refused: [CheckpointError.Kind: Int] = [:]
        for index in 0..<cases {
            let (name, original) = seeds[index % seeds.count]
            let mutated = Self.mutate(original, &random)
            do {
                try load(mutated, "\(name)#\(index)")
                loaded += 1
            } catch let error as CheckpointError {
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
                     "malicious_zip.ptfix", "malicious_legacy.ptfix", "single_legacy.ptfix", "deflated_zip.ptfix"]
        let seeds = try names.map { ($0, try CheckpointFixtures.bytes($0)) }
        let (loaded, refused) = run(seeds, cases: 4000, seed: 0x5eed) { bytes, path in _ = try TorchCheckpoint.load(bytes: bytes, path: path) }
        print("torch fuzz: 4000 cases, \(loaded) loaded, refused \(refused)")
        XCTAssertGreaterThan(refused.values.reduce(0, +), 2000)
        XCTAssertGreaterThan(refused[.malformed, default: 0], 0)
        XCTAssertGreaterThan(refused[.truncated, default: 0], 0)
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
