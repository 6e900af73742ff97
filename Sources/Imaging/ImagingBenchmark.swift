import Foundation

/// Decode + resize timings, for `rstpm bench imaging` and `bench/imaging.sh`.
public enum ImagingBenchmark {
    public struct Measurement: Sendable {
        /// What was measured, e.g. "png 900x900 -> 256x256".
        public let label: String
        /// Mean wall time of one decode + resize, after one warm-up run.
        public let millisecondsPerImage: Double
        /// Size the decoder produced before the resize (smaller than the file with DCT scaling).
        public let decodedSize: ImageSize
    }

    public struct Report: Sendable, CustomStringConvertible {
        public let measurements: [Measurement]

        public var description: String {
            measurements.map { m in
                let ms = String(format: "%8.2f", m.millisecondsPerImage)
                return "\(ms) ms/image  \(m.label)  (decoded at \(m.decodedSize.width)x\(m.decodedSize.height))"
            }.joined(separator: "\n")
        }
    }

    /// Decodes each file and resizes it to `size` (antialiased bilinear) `iterations` times;
    /// JPEGs are measured with DCT scaling (the production path) and without it.
    public static func run(files: [URL], size: ImageSize = ImageSize(width: 256, height: 256), iterations: Int = 10) throws -> Report {
        var measurements: [Measurement] = []
        for url in files {
            let data = try ImageDecoder.read(url)
            let isJPEG = data.first == 0xFF
            for useScaling in isJPEG ? [true, false] : [true] {
                let target = useScaling ? size : nil
                var decoded = ImageSize(width: 0, height: 0)
                func once() throws {
                    let image = try ImageDecoder.decode(data: data, name: url.path, targetSize: target)
                    decoded = ImageSize(width: image.width, height: image.height)
                    _ = Resize.bilinear(image, width: size.width, height: size.height)
                }
                try once()
                let start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<iterations { try once() }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(max(iterations, 1))
                let kind = isJPEG ? (useScaling ? "jpeg (DCT scaling)" : "jpeg (full decode)") : "png"
                measurements.append(Measurement(
                    label: "\(kind) \(url.lastPathComponent) -> \(size.width)x\(size.height)",
                    millisecondsPerImage: elapsed, decodedSize: decoded))
            }
        }
        return Report(measurements: measurements)
    }
}
