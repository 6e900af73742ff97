/// Builds BMP files byte by byte: palette (1/4/8 bits), 24-bit, or 16/32-bit with bit-field
/// masks; bottom-up unless `topDown`.
public enum BMPBuilder {
    /// `indices` (palette) or `rgb` (3 bytes a pixel, red first) row by row from the top.
    public static func build(width: Int, height: Int, bits: Int, palette: [(UInt8, UInt8, UInt8)] = [], indices: [UInt8] = [],
                             rgb: [UInt8] = [], masks: (UInt32, UInt32, UInt32)? = nil, topDown: Bool = false,
                             declaredWidth: Int32? = nil, declaredHeight: Int32? = nil) -> [UInt8] {
        let stride = (width * bits + 31) / 32 * 4
        var pixels = [UInt8](repeating: 0, count: stride * height)
        for y in 0..<height {
            let row = (topDown ? y : height - 1 - y) * stride
            for x in 0..<width {
                let i = y * width + x
                switch bits {
                case 1: pixels[row + x / 8] |= indices[i] << (7 - x % 8)
                case 4: pixels[row + x / 2] |= indices[i] << (x % 2 == 0 ? 4 : 0)
                case 8: pixels[row + x] = indices[i]
                case 24: (pixels[row + 3 * x], pixels[row + 3 * x + 1], pixels[row + 3 * x + 2]) = (rgb[3 * i + 2], rgb[3 * i + 1], rgb[3 * i])
                default:
                    let (r, g, b) = masks ?? (bits == 16 ? (0x7c00, 0x03e0, 0x001f) : (0xff0000, 0xff00, 0xff))
                    func put(_ value: UInt8, _ mask: UInt32) -> UInt32 {
                        let shift = UInt32(mask.trailingZeroBitCount), top = mask >> shift
                        return (UInt32(value) * top / 255) << shift
                    }
                    let value = put(rgb[3 * i], r) | put(rgb[3 * i + 1], g) | put(rgb[3 * i + 2], b)
                    for k in 0..<bits / 8 { pixels[row + x * bits / 8 + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(k))) }
                }
            }
        }
        var table: [UInt8] = palette.flatMap { [$0.2, $0.1, $0.0, 0] }
        if let masks { table = [masks.0, masks.1, masks.2].flatMap(le32) + table }
        let offset = 14 + 40 + table.count
        var file: [UInt8] = Array("BM".utf8) + le32(UInt32(offset + pixels.count)) + [0, 0, 0, 0] + le32(UInt32(offset))
        file += le32(40) + le32(UInt32(bitPattern: declaredWidth ?? Int32(width)))
        file += le32(UInt32(bitPattern: declaredHeight ?? Int32(topDown ? -height : height))) + le16(1) + le16(UInt16(bits))
        file += le32(masks == nil ? 0 : 3) + le32(UInt32(pixels.count)) + le32(2835) + le32(2835)
        file += le32(UInt32(palette.count)) + le32(0)
        return file + table + pixels
    }
}

/// Builds baseline TIFF files (little endian, one IFD): 8- or 16-bit samples, strips or tiles,
/// contiguous or separate planes, uncompressed or PackBits. `samples` holds the values row by
/// row, interleaved; 16-bit values are written as two bytes.
public struct TIFFBuilder {
    public var width: Int, height: Int, samplesPerPixel: Int, bits: Int
    public var photometric: UInt16       // 0 MinIsWhite, 1 MinIsBlack, 2 RGB
    public var samples: [UInt16]
    public var rowsPerStrip: Int? = nil
    public var tile: (Int, Int)? = nil
    public var separatePlanes = false
    public var packBits = false
    public var maxSampleValue: UInt16? = nil
    public var extraSamples: [UInt16] = []
    public var orientation: UInt16? = nil
    /// Width and height written into the header instead of the real ones.
    public var declaredSize: (UInt32, UInt32)? = nil

    public init(width: Int, height: Int, samplesPerPixel: Int, bits: Int, photometric: UInt16, samples: [UInt16]) {
        (self.width, self.height, self.samplesPerPixel, self.bits, self.photometric, self.samples) = (width, height, samplesPerPixel, bits, photometric, samples)
    }

    public func build() -> [UInt8] {
        let planes = separatePlanes ? samplesPerPixel : 1, perPixel = separatePlanes ? 1 : samplesPerPixel
        let (chunkWidth, chunkHeight) = tile ?? (width, rowsPerStrip ?? height)
        let across = (width + chunkWidth - 1) / chunkWidth, down = (height + chunkHeight - 1) / chunkHeight
        var chunks: [[UInt8]] = []
        for plane in 0..<planes {
            for cy in 0..<down {
                for cx in 0..<across {
                    var chunk: [UInt8] = []
                    // Tiles are always full size (padded); a last strip holds only its rows.
                    let rows = tile == nil ? min(chunkHeight, height - cy * chunkHeight) : chunkHeight
                    for y in cy * chunkHeight..<cy * chunkHeight + rows {
                        for x in cx * chunkWidth..<cx * chunkWidth + chunkWidth {
                            for s in 0..<perPixel {
                                let inside = x < width && y < height
                                let value = inside ? samples[(y * width + x) * samplesPerPixel + (separatePlanes ? plane : s)] : 0
                                chunk += bits == 8 ? [UInt8(value)] : le16(value)
                            }
                        }
                    }
                    chunks.append(packBits ? Self.packBitsLiteral(chunk) : chunk)
                }
            }
        }
        var data: [UInt8] = []
        var offsets: [UInt32] = [], counts: [UInt32] = []
        for chunk in chunks {
            offsets.append(UInt32(8 + data.count))
            counts.append(UInt32(chunk.count))
            data += chunk
        }
        if data.count % 2 == 1 { data.append(0) }
        let ifdStart = 8 + data.count
        var extra: [UInt8] = []  // values longer than 4 bytes, after the IFD
        var entries: [(UInt16, UInt16, UInt32, [UInt8])] = []  // tag, type, count, inline-or-extra bytes
        func add(_ tag: UInt16, shorts: [UInt16]) { entries.append((tag, 3, UInt32(shorts.count), shorts.flatMap(le16))) }
        func add(_ tag: UInt16, longs: [UInt32]) { entries.append((tag, 4, UInt32(longs.count), longs.flatMap(le32))) }
        add(256, longs: [declaredSize?.0 ?? UInt32(width)])
        add(257, longs: [declaredSize?.1 ?? UInt32(height)])
        add(258, shorts: Array(repeating: UInt16(bits), count: samplesPerPixel))
        add(259, shorts: [packBits ? 32773 : 1])
        add(262, shorts: [photometric])
        if tile == nil { add(273, longs: offsets) }
        if let orientation { add(274, shorts: [orientation]) }
        add(277, shorts: [UInt16(samplesPerPixel)])
        if tile == nil {
            add(278, longs: [UInt32(chunkHeight)])
            add(279, longs: counts)
        }
        if let maxSampleValue { add(281, shorts: Array(repeating: maxSampleValue, count: samplesPerPixel)) }
        add(284, shorts: [separatePlanes ? 2 : 1])
        if let (tileWidth, tileHeight) = tile {
            add(322, longs: [UInt32(tileWidth)])
            add(323, longs: [UInt32(tileHeight)])
            add(324, longs: offsets)
            add(325, longs: counts)
        }
        if !extraSamples.isEmpty { add(338, shorts: extraSamples) }
        let ifdSize = 2 + 12 * entries.count + 4
        var ifd = le16(UInt16(entries.count))
        for (tag, type, count, bytes) in entries {
            ifd += le16(tag) + le16(type) + le32(count)
            if bytes.count <= 4 {
                ifd += bytes + [UInt8](repeating: 0, count: 4 - bytes.count)
            } else {
                ifd += le32(UInt32(ifdStart + ifdSize + extra.count))
                extra += bytes
            }
        }
        ifd += le32(0)
        return Array("II".utf8) + le16(42) + le32(UInt32(ifdStart)) + data + ifd + extra
    }

    /// PackBits with literal runs only (valid, if not small).
    static func packBitsLiteral(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var start = 0
        while start < bytes.count {
            let run = min(128, bytes.count - start)
            out.append(UInt8(run - 1))
            out += bytes[start..<start + run]
            start += run
        }
        return out
    }
}

private func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
private func le32(_ value: UInt32) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 24)] }
