import Checkpoints
import Foundation
import XCTest

/// One entry of a hand-built zip: its bytes as stored, and what the headers declare.
struct ZipTestEntry {
    var name: String
    var data: [UInt8]
    /// 0 stored, 8 deflate.
    var method: Int = 0
    var declaredSize: Int? = nil
    var crc: UInt32? = nil
    /// Sizes in a zip64 extra field (the 32-bit fields then hold 0xffffffff).
    var zip64 = false
}

/// A zip of `entries`, as torch.save or a wheel lays one out; headers say what the entries declare.
func handBuiltZip(_ entries: [ZipTestEntry]) -> [UInt8] {
    func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8 & 0xff)] }
    func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) } }
    func le64(_ value: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    var archive: [UInt8] = []
    var directory: [UInt8] = []
    for entry in entries {
        let name = Array(entry.name.utf8)
        let crc = entry.crc ?? FuzzTests.crc32(entry.data[...])
        let size = entry.declaredSize ?? entry.data.count
        let sizes = entry.zip64 ? le32(0xffff_ffff) + le32(0xffff_ffff) : le32(UInt32(entry.data.count)) + le32(UInt32(size))
        let extra = entry.zip64 ? le16(1) + le16(16) + le64(size) + le64(entry.data.count) : []
        let offset = le32(UInt32(archive.count))
        archive += le32(0x0403_4b50) + le16(45) + le16(0) + le16(entry.method) + le16(0) + le16(0) + le32(crc) + sizes + le16(name.count) + le16(extra.count) + name + extra + entry.data
        directory += le32(0x0201_4b50) + le16(45) + le16(45) + le16(0) + le16(entry.method) + le16(0) + le16(0) + le32(crc) + sizes
            + le16(name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0) + offset + name + extra
    }
    let directoryOffset = archive.count
    archive += directory
    archive += le32(0x0605_4b50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count)
        + le32(UInt32(directory.count)) + le32(UInt32(directoryOffset)) + le16(0)
    return archive
}

/// A stored (uncompressed) zip of the given entries, as torch.save lays one out.
func storedZip(_ entries: [(name: String, bytes: [UInt8])]) -> [UInt8] {
    handBuiltZip(entries.map { ZipTestEntry(name: $0.name, data: $0.bytes) })
}

/// Raw DEFLATE (fixed Huffman codes) of `count` zero bytes: one literal, then matches of 258
/// at distance 1. About 13 bits per 258 bytes: a real bomb, built without zlib.
func deflatedZeros(count: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    var accumulator: UInt32 = 0
    var filled: UInt32 = 0
    func bits(_ value: UInt32, _ count: UInt32) {  // LSB first: header fields
        accumulator |= value << filled
        filled += count
        while filled >= 8 {
            bytes.append(UInt8(accumulator & 0xff))
            accumulator >>= 8
            filled -= 8
        }
    }
    func code(_ value: UInt32, _ length: UInt32) {  // Huffman codes go MSB first
        for bit in (0..<length).reversed() { bits((value >> bit) & 1, 1) }
    }
    bits(1, 1)  // BFINAL
    bits(1, 2)  // BTYPE 01: fixed codes
    var left = count
    if left > 0 {
        code(0x30, 8)  // literal 0
        left -= 1
    }
    while left >= 258 {
        code(0xc5, 8)  // length code 285 = 258
        code(0, 5)  // distance code 0 = 1
        left -= 258
    }
    for _ in 0..<left { code(0x30, 8) }
    code(0, 7)  // end of block
    if filled > 0 { bytes.append(UInt8(accumulator & 0xff)) }
    return bytes
}

/// The checkpoints an attacker builds: each must end in a CheckpointError, never a crash.
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
        XCTAssertTrue(zipError?.reason.contains("deeper than") ?? false, "\(String(describing: zipError))")
        let legacyError = assertCheckpointError(.malformed, path: "deep-legacy.pth") { try TorchCheckpoint.load(bytes: pickle, path: "deep-legacy.pth") }
        XCTAssertTrue(legacyError?.reason.contains("deeper than") ?? false, "\(String(describing: legacyError))")
    }

    func testNestingJustUnderTheLimitStillParses() throws {
        // 999 tuples around an int are legal pickle: refused only because they are not a state_dict.
        let pickle = Self.deepTuplePickle(depth: 999)
        let error = assertCheckpointError(.malformed, path: "shallow.pth") { try TorchCheckpoint.load(bytes: storedZip([("s/data.pkl", pickle)]), path: "shallow.pth") }
        XCTAssertTrue(error?.reason.contains("not a dictionary of tensors") ?? false, "\(String(describing: error))")
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
        XCTAssertTrue(error?.reason.contains("not a dictionary of tensors") ?? false, "\(String(describing: error))")
    }

    /// Structured mutations that plain bit flips never reach: runs of nesting opcodes (TUPLE1,
    /// MARK + TUPLE, EMPTY_LIST + APPEND) and declared lengths at their edges, spliced into real
    /// pickles. Before the depth limit, the first nesting run of a few thousand crashed the
    /// process; every case must now end in a CheckpointError or a load.
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
            } catch let error as CheckpointError {
                refused += 1
                if error.reason.contains("deeper than") { refusedForDepth += 1 }
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
                                             crc: FuzzTests.crc32(zeros[...]))])
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
            XCTAssertTrue(error?.reason.contains("declares \(declared) bytes") ?? false, "\(String(describing: error))")
        }
    }

    func testDeclaredSizeBeyondWhatTheCompressedBytesHoldIsRefused() throws {
        // 500 MB from 130 bytes is past DEFLATE's 1032:1.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ratio-\(UUID().uuidString).whl")
        try Data(handBuiltZip([ZipTestEntry(name: "models/a.pth", data: deflatedZeros(count: 1000), method: 8, declaredSize: 500_000_000)])).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let error = assertCheckpointError(.malformed, path: url.path) { try ZipFile(contentsOf: url) }
        XCTAssertTrue(error?.reason.contains("compressed bytes can inflate to") ?? false, "\(String(describing: error))")
    }

    func testEntryInflatingPastItsDeclaredSizeStopsThere() throws {
        // 50 MB of zeros (about 40 KB compressed) declared as 100 KB: inflation stops after the
        // first MiB step instead of following the data.
        let file = try zipFile([ZipTestEntry(name: "models/a.pth", data: deflatedZeros(count: 50_000_000), method: 8, declaredSize: 100_000)])
        let error = assertCheckpointError(.malformed, path: file.path) { try file.contents(of: "models/a.pth") }
        XCTAssertTrue(error?.reason.contains("inflates past its declared 100000 bytes") ?? false, "\(String(describing: error))")
    }
}
