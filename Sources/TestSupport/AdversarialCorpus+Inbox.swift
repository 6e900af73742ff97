import Foundation

/// Inbox cases: images (valid ones of every format, then damaged, forged and mislabelled ones),
/// input names, entry kinds, and names that are not UTF-8.
extension AdversarialCorpus {
    /// An 8x8 RGB PNG: the content of the name and entry-kind cases.
    public static let smallPNG: [UInt8] = PNGBuilder.build(width: 8, height: 8, colour: 2, pixels: (0..<192).map { UInt8($0 & 0xff) }, filters: [UInt8](repeating: 0, count: 8))

    static func png(width: Int, height: Int, colour: UInt8 = 2, _ random: inout SplitMix64, extra: [(String, [UInt8])] = [], idatPieces: Int = 1) -> [UInt8] {
        let count = width * height * PNGBuilder.channels(colour)
        return PNGBuilder.build(width: width, height: height, colour: colour, pixels: random.bytes(count),
                                filters: (0..<height).map { _ in UInt8(random.below(5)) }, idatPieces: idatPieces, extra: extra)
    }

    /// `file` with IHDR byte `offset` (0 = width's first byte) set to `values`, its CRC fixed.
    static func withIHDR(_ file: [UInt8], at offset: Int, _ values: [UInt8]) -> [UInt8] {
        var changed = file
        changed.replaceSubrange(16 + offset..<16 + offset + values.count, with: values)
        PNGBuilder.fixCRC(of: &changed, chunkEndingAt: 8 + 8 + 13)
        return changed
    }

    /// The segments of a JPEG up to its first scan: marker and the range of the whole segment.
    static func jpegSegments(_ bytes: [UInt8]) -> [(marker: UInt8, range: Range<Int>)] {
        var segments: [(UInt8, Range<Int>)] = []
        var index = 2
        while index + 4 <= bytes.count, bytes[index] == 0xff {
            let marker = bytes[index + 1], length = Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
            segments.append((marker, index..<min(bytes.count, index + 2 + length)))
            if marker == 0xda { break }
            index += 2 + length
        }
        return segments
    }

    /// The JPEG with its frame header declaring another size.
    static func jpeg(_ bytes: [UInt8], declaringWidth width: Int, height: Int) -> [UInt8] {
        var changed = bytes
        guard let frame = jpegSegments(bytes).first(where: { [0xc0, 0xc1, 0xc2].contains($0.marker) }) else { return bytes }
        let start = frame.range.lowerBound + 5
        changed.replaceSubrange(start..<start + 4, with: [UInt8(height >> 8 & 0xff), UInt8(height & 0xff), UInt8(width >> 8 & 0xff), UInt8(width & 0xff)])
        return changed
    }

    /// The JPEG with an APP1 Exif segment holding `tiff` right after its start marker.
    static func jpeg(_ bytes: [UInt8], exif tiff: [UInt8]) -> [UInt8] {
        let payload = Array("Exif".utf8) + [0, 0] + tiff, length = payload.count + 2
        return [0xff, 0xd8, 0xff, 0xe1, UInt8(length >> 8), UInt8(length & 0xff)] + payload + bytes.dropFirst(2)
    }

    /// Exif (TIFF) blocks that lie: offsets past the end, counts past the end, a loop, values
    /// and types no camera writes.
    static let hostileExif: [(String, [UInt8])] = {
        func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8 & 0xff)] }
        func le32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        let header = Array("II*\0".utf8)
        func orientation(type: Int, count: Int, value: Int) -> [UInt8] { le16(0x0112) + le16(type) + le32(count) + le32(value) }
        return [
            ("ifd-offset-past-end", header + le32(0xffff_fff0)),
            ("entry-count-65535", header + le32(8) + le16(0xffff)),
            ("ifd-loop", header + le32(8) + le16(1) + orientation(type: 3, count: 1, value: 6) + le32(8)),
            ("orientation-9", header + le32(8) + le16(1) + orientation(type: 3, count: 1, value: 9) + le32(0)),
            ("orientation-huge-count", header + le32(8) + le16(1) + orientation(type: 3, count: 0x4000_0000, value: 0x7fff_fff0) + le32(0)),
            ("orientation-as-rational", header + le32(8) + le16(1) + orientation(type: 5, count: 1, value: 0xffff_fff0) + le32(0)),
            ("big-endian-truncated", Array("MM\0*".utf8) + [0, 0, 0, 8, 0xff]),
            ("empty", []),
        ]
    }()

    static func imageCases(_ random: inout SplitMix64) throws -> [InboxCase] {
        var cases: [InboxCase] = []
        func add(_ name: String, _ entry: Entry, _ outcome: Outcome) {
            cases.append(InboxCase(batch: "images", name: Array(name.utf8), entry: entry, outcome: outcome))
        }
        func add(_ name: String, _ bytes: [UInt8], _ outcome: Outcome) { add(name, .file(bytes), outcome) }
        // Every committed fixture image: all PNG colour types, depths and interlacing, baseline,
        // progressive, grey, CMYK and YCCK JPEGs, EXIF orientations.
        let fixtures = TestPaths.fixtures.appendingPathComponent("images")
        let names = try FileManager.default.contentsOfDirectory(atPath: fixtures.path).filter { $0.hasSuffix(".png") || $0.hasSuffix(".jpg") }.sorted()
        var files: [String: [UInt8]] = [:]
        for name in names { files[name] = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name))) }
        for name in names { add("fixture-\(name)", files[name]!, name.hasPrefix("huge_declared") ? .quarantined : .archived) }

        // PNGs built byte by byte.
        let good = png(width: 16, height: 12, &random)
        add("png-1x1.png", png(width: 1, height: 1, &random), .archived)
        add("png-4000x1.png", png(width: 4000, height: 1, &random), .archived)
        add("png-1x4000.png", png(width: 1, height: 4000, &random), .archived)
        add("png-3x2000-grey.png", png(width: 3, height: 2000, colour: 0, &random), .archived)
        add("png-grey-alpha.png", png(width: 9, height: 7, colour: 4, &random), .archived)
        add("png-rgba.png", png(width: 7, height: 9, colour: 6, &random), .archived)
        add("png-100-idat-chunks.png", png(width: 40, height: 30, &random, idatPieces: 100), .archived)
        add("png-4mb-text.png", png(width: 8, height: 8, &random, extra: [("tEXt", Array("Comment\0".utf8) + [UInt8](repeating: 0x41, count: 4 << 20))]), .archived)
        add("png-10000-unknown-chunks.png", png(width: 8, height: 8, &random, extra: (0..<10_000).map { _ in ("raNd", random.bytes(4)) }), .decided)
        add("png-apng-chunks.png", png(width: 8, height: 8, &random, extra: [("acTL", [0, 0, 0, 1, 0, 0, 0, 0])]), .archived)
        add("png-ztxt-bomb.png", png(width: 8, height: 8, &random, extra: [("zTXt", Array("bomb\0\0".utf8) + [0x78, 0x01] + deflatedZeros(count: 50_000_000))]), .decided)
        add("png-iccp-garbage.png", png(width: 8, height: 8, &random, extra: [("iCCP", Array("icc\0\0".utf8) + random.bytes(300))]), .decided)
        for (name, tiff) in hostileExif { add("png-exif-\(name).png", png(width: 8, height: 8, &random, extra: [("eXIf", tiff)]), .decided) }
        add("png-signature-only.png", Array(good.prefix(8)), .quarantined)
        add("png-signature-wrong.png", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x00] + good.dropFirst(8), .quarantined)
        add("png-no-iend.png", Array(good.dropLast(12)), .decided)
        add("png-ihdr-crc.png", { var bytes = good; bytes[29] ^= 0xff; return bytes }(), .decided)
        add("png-width-0.png", withIHDR(good, at: 0, [0, 0, 0, 0]), .quarantined)
        add("png-height-0.png", withIHDR(good, at: 4, [0, 0, 0, 0]), .quarantined)
        add("png-width-2p31.png", withIHDR(good, at: 0, [0x80, 0, 0, 0]), .quarantined)
        add("png-width-2p31-minus-1.png", withIHDR(good, at: 0, [0x7f, 0xff, 0xff, 0xff]), .quarantined)
        add("png-100000x100000.png", withIHDR(good, at: 0, [0, 0x01, 0x86, 0xa0, 0, 0x01, 0x86, 0xa0]), .quarantined)
        add("png-10000x10000-no-data.png", withIHDR(good, at: 0, [0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10]), .quarantined)
        add("png-65535x65535.png", withIHDR(good, at: 0, [0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff]), .quarantined)
        add("png-16x1000-rows-missing.png", withIHDR(good, at: 4, [0, 0, 0x03, 0xe8]), .quarantined)
        add("png-16x2-rows-extra.png", withIHDR(good, at: 4, [0, 0, 0, 2]), .decided)
        for (field, offset, values) in [("depth-3", 8, [3]), ("depth-16-palette", 8, [16, 3]), ("colour-1", 9, [1]), ("colour-5", 9, [5]),
                                        ("colour-7", 9, [7]), ("compression-1", 10, [1]), ("filter-method-1", 11, [1]), ("interlace-2", 12, [2])] as [(String, Int, [UInt8])] {
            add("png-\(field).png", withIHDR(good, at: offset, values), .quarantined)
        }
        add("png-palette-missing.png", withIHDR(good, at: 9, [3]), .quarantined)
        add("png-palette-300.png", png(width: 8, height: 8, colour: 0, &random, extra: [("PLTE", random.bytes(900))]), .decided)
        add("png-filter-type-5.png", PNGBuilder.build(width: 4, height: 2, colour: 2, pixels: random.bytes(24), filters: [0, 5]), .quarantined)
        var lengthLie = good
        lengthLie.replaceSubrange(33..<37, with: [0x7f, 0xff, 0xff, 0xff])  // the first IDAT's length
        add("png-chunk-length-2g.png", lengthLie, .quarantined)
        lengthLie.replaceSubrange(33..<37, with: [0xff, 0xff, 0xff, 0xff])
        add("png-chunk-length-4g.png", lengthLie, .quarantined)
        add("png-idat-garbage.png", Array(good.prefix(33)) + PNGBuilder.chunk("IDAT", random.bytes(600)) + PNGBuilder.chunk("IEND", []), .quarantined)
        add("png-idat-empty.png", Array(good.prefix(33)) + PNGBuilder.chunk("IDAT", []) + PNGBuilder.chunk("IEND", []), .quarantined)
        add("png-sparse-300mb.png", .sparseFile(header: good, size: 300 << 20), .quarantined)  // past max_input_bytes (256 MiB)
        add("png-sparse-200mb.png", .sparseFile(header: good, size: 200 << 20), .decided)  // read whole, then judged

        // JPEGs forged from the fixtures.
        let baseline = files["baseline.jpg"]!, progressive = files["progressive.jpg"]!
        add("jpeg-soi-only.jpg", [0xff, 0xd8], .quarantined)
        add("jpeg-soi-eoi.jpg", [0xff, 0xd8, 0xff, 0xd9], .quarantined)
        add("jpeg-65500x65500.jpg", jpeg(baseline, declaringWidth: 65500, height: 65500), .quarantined)
        add("jpeg-width-0.jpg", jpeg(baseline, declaringWidth: 0, height: 33), .quarantined)
        add("jpeg-1x65500.jpg", jpeg(baseline, declaringWidth: 1, height: 65500), .decided)
        add("jpeg-4000x4000-no-data.jpg", jpeg(baseline, declaringWidth: 4000, height: 4000), .decided)
        add("jpeg-no-huffman-tables.jpg", jpegSegments(baseline).filter { $0.marker == 0xc4 }.reversed().reduce(baseline) { bytes, segment in
            var without = bytes
            without.removeSubrange(segment.range)
            return without
        }, .decided)
        add("jpeg-no-eoi.jpg", Array(baseline.dropLast(2)), .decided)
        add("jpeg-segment-length-0.jpg", { var bytes = baseline; bytes[4] = 0; bytes[5] = 0; return bytes }(), .decided)
        add("jpeg-app-length-past-end.jpg", Array(baseline.prefix(2)) + [0xff, 0xe2, 0xff, 0xff] + random.bytes(100), .quarantined)
        add("jpeg-progressive-half.jpg", Array(progressive.prefix(progressive.count / 2)), .decided)
        add("jpeg-zero-quantisation.jpg", { () -> [UInt8] in
            var bytes = baseline
            for segment in jpegSegments(baseline) where segment.marker == 0xdb { bytes.replaceSubrange(segment.range.lowerBound + 5..<segment.range.upperBound, with: [UInt8](repeating: 0, count: segment.range.count - 5)) }
            return bytes
        }(), .decided)
        for (name, tiff) in hostileExif { add("jpeg-exif-\(name).jpg", jpeg(baseline, exif: tiff), .decided) }

        // BMP and TIFF as cameras write them, and forged or cut short.
        let bmp = BMPBuilder.build(width: 8, height: 8, bits: 24, rgb: random.bytes(192))
        add("bmp-rgb24.bmp", bmp, .archived)
        add("bmp-grey8.bmp", BMPBuilder.build(width: 8, height: 8, bits: 8, palette: (0..<256).map { (UInt8($0), UInt8($0), UInt8($0)) }, indices: random.bytes(64)), .archived)
        add("bmp-60000x60000.bmp", BMPBuilder.build(width: 8, height: 8, bits: 24, rgb: random.bytes(192), declaredWidth: 60000, declaredHeight: 60000), .quarantined)
        add("bmp-cut.bmp", Array(bmp.prefix(bmp.count / 2)), .quarantined)
        let tiffSamples = random.bytes(192).map { UInt16($0) * 257 }
        let tiff16 = TIFFBuilder(width: 8, height: 8, samplesPerPixel: 3, bits: 16, photometric: 2, samples: tiffSamples).build()
        add("tiff-rgb16.tif", tiff16, .archived)
        var tiffGrey = TIFFBuilder(width: 8, height: 8, samplesPerPixel: 1, bits: 8, photometric: 1, samples: random.bytes(64).map { UInt16($0) })
        tiffGrey.packBits = true
        add("tiff-grey8-packbits.tif", tiffGrey.build(), .archived)
        var tiffHuge = TIFFBuilder(width: 8, height: 8, samplesPerPixel: 1, bits: 8, photometric: 1, samples: random.bytes(64).map { UInt16($0) })
        tiffHuge.declaredSize = (100_000, 100_000)
        add("tiff-100000x100000.tif", tiffHuge.build(), .quarantined)
        add("tiff-cut.tif", Array(tiff16.prefix(200)), .quarantined)

        // Cut short, and bits flipped.
        for source in ["rgb8.png", "palette8_interlaced.png", "gray16.png", "baseline.jpg", "progressive.jpg"] {
            let bytes = files[source]!
            for cut in [1, 8, 33, bytes.count / 2, bytes.count * 9 / 10, bytes.count - 1] {
                add("cut-\(cut)-of-\(source)", Array(bytes.prefix(cut)), .decided)
            }
        }
        let flippable = ["rgb8.png", "rgba16_interlaced.png", "palette4_trns.png", "gray_alpha8.png", "baseline.jpg", "progressive.jpg", "cmyk_adobe.jpg", "exif_orientation6.jpg"]
        for index in 0..<32 {
            let source = flippable[index % flippable.count]
            var bytes = files[source]!
            for _ in 0..<(1 + random.below(8)) { bytes[random.below(bytes.count)] ^= UInt8(1) << UInt8(random.below(8)) }
            add("flipped-\(index)-\(source)", bytes, .decided)
        }

        // Content and name disagree: read by their signature, or refused for it.
        let smallJPEG = files["gray.jpg"]!
        add("png-named.jpg", good, .archived)
        add("jpeg-named.png", smallJPEG, .archived)
        add("png-named.txt", good, .archived)
        add("png-without-extension", good, .archived)
        for (name, bytes) in [("zero-bytes.png", []), ("one-byte.png", [0x89]), ("text.png", Array("not an image\n".utf8)),
                              ("html.png", Array("<html><body>hello</body></html>".utf8)), ("gif.png", Array("GIF89a".utf8) + random.bytes(64)),
                              ("bmp.png", Array("BM".utf8) + random.bytes(64)), ("webp.png", Array("RIFF\0\0\0\0WEBPVP8 ".utf8) + random.bytes(64)),
                              ("tiff.png", Array("II*\0".utf8) + random.bytes(64)), ("pdf.jpg", Array("%PDF-1.7\n".utf8) + random.bytes(64)),
                              ("zip.png", storedZip([("a", [1])])), ("elf.jpg", [0x7f] + Array("ELF".utf8) + random.bytes(64)),
                              ("zeros.png", [UInt8](repeating: 0, count: 4096)), ("ff-bytes.jpg", [UInt8](repeating: 0xff, count: 4096)),
                              ("random.png", random.bytes(4096)), ("svg.png", Array("<svg xmlns=\"http://www.w3.org/2000/svg\"/>".utf8))] as [(String, [UInt8])] {
            add("wrong-content-\(name)", bytes, .quarantined)
        }
        return cases
    }

    static func nameCases() -> [InboxCase] {
        let taken = [
            "with space.png", "  leading spaces.png", "trailing space.png ", "tab\there.png", "new\nline.png", "carriage\rreturn.png",
            "bell\u{7}.png", "escape\u{1b}[31m.png", "delete\u{7f}.png", "back\\slash.png", "quotes \"'`.png", "$(touch pwned).png",
            ";rm -rf ~;.png", "%s%n%x.png", "-rf.png", "--help.png", "*.png", "?.png", "[a-z].png", "{a,b}.png", "<>|&.png",
            "x.png.heatmap.png", "x.png.json", "x.png.error.json", "verdict.json", "y.heatmap.png", "name.png", "name-1.png",
            "double..dots.png", "trailing.dot.", "UPPER.PNG", "Mixed.JpEg", "no-extension", "日本語の画像.png", "émoji-🙂-🏭.png",
            "עברית.png", "combining-e\u{301}.png", "caf\u{e9}.png", "cafe\u{301}.png", "zero\u{200b}width.png", "\u{feff}bom.png",
            "\u{fffd}replacement.png", "private\u{e000}.png", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢.png", "fullwidth／slash.png", "division∕slash.png",
            "con.png", "nul.png", "a", "-", "~tilde-first.png",
            String(repeating: "a", count: 251) + ".png",
            String(repeating: "é", count: 125) + ".png",
            String(repeating: "🏭", count: 62) + ".png",
            String(repeating: "x", count: 240) + "1.png", String(repeating: "x", count: 240) + "2.png",
            String(repeating: "h", count: 238) + ".heatmap.png",
            String(repeating: "j", count: 245) + ".png.json",
            String(repeating: "d", count: 251) + ".jpg",
        ]
        let left = [".hidden.png", ".png", "...png", "upload.png.part", "photo.tmp", "PHOTO.PNG.TMP", "backup.png~", "download.crdownload", "x.partial", "x.filepart"]
        return taken.map { InboxCase(batch: "names", name: Array($0.utf8), entry: .file(smallPNG), outcome: .archived) }
            + left.map { InboxCase(batch: "names", name: Array($0.utf8), entry: .file(smallPNG), outcome: .untaken) }
    }

    static func entryCases() -> [InboxCase] {
        [
            ("link-to-image.png", Entry.symbolicLink("@OUTSIDE@/image.png"), Outcome.untaken),
            ("link-to-folder.png", .symbolicLink("@OUTSIDE@/folder"), .untaken),
            ("dangling-link.png", .symbolicLink("@OUTSIDE@/missing.png"), .untaken),
            ("link-to-itself.png", .symbolicLink("link-to-itself.png"), .untaken),
            ("link-to-the-inbox", .symbolicLink("."), .untaken),
            ("link-to-dev-zero.png", .symbolicLink("/dev/zero"), .untaken),
            ("fifo.png", .fifo, .untaken),
            ("folder.png", .directory, .untaken),
            ("socket.png", .socket, .untaken),
            // A hard link is a regular file: taken, and its other name outside keeps its bytes.
            ("hard-link.png", .hardLink("@OUTSIDE@/hard-link-target.png"), .archived),
            ("beside-the-others.png", .file(smallPNG), .archived),
        ].map { InboxCase(batch: "entries", name: Array($0.0.utf8), entry: $0.1, outcome: $0.2) }
    }

    static func nonUTF8Cases() -> [InboxCase] {
        let names: [[UInt8]] = [
            Array("caf".utf8) + [0xe9] + Array(".png".utf8),  // Latin-1
            [0x80] + Array("lead.png".utf8),  // a lone continuation byte
            Array("over".utf8) + [0xc0, 0xaf] + Array("long.png".utf8),  // an overlong '/'
            [0xff, 0xfe] + Array(".png".utf8),
            Array("cut".utf8) + [0xf0, 0x9f] + Array(".png".utf8),  // half an emoji
            Array("surrogate".utf8) + [0xed, 0xa0, 0x80] + Array(".png".utf8),
        ]
        return names.map { InboxCase(batch: "non-utf8", name: $0, entry: .file(smallPNG), outcome: .quarantinedUnderEscapedName) }
            + [InboxCase(batch: "non-utf8", name: Array("valid-beside.png".utf8), entry: .file(smallPNG), outcome: .archived)]
    }
}
