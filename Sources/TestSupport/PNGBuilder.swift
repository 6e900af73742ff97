/// Builds PNG files byte by byte with a chosen filter per row, stored (uncompressed) deflate
/// blocks and optional extra chunks before the image data.
public enum PNGBuilder {
    public static func channels(_ colour: UInt8) -> Int { [1, 0, 3, 0, 2, 0, 4][Int(colour)] }

    public static func build(width: Int, height: Int, colour: UInt8, pixels: [UInt8], filters: [UInt8],
                             idatPieces: Int = 1, extra: [(String, [UInt8])] = []) -> [UInt8] {
        let bpp = channels(colour), rowBytes = width * bpp
        var raw: [UInt8] = []
        for y in 0..<height {
            let row = Array(pixels[y * rowBytes..<(y + 1) * rowBytes])
            let above = y > 0 ? Array(pixels[(y - 1) * rowBytes..<y * rowBytes]) : [UInt8](repeating: 0, count: rowBytes)
            raw.append(filters[y])
            for i in 0..<rowBytes {
                let a = i >= bpp ? Int(row[i - bpp]) : 0, b = Int(above[i]), c = i >= bpp ? Int(above[i - bpp]) : 0
                let predicted: Int
                switch filters[y] {
                case 1: predicted = a
                case 2: predicted = b
                case 3: predicted = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
                default: predicted = 0
                }
                raw.append(UInt8(truncatingIfNeeded: Int(row[i]) - predicted))
            }
        }
        let stream = zlibStored(raw)
        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        file += chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, colour, 0, 0, 0])
        for (type, body) in extra { file += chunk(type, body) }
        let pieceSize = (stream.count + idatPieces - 1) / idatPieces
        for start in stride(from: 0, to: stream.count, by: pieceSize) {
            file += chunk("IDAT", Array(stream[start..<min(start + pieceSize, stream.count)]))
        }
        return file + chunk("IEND", [])
    }

    /// Recomputes the CRC of the chunk whose data ends at `end` (where its CRC starts).
    public static func fixCRC(of file: inout [UInt8], chunkEndingAt end: Int) {
        var start = 8
        while start + 8 + Int(readBigEndian(file, start)) != end { start += 12 + Int(readBigEndian(file, start)) }
        file.replaceSubrange(end..<end + 4, with: bigEndian(crc32(Array(file[start + 4..<end]))))
    }

    public static func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
        let typed = Array(type.utf8) + body
        return bigEndian(UInt32(body.count)) + typed + bigEndian(crc32(typed))
    }

    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var start = 0
        repeat {
            let end = min(start + 65535, data.count), length = UInt16(end - start)
            out.append(end == data.count ? 1 : 0)
            out += [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8(~length >> 8)]
            out += data[start..<end]
            start = end
        } while start < data.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in data { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        return out + bigEndian(b << 16 | a)
    }

    public static func crc32(_ bytes: [UInt8]) -> UInt32 { TestSupport.crc32(bytes[...]) }

    /// The chunks of a PNG file in order, or nil when its signature is wrong, a chunk runs past
    /// the end, a CRC does not match, or anything follows IEND.
    public static func chunks(of file: [UInt8]) -> [(type: String, body: [UInt8])]? {
        guard file.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else { return nil }
        var chunks: [(type: String, body: [UInt8])] = [], position = 8
        while position < file.count {
            guard position + 12 <= file.count else { return nil }
            let length = Int(readBigEndian(file, position))
            guard position + 12 + length <= file.count else { return nil }
            let typed = Array(file[position + 4..<position + 8 + length])
            guard crc32(typed) == readBigEndian(file, position + 8 + length) else { return nil }
            chunks.append((String(decoding: typed.prefix(4), as: UTF8.self), Array(typed.dropFirst(4))))
            position += 12 + length
        }
        return chunks.last?.type == "IEND" ? chunks : nil
    }

    /// The tEXt chunks of a PNG file as key -> value (Latin-1 read as UTF-8), or nil when
    /// `chunks(of:)` finds the file damaged.
    public static func text(of file: [UInt8]) -> [String: String]? {
        guard let chunks = chunks(of: file) else { return nil }
        var text: [String: String] = [:]
        for chunk in chunks where chunk.type == "tEXt" {
            guard let separator = chunk.body.firstIndex(of: 0) else { return nil }
            text[String(decoding: chunk.body[..<separator], as: UTF8.self)] = String(decoding: chunk.body[(separator + 1)...], as: UTF8.self)
        }
        return text
    }

    public static func bigEndian(_ value: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }

    public static func readBigEndian(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }
}
