// Pixel-level metrics pooled over all test images of a category: pixel AUROC and AUPRO.

/// One point of a PRO curve: flagging every pixel >= `threshold` gives this global false
/// positive rate and this mean per-region overlap.
public struct PROPoint: Codable, Equatable {
    public let falsePositiveRate: Double
    public let perRegionOverlap: Double
    public let threshold: Double

    public init(falsePositiveRate: Double, perRegionOverlap: Double, threshold: Double) {
        self.falsePositiveRate = falsePositiveRate
        self.perRegionOverlap = perRegionOverlap
        self.threshold = threshold
    }
}

/// AUPRO and the PRO curve it integrates.
public struct AUPROResult: Codable, Equatable {
    /// Area under the PRO curve from FPR 0 to `fprLimit`, divided by `fprLimit` (0...1).
    public let value: Double
    public let fprLimit: Double
    /// Connected ground-truth regions over all images (8-connectivity, per image).
    public let regionCount: Int
    /// The curve from (0, 0) up to FPR = `fprLimit` (its last point interpolated there),
    /// thinned for plotting: consecutive points differ by at least 1/`maximumCurvePoints` of
    /// one axis' range (FPR 0...fprLimit, overlap 0...1), so there are at most about
    /// 2 x `maximumCurvePoints`. The value is computed from the full curve.
    public let curve: [PROPoint]
}

/// Connected regions of a binary mask, 8-connectivity (as scipy.ndimage.label with a 3x3
/// structure).
public struct ConnectedRegions {
    /// Region of each pixel, row-major (H, W): 0 outside every region, 1...count inside.
    public let labels: [Int32]
    public let count: Int
    /// Pixels per region: `sizes[r - 1]` for region r.
    public let sizes: [Int]

    public init(mask: [Bool], width: Int, height: Int) {
        precondition(width > 0 && height > 0 && mask.count == width * height,
                     "ConnectedRegions: mask has \(mask.count) pixels, expected \(width)x\(height)")
        var labels = [Int32](repeating: 0, count: mask.count)
        var sizes: [Int] = []
        var stack: [Int] = []
        for seed in 0..<mask.count where mask[seed] && labels[seed] == 0 {
            let region = Int32(sizes.count + 1)
            var size = 0
            labels[seed] = region
            stack.append(seed)
            while let pixel = stack.popLast() {
                size += 1
                let y = pixel / width, x = pixel - y * width
                for ny in max(y - 1, 0)...min(y + 1, height - 1) {
                    for nx in max(x - 1, 0)...min(x + 1, width - 1) {
                        let neighbour = ny * width + nx
                        if mask[neighbour] && labels[neighbour] == 0 {
                            labels[neighbour] = region
                            stack.append(neighbour)
                        }
                    }
                }
            }
            sizes.append(size)
        }
        self.labels = labels
        self.count = sizes.count
        self.sizes = sizes
    }
}

/// Collects anomaly maps and masks image by image, then computes pixel AUROC, the pixel ROC
/// curve and AUPRO exactly over every distinct map value.
///
/// Memory: 4 bytes per normal pixel and 8 per defect pixel (the maps themselves are not kept).
/// Masks are 8-bit (0/255 as read from the MVTec PNGs) and binarised at > 127; a nil mask
/// means a good image (every pixel normal).
public struct PixelMetricsAccumulator {
    public let width: Int
    public let height: Int
    public private(set) var imageCount = 0
    /// Ground-truth regions seen so far (0 when regions are not tracked).
    public var regionCount: Int { regionSizes.count }

    private let tracksRegions: Bool
    private var normalKeys: [UInt32] = []
    /// sortKey << 32 | global region index (index 0 when regions are not tracked).
    private var defectEntries: [UInt64] = []
    private var regionSizes: [Int] = []
    private var valuesSeen = 0
    private var isSorted = true

    public init(width: Int, height: Int) {
        precondition(width > 0 && height > 0, "PixelMetricsAccumulator: size \(width)x\(height)")
        self.width = width
        self.height = height
        self.tracksRegions = true
    }

    /// Pixel AUROC only needs the two classes, not the regions nor the image shape.
    init(pixelsPerImage: Int) {
        self.width = pixelsPerImage
        self.height = 1
        self.tracksRegions = false
    }

    /// Adds one image: `map` (H, W) row-major, `mask` (H, W) or nil for a good image.
    public mutating func add(map: [Float], mask: [UInt8]?) throws {
        let pixels = width * height
        precondition(map.count == pixels, "PixelMetricsAccumulator.add: map has \(map.count) values, expected \(width)x\(height)")
        if let mask { precondition(mask.count == pixels, "PixelMetricsAccumulator.add: mask has \(mask.count) values, expected \(width)x\(height)") }
        if let nan = map.firstIndex(where: { $0.isNaN }) {
            throw MetricError.notANumber(metric: "pixel metrics", index: valuesSeen + nan)
        }
        valuesSeen += pixels
        imageCount += 1
        isSorted = false
        let defectMask = mask.flatMap { mask in mask.contains(where: { $0 > 127 }) ? mask.map { $0 > 127 } : nil }
        let regions = tracksRegions ? defectMask.map { ConnectedRegions(mask: $0, width: width, height: height) } : nil
        let defectCount = defectMask?.reduce(0) { $0 + ($1 ? 1 : 0) } ?? 0
        let regionBase = UInt64(regionSizes.count)
        if let regions { regionSizes.append(contentsOf: regions.sizes) }
        // Grow both arrays once, then fill them through pointers: this loop sees every pixel.
        var n = normalKeys.count, d = defectEntries.count
        normalKeys.append(contentsOf: repeatElement(0, count: pixels - defectCount))
        defectEntries.append(contentsOf: repeatElement(0, count: defectCount))
        map.withUnsafeBufferPointer { values in
            normalKeys.withUnsafeMutableBufferPointer { normal in
                guard let defectMask else {
                    for i in 0..<pixels { normal[n + i] = sortKey(values[i]) }
                    return
                }
                defectEntries.withUnsafeMutableBufferPointer { defect in
                    for i in 0..<pixels {
                        let key = sortKey(values[i])
                        if defectMask[i] {
                            // Regions not tracked: every defect pixel is filed under region 0.
                            let region = regions.map { UInt64($0.labels[i] - 1) + regionBase } ?? 0
                            defect[d] = UInt64(key) << 32 | region
                            d += 1
                        } else {
                            normal[n] = key
                            n += 1
                        }
                    }
                }
            }
        }
    }

    private mutating func sortIfNeeded() {
        guard !isSorted else { return }
        radixSort(&normalKeys, bytes: 0..<4)
        radixSort(&defectEntries, bytes: 4..<8)
        isSorted = true
    }

    /// Visits the distinct map values from the highest down, with how many normal pixels have
    /// that value and which (sorted) defect entries do; `visit` returns false to stop.
    private func walkDescending(_ visit: (_ key: UInt32, _ normals: Int, _ defects: UnsafeBufferPointer<UInt64>.SubSequence) -> Bool) {
        normalKeys.withUnsafeBufferPointer { normal in
            defectEntries.withUnsafeBufferPointer { defect in
                var i = normal.count - 1, j = defect.count - 1
                while i >= 0 || j >= 0 {
                    let key: UInt32
                    if i < 0 { key = UInt32(truncatingIfNeeded: defect[j] >> 32) }
                    else if j < 0 { key = normal[i] }
                    else { key = max(normal[i], UInt32(truncatingIfNeeded: defect[j] >> 32)) }
                    var normals = 0
                    while i >= 0 && normal[i] == key { normals += 1; i -= 1 }
                    let defectEnd = j + 1
                    while j >= 0 && UInt32(truncatingIfNeeded: defect[j] >> 32) == key { j -= 1 }
                    if !visit(key, normals, defect[(j + 1)..<defectEnd]) { return }
                }
            }
        }
    }

    private func checkBothClasses(metric: String) throws {
        guard !normalKeys.isEmpty, !defectEntries.isEmpty else {
            throw MetricError.singleClass(metric: metric, positives: defectEntries.count, negatives: normalKeys.count)
        }
    }

    /// ROC AUC over all pixels pooled (Mann-Whitney, ties count half; equal to scikit-learn's
    /// `roc_auc_score` on the flattened maps and masks).
    public mutating func pixelAUROC() throws -> Double {
        try checkBothClasses(metric: "pixel AUROC")
        sortIfNeeded()
        let negatives = Double(normalKeys.count), positives = Double(defectEntries.count)
        var normalsAbove = 0.0, wins = 0.0
        walkDescending { _, normals, defects in
            let below = negatives - normalsAbove - Double(normals)
            wins += Double(defects.count) * (below + 0.5 * Double(normals))
            normalsAbove += Double(normals)
            return true
        }
        return wins / (positives * negatives)
    }

    /// The pixel ROC curve from (0, 0) to (1, 1), thinned so that consecutive points differ by
    /// at least 1/`maximumPoints` along one axis (at most about 2 x `maximumPoints` points).
    public mutating func pixelROCCurve(maximumPoints: Int = 1024) throws -> [ROCPoint] {
        precondition(maximumPoints > 0, "pixelROCCurve: maximumPoints must be positive")
        try checkBothClasses(metric: "pixel ROC curve")
        sortIfNeeded()
        let negatives = Double(normalKeys.count), positives = Double(defectEntries.count)
        let step = 1.0 / Double(maximumPoints)
        var points = [ROCPoint(falsePositiveRate: 0, truePositiveRate: 0, threshold: .infinity)]
        var falsePositives = 0, truePositives = 0
        var pending: ROCPoint?
        walkDescending { key, normals, defects in
            falsePositives += normals
            truePositives += defects.count
            let point = ROCPoint(falsePositiveRate: Double(falsePositives) / negatives,
                                 truePositiveRate: Double(truePositives) / positives,
                                 threshold: Double(scoreValue(ofKey: key)))
            let last = points[points.count - 1]
            if point.falsePositiveRate - last.falsePositiveRate >= step || point.truePositiveRate - last.truePositiveRate >= step {
                points.append(point); pending = nil
            } else {
                pending = point
            }
            return true
        }
        if let pending { points.append(pending) }
        return points
    }

    /// Area under the per-region-overlap curve up to `fprLimit`, divided by `fprLimit`.
    ///
    /// For each distinct map value t (descending): FPR(t) = fraction of normal pixels >= t,
    /// PRO(t) = mean over regions of the fraction of the region's pixels >= t. Points are
    /// joined by straight lines (trapezoids), the curve is interpolated at exactly `fprLimit`.
    /// Unlike anomalib's reference, which steps through ties one normal pixel at a time, tied
    /// values form one point, so constant maps give the diagonal (AUPRO = fprLimit / 2).
    public mutating func aupro(fprLimit: Double = 0.3, maximumCurvePoints: Int = 1024) throws -> AUPROResult {
        precondition(tracksRegions, "aupro: this accumulator was made without region tracking")
        precondition(fprLimit > 0 && fprLimit <= 1, "aupro: fprLimit \(fprLimit) is outside (0, 1]")
        precondition(maximumCurvePoints > 0, "aupro: maximumCurvePoints must be positive")
        guard !regionSizes.isEmpty else { throw MetricError.noDefectRegions(metric: "AUPRO") }
        guard !normalKeys.isEmpty else { throw MetricError.noNormalPixels(metric: "AUPRO") }
        sortIfNeeded()
        // A region pixel adds 1 / (regions x its region's size) to the mean overlap.
        let weights = regionSizes.map { 1.0 / (Double(regionSizes.count) * Double($0)) }
        let negatives = Double(normalKeys.count)
        let fprStep = fprLimit / Double(maximumCurvePoints), overlapStep = 1.0 / Double(maximumCurvePoints)
        var curve = [PROPoint(falsePositiveRate: 0, perRegionOverlap: 0, threshold: .infinity)]
        var previous = curve[0]
        var falsePositives = 0, overlap = 0.0, area = 0.0
        walkDescending { key, normals, defects in
            falsePositives += normals
            for entry in defects { overlap += weights[Int(truncatingIfNeeded: entry & 0xffff_ffff)] }
            let point = PROPoint(falsePositiveRate: Double(falsePositives) / negatives, perRegionOverlap: overlap,
                                 threshold: Double(scoreValue(ofKey: key)))
            if point.falsePositiveRate > fprLimit {
                let fraction = (fprLimit - previous.falsePositiveRate) / (point.falsePositiveRate - previous.falsePositiveRate)
                let overlapAtLimit = previous.perRegionOverlap + (point.perRegionOverlap - previous.perRegionOverlap) * fraction
                area += 0.5 * (previous.perRegionOverlap + overlapAtLimit) * (fprLimit - previous.falsePositiveRate)
                curve.append(PROPoint(falsePositiveRate: fprLimit, perRegionOverlap: overlapAtLimit, threshold: point.threshold))
                return false
            }
            area += 0.5 * (previous.perRegionOverlap + point.perRegionOverlap) * (point.falsePositiveRate - previous.falsePositiveRate)
            previous = point
            let last = curve[curve.count - 1]
            if point.falsePositiveRate - last.falsePositiveRate >= fprStep || point.perRegionOverlap - last.perRegionOverlap >= overlapStep
                || point.falsePositiveRate == fprLimit {
                curve.append(point)
            }
            return true
        }
        return AUPROResult(value: area / fprLimit, fprLimit: fprLimit, regionCount: regionSizes.count, curve: curve)
    }
}

/// Pixel AUROC pooled over all images: `maps[i]` and `masks[i]` have the same pixel count;
/// masks are 0/255 (binarised at > 127), nil for a good image.
public func pixelAUROC(maps: [[Float]], masks: [[UInt8]?]) throws -> Double {
    precondition(maps.count == masks.count, "pixelAUROC: \(maps.count) maps but \(masks.count) masks")
    guard let first = maps.first else { throw MetricError.empty(metric: "pixel AUROC") }
    var accumulator = PixelMetricsAccumulator(pixelsPerImage: first.count)
    for (map, mask) in zip(maps, masks) { try accumulator.add(map: map, mask: mask) }
    return try accumulator.pixelAUROC()
}

/// AUPRO over all images (see `PixelMetricsAccumulator.aupro`): maps and masks (H, W)
/// row-major with H = `height`, W = `width`; masks 0/255, nil for a good image.
public func aupro(maps: [[Float]], masks: [[UInt8]?], width: Int, height: Int, fprLimit: Double = 0.3) throws -> AUPROResult {
    precondition(maps.count == masks.count, "aupro: \(maps.count) maps but \(masks.count) masks")
    guard !maps.isEmpty else { throw MetricError.empty(metric: "AUPRO") }
    var accumulator = PixelMetricsAccumulator(width: width, height: height)
    for (map, mask) in zip(maps, masks) { try accumulator.add(map: map, mask: mask) }
    return try accumulator.aupro(fprLimit: fprLimit)
}
