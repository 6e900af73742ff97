import Foundation
import OperatorErrors
#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let systemWrite = Darwin.write
#endif

/// The safetensors format: u64 little-endian header length, a JSON header
/// `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}`, then
/// the tensor bytes. Reads F32/F16/BF16/F64/I64 (and the other integer types) into Float32;
/// writes F32.
///
/// Reading is as strict as the reference implementation: the header must be at most 100 MB,
/// every tensor's byte range must match its dtype and shape, and the ranges must tile the data
/// section exactly (no gaps, no overlaps, nothing after). Keys come out in data order.
public enum SafeTensors {
    static let headerLimit = 100_000_000

    public static func read(contentsOf url: URL) throws -> (tensors: StateDict, metadata: [String: String]) {
        try read(bytes: readFileBytes(url), path: url.path)
    }

    /// Parses safetensors bytes already in memory; `path` names them in errors.
    public static func read(bytes: [UInt8], path: String) throws -> (tensors: StateDict, metadata: [String: String]) {
        try withPath(path) { try parse(bytes) }
    }

    /// Writes `tensors` as F32, in their order, atomically: a temporary file in the same folder,
    /// fsync, then rename over `url` (and fsync of the folder), so readers never see half a file.
    public static func write(_ tensors: StateDict, metadata: [String: String], to url: URL) throws {
        try write(tensors.keys.map { ($0, tensors[$0]!) }, metadata: metadata, to: url)
    }

    /// Ordered pairs; names must be unique.
    public static func write(_ tensors: [(String, StoredTensor)], metadata: [String: String], to url: URL) throws {
        try writeAtomically(encode(tensors, metadata: metadata), to: url)
    }

    /// The file's bytes for `tensors` and `metadata`.
    public static func encode(_ tensors: [(String, StoredTensor)], metadata: [String: String]) -> [UInt8] {
        precondition(Set(tensors.map(\.0)).count == tensors.count, "duplicate tensor names")
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for (name, tensor) in tensors {
            precondition(name != "__metadata__", "a tensor may not be named __metadata__")
            let end = offset + 4 * tensor.values.count
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array("{\(fields.joined(separator: ","))}".utf8)
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: header)
        for (_, tensor) in tensors {
            for value in tensor.values {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
            }
        }
        return bytes
    }

    private static func parse(_ bytes: [UInt8]) throws -> (tensors: StateDict, metadata: [String: String]) {
        var reader = ByteReader(bytes, context: "safetensors header")
        let headerLength = try reader.size64()
        guard headerLength <= headerLimit else { throw FormatFailure.malformed("header length \(headerLength) exceeds the \(headerLimit)-byte limit") }
        let headerRange = try reader.take(headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[headerRange])) as? [String: Any] else {
            throw FormatFailure.malformed("header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        if let raw = header["__metadata__"] {
            guard let values = raw as? [String: String] else { throw FormatFailure.malformed("__metadata__ is not a map of strings to strings") }
            metadata = values
        }
        let dataStart = headerRange.upperBound
        let dataCount = bytes.count - dataStart

        struct Entry {
            let name: String
            let type: ElementType
            let shape: [Int]
            let range: Range<Int>
        }
        var entries: [Entry] = []
        for (name, raw) in header where name != "__metadata__" {
            guard let fields = raw as? [String: Any], let code = fields["dtype"] as? String,
                  let shape = integers(fields["shape"]), let offsets = integers(fields["data_offsets"]), offsets.count == 2
            else { throw FormatFailure.malformed("entry \(name) lacks a dtype, shape or data_offsets pair") }
            guard let type = ElementType(safetensors: code) else {
                throw FormatFailure(kind: .unsupported, reason: "tensor \(name) has dtype \(code)", hint: "convert it to F32, F16, BF16, F64 or I64")
            }
            guard let count = elementCount(shape) else { throw FormatFailure.malformed("tensor \(name) has invalid shape \(shape)") }
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: type.byteCount)
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataCount else {
                throw FormatFailure.malformed("tensor \(name) has data_offsets \(offsets) outside the \(dataCount)-byte data section")
            }
            guard !overflow, offsets[1] - offsets[0] == byteCount else {
                throw FormatFailure.malformed("tensor \(name) spans \(offsets[1] - offsets[0]) bytes but \(code) \(shape) needs \(count) elements")
            }
            entries.append(Entry(name: name, type: type, shape: shape, range: (dataStart + offsets[0])..<(dataStart + offsets[1])))
        }
        entries.sort { ($0.range.lowerBound, $0.range.upperBound, $0.name) < ($1.range.lowerBound, $1.range.upperBound, $1.name) }
        var expectedStart = dataStart
        for entry in entries {
            guard entry.range.lowerBound == expectedStart else {
                let problem = entry.range.lowerBound < expectedStart ? "overlaps the tensor before it" : "leaves a gap before it"
                throw FormatFailure.malformed("tensor \(entry.name) \(problem) (data_offsets start at \(entry.range.lowerBound - dataStart), expected \(expectedStart - dataStart))")
            }
            expectedStart = entry.range.upperBound
        }
        guard expectedStart == bytes.count else {
            throw FormatFailure.malformed("\(bytes.count - expectedStart) bytes after the last tensor are not described by the header")
        }
        var tensors = StateDict()
        for entry in entries {
            tensors[entry.name] = try materialize(bytes: bytes, storage: entry.range, type: entry.type, offset: 0,
                                                  shape: entry.shape, stride: contiguousStrides(entry.shape))
        }
        return (tensors, metadata)
    }

    private static func integers(_ value: Any?) -> [Int]? {
        guard let items = value as? [Any] else { return nil }
        var result: [Int] = []
        for item in items {
            // NSNumber bridges booleans ("c") and whole doubles ("d") to Int; accept JSON integers only.
            guard let number = item as? NSNumber, !["c", "B", "d", "f"].contains(String(cString: number.objCType)),
                  let integer = item as? Int else { return nil }
            result.append(integer)
        }
        return result
    }

    private static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Writes `bytes` to `url` through a temporary sibling, fsync and rename.
func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    let path = url.path
    let folder = url.deletingLastPathComponent().path
    let temporary = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    func failure(_ step: String) -> OperatorError {
        OperatorError(.writeFailed, path: path, problem: "\(step) failed: \(String(cString: strerror(errno)))",
                        hint: "check that \(folder) exists, is writable and has free space")
    }
    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { throw failure("creating \(temporary)") }
    var written = 0
    var succeeded = false
    defer {
        if !succeeded { unlink(temporary) }
    }
    do {
        defer { close(descriptor) }
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                systemWrite(descriptor, raw.baseAddress! + written, raw.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw failure("writing")
            }
            written += result
        }
        guard fsync(descriptor) == 0 else { throw failure("fsync") }
    }
    guard rename(temporary, path) == 0 else { throw failure("renaming \(temporary) to \(path)") }
    succeeded = true
    // Make the rename itself durable.
    let folderDescriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if folderDescriptor >= 0 {
        fsync(folderDescriptor)
        close(folderDescriptor)
    }
}
