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
        guard caching else { return HalfSquaredDistance.ofNormalized(teacher, student, epsilon: teacherNorm.epsilon) }
        studentNorm.mode = .training
        distance.mode = .training
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

    /// The level pairs of A64 = O1 + O6, A32 = O2 + O5, A16 = O3 + O4.
    static let levelPairs = [(0, 5), (1, 4), (2, 3)]

    /// A64, A32, A16, each (N, 1, height, width), every level map resized straight to that size.
    public static func sums(levelMaps: [Tensor], height: Int, width: Int) -> [Tensor] {
        precondition(levelMaps.count == 6, "fusion needs six level maps, got \(levelMaps.count)")
        let maps = levelMaps.map { resized($0, height: height, width: width) }
        return levelPairs.map { maps[$0.0] + maps[$0.1] }
    }

    /// The S-T map A64 * A32 * A16 at (height, width), in one pass (`MapKernels`).
    public static func studentTeacherMap(levelMaps: [Tensor], height: Int, width: Int) -> Tensor {
        precondition(levelMaps.count == 6, "fusion needs six level maps, got \(levelMaps.count)")
        return MapKernels.resizedPairSumProduct(levelMaps, pairs: levelPairs, height: height, width: width)
    }

    /// Each item of an (N, 1, H, W) map through `gaussianSmoothed`.
    public static func smoothed(_ map: Tensor, sigma: Float) -> Tensor {
        MapKernels.gaussianBlurred(map, sigma: sigma)
    }

    /// D's input (N, 3, height, width): A64, A32, A16 each divided by its mean over normal
    /// samples, in one pass (`MapKernels`).
    public static func discriminatorInput(levelMaps: [Tensor], height: Int, width: Int, channelMeans: [Float]) -> Tensor {
        precondition(channelMeans.count == 3, "D input needs three channel means")
        precondition(levelMaps.count == 6, "fusion needs six level maps, got \(levelMaps.count)")
        return MapKernels.resizedPairSums(levelMaps, pairs: levelPairs, scales: channelMeans.map { 1 / max($0, 1e-12) },
                                          height: height, width: width)
    }

    /// Per item: the maximum of the map (`.max`) or of its 21x21 mean filter (zero padding excluded
    /// from the average, as the edge-clipped window of DRAEM's avg_pool with count_include_pad false).
    public static func scores(of map: Tensor, rule: RSTPMConfiguration.ScoreRule) -> [Float] {
        switch rule {
        case .max:
            return MapKernels.itemMaxima(map).map { $0 ?? 0 }
        case .meanFilter21:
            let (N, H, W) = (map.batchSize, map.height, map.width)
            return (0..<N).map { n in
                meanFiltered(Array(map.scalars[(n * H * W)..<((n + 1) * H * W)]), height: H, width: W, radius: 10).max() ?? 0
            }
        }
    }

    /// Gaussian blur of an (height, width) plane with standard deviation `sigma` pixels (taps to
    /// 4 sigma, borders reflected as scipy's gaussian_filter, which STPM's code applies to its
    /// maps); `sigma` 0 returns the plane unchanged.
    public static func gaussianSmoothed(_ plane: [Float], height: Int, width: Int, sigma: Float) -> [Float] {
        MapKernels.gaussianBlurred(Tensor(shape: [1, 1, height, width], scalars: plane), sigma: sigma).scalars
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
