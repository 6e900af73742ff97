// ImagingBench: developer harness for the Imaging module (not part of rstpm's products).
//   ImagingBench bench FILE... [--iterations N]      decode + resize to 256x256, ms per image
//   ImagingBench fuzz FILE...                         corrupted variants; every failure must be an OperatorError
//   ImagingBench make-image IN OUT WIDTH HEIGHT [progressive]  resize IN, write a quality-90 JPEG
//                                                     (or a PNG where OUT ends in .png)
//   ImagingBench heatmap IN OUT                       synthetic anomaly map rendered over IN
import Foundation
import Imaging
import OperatorErrors
import SeededRandom

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data((text + "\n").utf8))
    exit(2)
}

func crc32(_ bytes: Data) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}

func bigEndian32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }

/// The file with its header claiming `width` x `height` (PNG: IHDR, CRC fixed; JPEG: first SOF).
func declaring(_ data: Data, width: UInt32, height: UInt32) -> Data? {
    var bytes = [UInt8](data)
    if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) && bytes.count >= 33 {
        bytes.replaceSubrange(16..<20, with: bigEndian32(width))
        bytes.replaceSubrange(20..<24, with: bigEndian32(height))
        bytes.replaceSubrange(29..<33, with: bigEndian32(crc32(Data(bytes[12..<29]))))
        return Data(bytes)
    }
    var i = 2
    while i + 9 < bytes.count {
        guard bytes[i] == 0xFF else { return nil }
        let marker = bytes[i + 1]
        if (0xC0...0xCF).contains(marker) && ![0xC4, 0xC8, 0xCC].contains(marker) {
            bytes[i + 5] = UInt8(min(height, 65535) >> 8); bytes[i + 6] = UInt8(min(height, 65535) & 0xFF)
            bytes[i + 7] = UInt8(min(width, 65535) >> 8); bytes[i + 8] = UInt8(min(width, 65535) & 0xFF)
            return Data(bytes)
        }
        i += 2 + (Int(bytes[i + 2]) << 8 | Int(bytes[i + 3]))
    }
    return nil
}

func fuzz(_ paths: [String]) {
    var outcomes: [String: Int] = [:]
    var untyped = 0
    var generator = SplitMix64(state: 20261129)
    func attempt(_ data: Data, _ name: String, kind: String, scaled: Bool) {
        do {
            let target = scaled ? ImageSize(width: 64, height: 64) : nil
            _ = try ImageDecoder.decode(data: data, name: name, targetSize: target)
            outcomes["\(kind): decoded", default: 0] += 1
        } catch let error as OperatorError {
            // Refused sizes count together.
            let failure = if case .imageTooLarge = error.kind { "imageTooLarge" } else { "\(error.kind)" }
            outcomes["\(kind): \(failure)", default: 0] += 1
        } catch {
            untyped += 1
            print("untyped error for \(name): \(error)")
        }
    }
    for path in paths {
        let url = URL(fileURLWithPath: path)
        guard let data = try? Data(contentsOf: url) else { fail("cannot read \(path)") }
        var cases = 0
        for length in stride(from: 0, to: data.count, by: 97) {
            attempt(data.prefix(length), "\(path)[..<\(length)]", kind: "truncated", scaled: length % 2 == 0); cases += 1
        }
        for round in 0..<300 {
            var bytes = data
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
            }
            attempt(bytes, "\(path) flips#\(round)", kind: "bit flips", scaled: round % 2 == 0); cases += 1
        }
        for round in 0..<60 {
            var bytes = data
            let span = min(bytes.count, round < 30 ? 16 : 256)
            for i in 0..<span where Bool.random(using: &generator) { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
            attempt(bytes, "\(path) header#\(round)", kind: "wrong header", scaled: false); cases += 1
        }
        let other: [UInt8] = data.first == 0xFF ? [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] : [0xFF, 0xD8, 0xFF, 0xE0]
        attempt(Data(other) + data.dropFirst(other.count), "\(path) swapped signature", kind: "wrong header", scaled: false); cases += 1
        for (width, height) in [(100_000, 100_000), (65535, 65535), (0x7FFF_FFFF, 1), (1, 0x7FFF_FFFF), (0, 10), (20000, 6000), (10001, 10000)] {
            if let bytes = declaring(data, width: UInt32(width), height: UInt32(height)) {
                attempt(bytes, "\(path) declares \(width)x\(height)", kind: "declared size", scaled: false); cases += 1
            }
        }
        print("\(path): \(cases) cases")
    }
    for (key, count) in outcomes.sorted(by: { $0.key < $1.key }) { print("  \(key): \(count)") }
    print("cases: \(outcomes.values.reduce(0, +))")
    print("untyped errors: \(untyped)")
    if untyped > 0 { exit(1) }
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: ImagingBench bench|fuzz|make-image|heatmap ...") }
arguments.removeFirst()
do {
    switch command {
    case "bench":
        var iterations = 10
        if let flag = arguments.firstIndex(of: "--iterations"), flag + 1 < arguments.count {
            iterations = Int(arguments[flag + 1]) ?? 10
            arguments.removeSubrange(flag...flag + 1)
        }
        print(try ImagingBenchmark.run(files: arguments.map { URL(fileURLWithPath: $0) }, iterations: iterations))
    case "fuzz":
        fuzz(arguments)
    case "make-image":
        guard arguments.count >= 4, let width = Int(arguments[2]), let height = Int(arguments[3]) else { fail("make-image IN OUT WIDTH HEIGHT [progressive]") }
        let image = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: arguments[0]))
        let resized = Resize.bilinear(image, width: width, height: height)
        let encoded = arguments[1].lowercased().hasSuffix(".png")
            ? try PNGEncoder.encode(resized)
            : try JPEGEncoder.encode(resized, quality: 90, progressive: arguments.count > 4 && arguments[4] == "progressive")
        try encoded.write(to: URL(fileURLWithPath: arguments[1]))
    case "heatmap":
        guard arguments.count == 2 else { fail("heatmap IN OUT") }
        let image = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: arguments[0]))
        // Synthetic 64x64 map: low noise everywhere plus two Gaussian blobs, placed (for
        // broken_large_000.png) on the broken rim at the right and the chip at the bottom.
        let side = 64
        var generator = SplitMix64(state: 7)
        var map = [Float](repeating: 0, count: side * side)
        for y in 0..<side {
            for x in 0..<side {
                let u = (Float(x) + 0.5) / Float(side), v = (Float(y) + 0.5) / Float(side)
                func blob(_ cx: Float, _ cy: Float, _ sigma: Float) -> Float {
                    exp(-((u - cx) * (u - cx) + (v - cy) * (v - cy)) / (2 * sigma * sigma))
                }
                map[y * side + x] = 0.1 * Float.random(in: 0...1, using: &generator)
                    + 0.9 * max(blob(0.76, 0.43, 0.05), 0.8 * blob(0.47, 0.74, 0.045))
            }
        }
        let rendered = Heatmap.render(map: map, mapWidth: side, mapHeight: side, over: image, threshold: 0.5, scale: 0...1)
        try PNGEncoder.encode(rendered, text: ["Comment": "synthetic anomaly map, threshold 0.5, scale 0...1"])
            .write(to: URL(fileURLWithPath: arguments[1]))
        let raw = try Heatmap.raw16(map: map, mapWidth: side, mapHeight: side, scale: 0...1)
        try raw.write(to: URL(fileURLWithPath: arguments[1]).deletingPathExtension().appendingPathExtension("raw16.png"))
    default:
        fail("unknown command \(command)")
    }
} catch {
    fail("\(error)")
}
