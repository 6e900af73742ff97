import Foundation
import Imaging

/// Decode + resize timings, for `ImagingBench bench` and `bench/imaging.sh`.
public enum ImagingBenchmark {
    public struct Measurement: Sendable {
        /// What was measured, e.g. "png good_000.png -> 256x256".
        public let label: String
        /// Mean wall time of one read + decode + resize, after one warm-up run.
        public let millisecondsPerImage: Double
        /// Size the decoder produced before the resize (smaller than the file with DCT scaling).
        public let decodedSize: ImageSize
        /// For the DCT-scaled JPEG path: mean |difference| from the full decode's result, in
        /// 8-bit levels (what the shortcut costs in fidelity).
        public let meanLevelsFromFullDecode: Double?
    }

    public struct Report: Sendable, CustomStringConvertible {
        public let measurements: [Measurement]

        public var description: String {
            measurements.map { m in
                let ms = String(format: "%8.2f", m.millisecondsPerImage)
                let fidelity = m.meanLevelsFromFullDecode.map { String(format: ", mean %.2f levels from the full decode", $0) } ?? ""
                return "\(ms) ms/image  \(m.label)  (decoded at \(m.decodedSize.width)x\(m.decodedSize.height)\(fidelity))"
            }.joined(separator: "\n")
        }
    }

    /// Reads and decodes each file (from the page cache after the warm-up) and resizes it to
    /// `size` (antialiased bilinear) `iterations` times; JPEGs are measured with DCT scaling
    /// (the production path) and without it; each file once more through the 8-bit path
    /// (`decodeCompact`), as rstpmd decodes; and for PNGs, rstpmd's heatmap stages.
    public static func run(files: [URL], size: ImageSize = ImageSize(width: 256, height: 256), iterations: Int = 10) throws -> Report {
        var measurements: [Measurement] = []
        for url in files {
            let isJPEG = try ImageDecoder.read(url).first == 0xFF
            var full: RGBImage?
            for useScaling in isJPEG ? [false, true] : [true] {
                let target = useScaling ? size : nil
                var decoded = ImageSize(width: 0, height: 0)
                func once() throws -> RGBImage {
                    let image = try ImageDecoder.decode(contentsOf: url, targetSize: target)
                    decoded = ImageSize(width: image.width, height: image.height)
                    return Resize.bilinear(image, width: size.width, height: size.height)
                }
                let result = try once()
                let start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<iterations { _ = try once() }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(max(iterations, 1))
                var fidelity: Double?
                if isJPEG && !useScaling { full = result }
                if isJPEG && useScaling, let full {
                    let total = zip(result.pixels, full.pixels).reduce(0.0) { $0 + Double(abs($1.0 - $1.1)) }
                    fidelity = total * 255 / Double(result.pixels.count)
                }
                let kind = isJPEG ? (useScaling ? "jpeg (DCT scaling)" : "jpeg (full decode)") : "png"
                measurements.append(Measurement(
                    label: "\(kind) \(url.lastPathComponent) -> \(size.width)x\(size.height)",
                    millisecondsPerImage: elapsed, decodedSize: decoded, meanLevelsFromFullDecode: fidelity))
            }
            // rstpmd's path: bytes kept at 8 bits, resized without a full-size float image.
            func compact() throws -> RGBImage {
                let image = try ImageDecoder.decodeCompact(data: ImageDecoder.read(url), name: url.path, targetSize: isJPEG ? size : nil)
                return image.resized(width: size.width, height: size.height)
            }
            _ = try compact()
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { _ = try compact() }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(max(iterations, 1))
            let decoded = try ImageDecoder.decodeCompact(data: ImageDecoder.read(url), name: url.path, targetSize: isJPEG ? size : nil)
            measurements.append(Measurement(
                label: "\(isJPEG ? "jpeg (DCT scaling)" : "png") \(url.lastPathComponent) -> \(size.width)x\(size.height), 8-bit path",
                millisecondsPerImage: elapsed, decodedSize: ImageSize(width: decoded.width, height: decoded.height), meanLevelsFromFullDecode: nil))
            if !isJPEG {
                measurements += try heatmapStages(url, maxSide: 512, iterations: iterations)
                measurements += try heatmapStages(url, maxSide: nil, iterations: iterations)
            }
        }
        return Report(measurements: measurements)
    }

    /// rstpmd's heatmap of a PNG at `maxSide` (nil: the original size), stage by stage: the
    /// background resized from the 8-bit decode, a 256x256 map coloured and outlined over it,
    /// the fast PNG encode.
    static func heatmapStages(_ url: URL, maxSide: Int?, iterations: Int) throws -> [Measurement] {
        let original = try ImageDecoder.decodeCompact(data: ImageDecoder.read(url), name: url.path)
        let scale = min(1, Double(maxSide ?? Int.max) / Double(max(original.width, original.height)))
        let size = ImageSize(width: max(1, Int((Double(original.width) * scale).rounded())),
                             height: max(1, Int((Double(original.height) * scale).rounded())))
        let side = 256
        let map = (0..<side * side).map { i -> Float in
            let x = Float(i % side) / Float(side) - 0.7, y = Float(i / side) / Float(side) - 0.4
            return exp(-(x * x + y * y) * 40)
        }
        func time(_ body: () throws -> Void) rethrows -> Double {
            try body()
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { try body() }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(max(iterations, 1))
        }
        var background = original.resized(width: size.width, height: size.height)
        let resize = time { background = original.resized(width: size.width, height: size.height) }
        var figure: [UInt8] = []
        let colour = time {
            figure = Heatmap.render8(map: map, mapWidth: side, mapHeight: side, over: background, threshold: 0.5, scale: 0...1)
        }
        var bytes = 0
        let encode = try time {
            bytes = try PNGEncoder.encode(rgb8: figure, width: size.width, height: size.height, text: ["rstpm.score": "1"],
                                          compression: .fast).count
        }
        let name = "\(url.lastPathComponent) at \(size.width)x\(size.height)"
        return [
            Measurement(label: "heatmap of \(name): background resize", millisecondsPerImage: resize, decodedSize: size, meanLevelsFromFullDecode: nil),
            Measurement(label: "heatmap of \(name): colour and outline", millisecondsPerImage: colour, decodedSize: size, meanLevelsFromFullDecode: nil),
            Measurement(label: "heatmap of \(name): fast PNG, \(bytes / 1000) kB", millisecondsPerImage: encode, decodedSize: size, meanLevelsFromFullDecode: nil),
        ]
    }
}
