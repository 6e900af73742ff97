import Checkpoints
import Foundation
import OperatorErrors
import TestSupport
import XCTest

/// The checkpoints an attacker builds: each must end in an OperatorError, never a crash.
final class HostileCheckpointTests: XCTestCase {
    /// `\x80\x02K\x01`, `depth` TUPLE1 opcodes, STOP: a 50 KB file that nests 50,000 tuples.
    static func deepTuplePickle(depth: Int) -> [UInt8] {
        [0x80, 0x02, 0x4b, 0x01] + [UInt8](repeating: 0x85, count: depth) + [0x2e]
    }

    func testDeeplyNestedTuplesAreRefusedNotACrash() throws {
        // Before the depth limit, tearing the 50,000-deep value down overflowed the stack (SIGSEGV).
        let pickle = Self.deepTuplePickle(depth: 50_000)
        let zip = storedZip([("deep/data.pkl", pickle)])
        let zipError = assertCheckpointError(.malformed, path: "deep.pth") { try TorchCheckpoint.load(bytes: zip, path: "deep.pth") }
        XCTAssertTrue(zipError?.problem.contains("deeper than") ?? false, "\(String(describing: zipError))")
        let legacyError = assertCheckpointError(.malformed, path: "deep-legacy.pth") { try TorchCheckpoint.load(bytes: pickle, path: "deep-legacy.pth") }
        XCTAssertTrue(legacyError?.problem.contains("deeper than") ?? false, "\(String(describing: legacyError))")
    }

    func testNestingJustUnderTheLimitStillParses() throws {
        // 999 tuples around an int are legal pickle: refused only because they are not a state_dict.
        let pickle = Self.deepTuplePickle(depth: 999)
        let error = assertCheckpointError(.malformed, path: "shallow.pth") { try TorchCheckpoint.load(bytes: storedZip([("s/data.pkl", pickle)]), path: "shallow.pth") }
        XCTAssertTrue(error?.problem.contains("not a dictionary of tensors") ?? false, "\(String(describing: error))")
    }

    func testListChainBuiltThroughTheMemoTearsDownWithoutRecursion() throws {
        // Each step appends a fresh list to the previous one, fetched from the memo, so no depth
        // is ever visible on the stack: 200,000 nested lists that only an iterative teardown survives.
        var pickle: [UInt8] = [0x80, 0x02, 0x5d, 0x94]  // EMPTY_LIST, MEMOIZE (key 0)
        let steps = 200_000
        for key in 0..<steps {
            let index = UInt32(key)
            pickle += [0x6a] + (0..<4).map { UInt8(truncatingIfNeeded: index >> (8 * UInt32($0))) }  // LONG_BINGET key
            pickle += [0x5d, 0x94, 0x61, 0x30]  // EMPTY_LIST, MEMOIZE, APPEND, POP
        }
        pickle += [0x2e]  // STOP: the outermost list is the value
        let error = assertCheckpointError(.malformed, path: "chain.pth") { try TorchCheckpoint.load(bytes: storedZip([("c/data.pkl", pickle)]), path: "chain.pth") }
        XCTAssertTrue(error?.problem.contains("not a dictionary of tensors") ?? false, "\(String(describing: error))")
    }

    /// Structured mutations that plain bit flips never reach: runs of nesting opcodes (TUPLE1,
    /// MARK + TUPLE, EMPTY_LIST + APPEND) and declared lengths at their edges, spliced into real
    /// pickles. Before the depth limit, the first nesting run of a few thousand crashed the
    /// process; every case must now end in an OperatorError or a load.
    func testNestingAndSizeMutationsFailWithTypedErrors() throws {
        let seeds = try ["state_legacy.ptfix", "nested_legacy.ptfix", "single_legacy.ptfix"].map { try CheckpointFixtures.bytes($0) }
        var random = SplitMix64(state: 0xdee9)
        var refusedForDepth = 0
        var refused = 0
        let started = Date()
        for index in 0..<600 {
            var bytes = seeds[index % seeds.count]
            // Within the first pickles (magic, protocol, sys_info, then the state_dict's start).
            let position = 2 + random.below(min(bytes.count - 3, 300))
            switch random.below(4) {
            case 0: bytes.insert(contentsOf: [UInt8](repeating: 0x85, count: 500 + random.below(60_000)), at: position)
            case 1:
                let count = 1 + random.below(20_000)
                bytes.insert(contentsOf: [UInt8](repeating: 0x28, count: count) + [0x4b, 0x01] + [UInt8](repeating: 0x74, count: count), at: position)
            case 2:
                let count = 1 + random.below(20_000)
                bytes.insert(contentsOf: [UInt8](repeating: 0x5d, count: count) + [UInt8](repeating: 0x61, count: count - 1), at: position)
            default:
                let edges: [[UInt8]] = [[0xff, 0xff, 0xff, 0x7f], [0, 0, 0, 0, 0, 0, 0, 0x40], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]]
                let edge = edges[random.below(edges.count)]
                for (offset, byte) in edge.enumerated() where position + offset < bytes.count { bytes[position + offset] = byte }
            }
            do {
                _ = try TorchCheckpoint.load(bytes: bytes, path: "mutation#\(index)")
            } catch let error as OperatorError {
                refused += 1
                if error.problem.contains("deeper than") { refusedForDepth += 1 }
            }
        }
        print("nesting/size mutations: 600 cases in \(String(format: "%.1f", Date().timeIntervalSince(started))) s, \(refused) refused, \(refusedForDepth) for depth")
        XCTAssertGreaterThan(refusedForDepth, 50, "the mutations must reach the deep-nesting case")
    }

    // MARK: wheels and zips that lie about their sizes

    func zipFile(_ entries: [ZipTestEntry]) throws -> ZipFile {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID().uuidString).whl")
        try Data(handBuiltZip(entries)).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return try ZipFile(contentsOf: url)
    }

    func testHonestDeflateEntryInflates() throws {
        let zeros = [UInt8](repeating: 0, count: 300_000)
        let file = try zipFile([ZipTestEntry(name: "models/a.pth", data: deflatedZeros(count: zeros.count), method: 8, declaredSize: zeros.count,
                                             crc: crc32(zeros[...]))])
        XCTAssertEqual(try file.contents(of: "models/a.pth"), zeros)
    }

    func testDeclaredSizesPastTheLimitAreRefusedBeforeAnyAllocation() throws {
        // 2^62 in a zip64 field aborted on allocation; 1.5 GiB grew to 1.6 GB of memory first.
        let data = deflatedZeros(count: 1000)
        for (declared, zip64) in [(1 << 62, true), (3 << 29, false), (Int(UInt32.max) - 1, false)] {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("declared-\(declared).whl")
            try Data(handBuiltZip([ZipTestEntry(name: "models/a.pth", data: data, method: 8, declaredSize: declared, zip64: zip64)])).write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            let error = assertCheckpointError(.unsupported, path: url.path) { try ZipFile(contentsOf: url) }
            XCTAssertTrue(error?.problem.contains("declares \(declared) bytes") ?? false, "\(String(describing: error))")
        }
    }

    func testDeclaredSizeBeyondWhatTheCompressedBytesHoldIsRefused() throws {
        // 500 MB from 130 bytes is past DEFLATE's 1032:1.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ratio-\(UUID().uuidString).whl")
        try Data(handBuiltZip([ZipTestEntry(name: "models/a.pth", data: deflatedZeros(count: 1000), method: 8, declaredSize: 500_000_000)])).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let error = assertCheckpointError(.malformed, path: url.path) { try ZipFile(contentsOf: url) }
        XCTAssertTrue(error?.problem.contains("compressed bytes can inflate to") ?? false, "\(String(describing: error))")
    }

    func testEntryInflatingPastItsDeclaredSizeStopsThere() throws {
        // 50 MB of zeros (about 40 KB compressed) declared as 100 KB: inflation stops after the
        // first MiB step instead of following the data.
        let file = try zipFile([ZipTestEntry(name: "models/a.pth", data: deflatedZeros(count: 50_000_000), method: 8, declaredSize: 100_000)])
        let error = assertCheckpointError(.malformed, path: file.path) { try file.contents(of: "models/a.pth") }
        XCTAssertTrue(error?.problem.contains("inflates past its declared 100000 bytes") ?? false, "\(String(describing: error))")
    }

    // MARK: files that are not files

    func testHashingRefusesWhatIsNotARegularFileInsteadOfHanging() throws {
        // A teacher or bundle weights file that was a FIFO or a link to /dev/zero hung rstpmd's
        // start and --check-config (found by the adversarial corpus): opening a FIFO waits for a
        // writer, and /dev/zero never ends.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("not-regular-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("folder.pth"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertEqual(mkfifo(folder.appendingPathComponent("fifo.pth").path, 0o644), 0)
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("zero.pth"), withDestinationURL: URL(fileURLWithPath: "/dev/zero"))
        /// Set by the hashing thread before it signals.
        final class Outcome: @unchecked Sendable { var result: Result<String, Error>? }
        for name in ["fifo.pth", "zero.pth", "folder.pth"] {
            let url = folder.appendingPathComponent(name)
            // On another thread, so that a regression fails the test instead of hanging it.
            let done = DispatchSemaphore(value: 0), outcome = Outcome()
            DispatchQueue.global().async {
                outcome.result = Result { try sha256Hex(of: url) }
                done.signal()
            }
            guard done.wait(timeout: .now() + 10) == .success else {
                XCTFail("\(name): hashing did not end")
                continue
            }
            let error = assertCheckpointError(.unreadable, path: url.path) { try outcome.result!.get() }
            XCTAssertTrue(error?.problem.contains("not a regular file") ?? false, "\(name): \(String(describing: error))")
        }
    }
}
