import Foundation

/// A named set of float32 tensors written by `scripts/fixtures/tensorfile.py`.
///
/// File layout (little-endian): 8-byte header length `n`, `n` bytes of JSON
/// `{"format": "rstpm-fixture", "version": V, "meta": {...}, "tensors": {name: {"shape": [...], "offset": o}}}`,
/// then the float32 data; `offset` counts floats from the start of the data.
public struct TensorFixture {
    public struct Entry {
        public let shape: [Int]
        public let values: [Float]
    }

    public let version: Int
    public let meta: [String: Any]
    public let tensors: [String: Entry]

    public init(named name: String) throws {
        try self.init(contentsOf: TestPaths.fixtures.appendingPathComponent(name))
    }

    public init(contentsOf url: URL) throws {
        let data = try Data(contentsOf: url)
        guard data.count >= 8 else { throw FixtureError.malformed(url, "shorter than its header length") }
        let headerLength = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength > 0, 8 + headerLength <= data.count else { throw FixtureError.malformed(url, "header length \(headerLength) out of range") }
        guard let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any],
              header["format"] as? String == "rstpm-fixture",
              let version = header["version"] as? Int,
              let entries = header["tensors"] as? [String: [String: Any]]
        else { throw FixtureError.malformed(url, "not an rstpm-fixture header") }
        let payload = data.subdata(in: (8 + headerLength)..<data.count)
        let floatCount = payload.count / 4
        var tensors: [String: Entry] = [:]
        for (name, entry) in entries {
            guard let shape = entry["shape"] as? [Int], let offset = entry["offset"] as? Int else {
                throw FixtureError.malformed(url, "entry \(name) lacks shape or offset")
            }
            let count = shape.reduce(1, *)
            guard offset >= 0, offset + count <= floatCount else { throw FixtureError.malformed(url, "entry \(name) runs past the data") }
            let values = payload.withUnsafeBytes { raw -> [Float] in
                (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * (offset + $0), as: UInt32.self))) }
            }
            tensors[name] = Entry(shape: shape, values: values)
        }
        self.version = version
        self.meta = header["meta"] as? [String: Any] ?? [:]
        self.tensors = tensors
    }

    public subscript(name: String) -> Entry {
        guard let entry = tensors[name] else { preconditionFailure("fixture has no tensor \(name); it has \(tensors.keys.sorted())") }
        return entry
    }
}

public enum FixtureError: Error, CustomStringConvertible {
    case malformed(URL, String)
    public var description: String {
        switch self {
        case .malformed(let url, let why): return "\(url.path): malformed fixture: \(why) (regenerate it with scripts/fixtures/)"
        }
    }
}

/// Largest absolute difference between two arrays, relative to the largest magnitude of `expected`
/// (the measure the parity tests print and bound).
public func maxRelativeDifference(_ actual: [Float], _ expected: [Float]) -> Float {
    precondition(actual.count == expected.count, "compared arrays differ in length: \(actual.count) vs \(expected.count)")
    var maxDifference: Float = 0, maxMagnitude: Float = 0
    for i in 0..<actual.count {
        maxDifference = max(maxDifference, abs(actual[i] - expected[i]))
        maxMagnitude = max(maxMagnitude, abs(expected[i]))
    }
    return maxMagnitude > 0 ? maxDifference / maxMagnitude : maxDifference
}
