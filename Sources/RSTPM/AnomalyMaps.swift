import Foundation
import TensorEngine

/// One teacher-student level: `d = 0.5 * ||F^_t - F^_s||^2` per position with `F^ = F / max(||F||, 1e-12)`
/// over channels (method.md, "Training the two student-teacher pairs"). Only the student side
/// keeps a cache; the teacher is a constant.
final class PairDistance {
    private let studentNorm = L2Normalization(), teacherNorm = L2Normalization(), distance = HalfSquaredDistance()

    init() { teacherNorm.mode = .inference }

    /// teacher, student (N, C, h, w) -> map (N, 1, h, w); `caching` keeps what backward needs.
    func forward(teacher: Tensor, student: Tensor, caching: Bool) -> Tensor {
        precondition(teacher.shape == student.shape, "teacher \(teacher.shape) and student \(student.shape) features differ in shape")
        let mode: LayerMode = caching ? .training : .inference
        studentNorm.mode = mode
        distance.mode = mode
        return distance.forward(teacherNorm(teacher), studentNorm(student))
    }

    /// map gradient (N, 1, h, w) -> student feature gradient (N, C, h, w)
    func backward(_ mapGradient: Tensor) -> Tensor {
        studentNorm.backward(distance.backward(mapGradient).rhs)
    }
}

/// The six level maps and how they fuse (method.md, "Anomaly maps and fusion").
///
/// Level order: Omega1..3 = S1-T1 at strides 4, 8, 16; Omega4..6 = S2-T2 at strides 16, 8, 4.
public enum MapFusion {
    /// Bilinear resize (align_corners false) of an (N, 1, h, w) map.
    public static func resized(_ map: Tensor, height: Int, width: Int) -> Tensor {
        if map.height == height && map.width == width { return map }
        let resize = BilinearResize(outputHeight: height, outputWidth: width)
        resize.mode = .inference
        return resize(map)
    }

    /// A64 = O1 + O6, A32 = O2 + O5, A16 = O3 + O4, each (N, 1, height, width), every level map
    /// resized straight to that size.
    public static func sums(levelMaps: [Tensor], height: Int, width: Int) -> [Tensor] {
        precondition(levelMaps.count == 6, "fusion needs six level maps, got \(levelMaps.count)")
        let maps = levelMaps.map { resized($0, height: height, width: width) }
        return [maps[0] + maps[5], maps[1] + maps[4], maps[2] + maps[3]]
    }

    /// The S-T map A64 * A32 * A16 at (height, width).
    public static func studentTeacherMap(levelMaps: [Tensor], height: Int, width: Int) -> Tensor {
        let a = sums(levelMaps: levelMaps, height: height, width: width)
        return a[0] * a[1] * a[2]
    }

    /// Each item of an (N, 1, H, W) map through `gaussianSmoothed`.
    public static func smoothed(_ map: Tensor, sigma: Float) -> Tensor {
        guard sigma > 0 else { return map }
        let (N, H, W) = (map.batchSize, map.height, map.width)
        var scalars: [Float] = []
        scalars.reserveCapacity(map.count)
        for n in 0..<N {
            scalars += gaussianSmoothed(Array(map.scalars[(n * H * W)..<((n + 1) * H * W)]), height: H, width: W, sigma: sigma)
        }
        return Tensor(shape: map.shape, scalars: scalars)
    }

    /// D's input (N, 3, height, width): A64, A32, A16 each divided by its mean over normal samples.
    public static func discriminatorInput(levelMaps: [Tensor], height: Int, width: Int, channelMeans: [Float]) -> Tensor {
        precondition(channelMeans.count == 3, "D input needs three channel means")
        let a = sums(levelMaps: levelMaps, height: height, width: width)
        let (N, plane) = (a[0].batchSize, height * width)
        var scalars = [Float](repeating: 0, count: N * 3 * plane)
        for n in 0..<N {
            for c in 0..<3 {
                let scale = 1 / max(channelMeans[c], 1e-12)
                for i in 0..<plane { scalars[(n * 3 + c) * plane + i] = a[c].scalars[n * plane + i] * scale }
            }
        }
        return Tensor(shape: [N, 3, height, width], scalars: scalars)
    }

    /// Per item: the maximum of the map (`.max`) or of its 21x21 mean filter (zero padding excluded
    /// from the average, as the edge-clipped window of DRAEM's avg_pool with count_include_pad false).
    public static func scores(of map: Tensor, rule: RSTPMConfiguration.ScoreRule) -> [Float] {
        let (N, H, W) = (map.batchSize, map.height, map.width)
        return (0..<N).map { n in
            let item = Array(map.scalars[(n * H * W)..<((n + 1) * H * W)])
            switch rule {
            case .max: return item.max() ?? 0
            case .meanFilter21: return meanFiltered(item, height: H, width: W, radius: 10).max() ?? 0
            }
        }
    }

    /// Gaussian blur of an (height, width) plane with standard deviation `sigma` pixels (taps to
    /// 4 sigma, borders reflected as scipy's gaussian_filter, which STPM's code applies to its
    /// maps); `sigma` 0 returns the plane unchanged.
    public static func gaussianSmoothed(_ plane: [Float], height: Int, width: Int, sigma: Float) -> [Float] {
        guard sigma > 0 else { return plane }
        let radius = Int((4 * sigma).rounded())
        var taps = (-radius...radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let total = taps.reduce(0, +)
        taps = taps.map { $0 / total }
        // scipy's "reflect" mode: d c b a | a b c d | d c b a
        func reflected(_ i: Int, _ n: Int) -> Int {
            let period = 2 * n
            var j = i % period
            if j < 0 { j += period }
            return j < n ? j : period - 1 - j
        }
        // Both passes as tap-outer loops over padded lines, which the compiler vectorises.
        var rows = [Float](repeating: 0, count: plane.count)
        var padded = [Float](repeating: 0, count: width + 2 * radius)
        for y in 0..<height {
            for i in padded.indices { padded[i] = plane[y * width + reflected(i - radius, width)] }
            rows.withUnsafeMutableBufferPointer { rows in
                let row = rows.baseAddress! + y * width
                for (k, tap) in taps.enumerated() {
                    for x in 0..<width { row[x] += tap * padded[x + k] }
                }
            }
        }
        var out = [Float](repeating: 0, count: plane.count)
        out.withUnsafeMutableBufferPointer { out in
            rows.withUnsafeBufferPointer { rows in
                for y in 0..<height {
                    let target = out.baseAddress! + y * width
                    for (k, tap) in taps.enumerated() {
                        let source = rows.baseAddress! + reflected(y + k - radius, height) * width
                        for x in 0..<width { target[x] += tap * source[x] }
                    }
                }
            }
        }
        return out
    }

    /// Box mean over a (2r+1)^2 window clipped at the borders, via a summed-area table.
    static func meanFiltered(_ plane: [Float], height: Int, width: Int, radius: Int) -> [Float] {
        var table = [Double](repeating: 0, count: (height + 1) * (width + 1))
        for y in 0..<height {
            var row = 0.0
            for x in 0..<width {
                row += Double(plane[y * width + x])
                table[(y + 1) * (width + 1) + x + 1] = table[y * (width + 1) + x + 1] + row
            }
        }
        var out = [Float](repeating: 0, count: plane.count)
        for y in 0..<height {
            let (y0, y1) = (max(0, y - radius), min(height, y + radius + 1))
            for x in 0..<width {
                let (x0, x1) = (max(0, x - radius), min(width, x + radius + 1))
                let sum = table[y1 * (width + 1) + x1] - table[y0 * (width + 1) + x1] - table[y1 * (width + 1) + x0] + table[y0 * (width + 1) + x0]
                out[y * width + x] = Float(sum / Double((y1 - y0) * (x1 - x0)))
            }
        }
        return out
    }
}
