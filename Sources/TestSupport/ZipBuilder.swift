/// One entry of a hand-built zip: its bytes as stored, and what the headers declare.
public struct ZipTestEntry {
    public var name: String
    public var data: [UInt8]
    /// 0 stored, 8 deflate.
    public var method: Int
    public var declaredSize: Int?
    public var crc: UInt32?
    /// Sizes in a zip64 extra field (the 32-bit fields then hold 0xffffffff).
    public var zip64: Bool

    public init(name: String, data: [UInt8], method: Int = 0, declaredSize: Int? = nil, crc: UInt32? = nil, zip64: Bool = false) {
        self.name = name
        self.data = data
        self.method = method
        self.declaredSize = declaredSize
        self.crc = crc
        self.zip64 = zip64
    }
}

/// A zip of `entries`, as torch.save or a wheel lays one out; headers say what the entries declare.
public func handBuiltZip(_ entries: [ZipTestEntry]) -> [UInt8] {
    func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8 & 0xff)] }
    func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) } }
    func le64(_ value: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    var archive: [UInt8] = []
    var directory: [UInt8] = []
    for entry in entries {
        let name = Array(entry.name.utf8)
        let crc = entry.crc ?? crc32(entry.data[...])
        let size = entry.declaredSize ?? entry.data.count
        let sizes = entry.zip64 ? le32(0xffff_ffff) + le32(0xffff_ffff) : le32(UInt32(entry.data.count)) + le32(UInt32(truncatingIfNeeded: size))
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
public func storedZip(_ entries: [(name: String, bytes: [UInt8])]) -> [UInt8] {
    handBuiltZip(entries.map { ZipTestEntry(name: $0.name, data: $0.bytes) })
}

/// Raw DEFLATE (fixed Huffman codes) of `count` zero bytes: one literal, then matches of 258
/// at distance 1. About 13 bits per 258 bytes: a real bomb, built without zlib.
public func deflatedZeros(count: Int) -> [UInt8] {
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

/// CRC-32 (IEEE), as zip and PNG use it.
public func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? 0xedb8_8320 ^ (crc >> 1) : crc >> 1 }
    }
    return ~crc
}
