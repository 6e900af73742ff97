/// One 8-connected component of above-threshold pixels, in original-image pixel coordinates.
public struct AnomalyRegion: Sendable, Equatable, Codable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    /// Pixels in the component (not the bounding box).
    public var area: Int
    public var peakScore: Float

    public init(x: Int, y: Int, width: Int, height: Int, area: Int, peakScore: Float) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.area = area
        self.peakScore = peakScore
    }

    enum CodingKeys: String, CodingKey {
        case x, y, width, height, area
        case peakScore = "peak_score"
    }
}

/// Finds the anomaly regions of a map: the map is scaled to the original image size (bilinear,
/// pixel centres aligned as PyTorch's `align_corners=False`), thresholded (`>= threshold`) and
/// split into 8-connected components.
public enum RegionExtractor {
    /// - Parameters:
    ///   - map: anomaly scores, row-major. // (mapHeight, mapWidth)
    ///   - imageWidth, imageHeight: the original image's size; regions are in its pixels.
    ///   - maximumRegions: the largest regions kept (by area); `truncated` says whether more existed.
    public static func regions(
        map: [Float], mapWidth: Int, mapHeight: Int, imageWidth: Int, imageHeight: Int,
        threshold: Float, maximumRegions: Int = 64
    ) -> (regions: [AnomalyRegion], truncated: Bool) {
        precondition(map.count == mapWidth * mapHeight && mapWidth > 0 && mapHeight > 0, "map of \(map.count) values is not \(mapWidth)x\(mapHeight)")
        precondition(imageWidth > 0 && imageHeight > 0, "image size \(imageWidth)x\(imageHeight)")
        // Bilinear values never exceed the map's largest, so a map below the threshold (a normal
        // image, most of a line's) has no region: no image-sized upsample for it.
        guard map.contains(where: { $0 >= threshold }) else { return ([], false) }
        let W = imageWidth, H = imageHeight
        let scaled = upsample(map: map, mapWidth: mapWidth, mapHeight: mapHeight, width: W, height: H)
        // label: 0 unvisited, 1 visited; the stack holds pixel indices.
        var visited = [Bool](repeating: false, count: W * H)
        var stack: [Int] = []
        var found: [AnomalyRegion] = []
        for start in 0..<(W * H) where !visited[start] && scaled[start] >= threshold {
            visited[start] = true
            stack.append(start)
            var minX = Int.max, minY = Int.max, maxX = -1, maxY = -1, area = 0
            var peak = -Float.infinity
            while let index = stack.popLast() {
                let px = index % W, py = index / W
                area += 1
                peak = max(peak, scaled[index])
                minX = min(minX, px); maxX = max(maxX, px)
                minY = min(minY, py); maxY = max(maxY, py)
                for dy in -1...1 {
                    let ny = py + dy
                    if ny < 0 || ny >= H { continue }
                    for dx in -1...1 where dx != 0 || dy != 0 {
                        let nx = px + dx
                        if nx < 0 || nx >= W { continue }
                        let neighbour = ny * W + nx
                        if !visited[neighbour] && scaled[neighbour] >= threshold {
                            visited[neighbour] = true
                            stack.append(neighbour)
                        }
                    }
                }
            }
            found.append(AnomalyRegion(x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1, area: area, peakScore: peak))
        }
        found.sort { $0.area != $1.area ? $0.area > $1.area : ($0.y, $0.x) < ($1.y, $1.x) }
        let truncated = found.count > maximumRegions
        return (Array(found.prefix(maximumRegions)), truncated)
    }

    /// Bilinear resize with half-pixel centres (align_corners=False), edges clamped.
    /// map: (mapHeight, mapWidth) -> result: (height, width)
    public static func upsample(map: [Float], mapWidth: Int, mapHeight: Int, width: Int, height: Int) -> [Float] {
        if mapWidth == width && mapHeight == height { return map }
        var out = [Float](repeating: 0, count: width * height)
        let scaleX = Float(mapWidth) / Float(width), scaleY = Float(mapHeight) / Float(height)
        // Per-column source indices and weights, computed once.
        var x0 = [Int](repeating: 0, count: width), x1 = x0
        var wx = [Float](repeating: 0, count: width)
        for x in 0..<width {
            let source = max((Float(x) + 0.5) * scaleX - 0.5, 0)
            let left = min(Int(source), mapWidth - 1)
            x0[x] = left
            x1[x] = min(left + 1, mapWidth - 1)
            wx[x] = source - Float(left)
        }
        for y in 0..<height {
            let source = max((Float(y) + 0.5) * scaleY - 0.5, 0)
            let top = min(Int(source), mapHeight - 1)
            let bottom = min(top + 1, mapHeight - 1)
            let wy = source - Float(top)
            let rowTop = top * mapWidth, rowBottom = bottom * mapWidth
            for x in 0..<width {
                let a = map[rowTop + x0[x]] * (1 - wx[x]) + map[rowTop + x1[x]] * wx[x]
                let b = map[rowBottom + x0[x]] * (1 - wx[x]) + map[rowBottom + x1[x]] * wx[x]
                out[y * width + x] = a * (1 - wy) + b * wy
            }
        }
        return out
    }
}
