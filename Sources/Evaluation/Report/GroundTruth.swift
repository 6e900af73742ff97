// Ground-truth masks for the pixel metrics and the heatmap panels of the worst-case grid.
import Foundation
import Imaging

public enum GroundTruthMask {
    /// Reads a mask through Imaging, resizes it to the evaluation resolution with nearest
    /// neighbour (as PIL's NEAREST: source pixel floor((i + 0.5) * in / out)) and binarises it
    /// at > 127, giving (H, W) values 0 or 255.
    public static func load(contentsOf url: URL, width: Int, height: Int) throws -> [UInt8] {
        let mask = try ImageDecoder.decodeMask(contentsOf: url)
        return binarised(nearest(mask, width: width, height: height).pixels)
    }

    /// Nearest-neighbour resize of an 8-bit image (no interpolation, so a binary mask stays
    /// binary).
    public static func nearest(_ image: GrayImage, width: Int, height: Int) -> GrayImage {
        precondition(width > 0 && height > 0, "GroundTruthMask.nearest: cannot resize to \(width)x\(height)")
        if width == image.width && height == image.height { return image }
        let columns = (0..<width).map { min(Int((Double($0) + 0.5) * Double(image.width) / Double(width)), image.width - 1) }
        var pixels = [UInt8](repeating: 0, count: width * height)
        for y in 0..<height {
            let sourceRow = min(Int((Double(y) + 0.5) * Double(image.height) / Double(height)), image.height - 1) * image.width
            for x in 0..<width { pixels[y * width + x] = image.pixels[sourceRow + columns[x]] }
        }
        return GrayImage(width: width, height: height, pixels: pixels)
    }

    /// 255 where the value is > 127, else 0.
    public static func binarised(_ pixels: [UInt8]) -> [UInt8] {
        pixels.map { $0 > 127 ? 255 : 0 }
    }
}

public enum HeatmapPanel {
    /// The map over the image for a report grid: the image is first scaled so its longer side
    /// is `side` pixels, then `Heatmap.render` colours it (outline of the region above
    /// `threshold` in white); the ground-truth mask's outline is drawn in green on top.
    public static func render(image: RGBImage, map: [Float], mapWidth: Int, mapHeight: Int, mask: GrayImage?,
                              threshold: Float?, scale: ClosedRange<Float>, side: Int = 256) -> RGBImage {
        let factor = Double(side) / Double(max(image.width, image.height))
        let width = max(Int((Double(image.width) * factor).rounded()), 1)
        let height = max(Int((Double(image.height) * factor).rounded()), 1)
        var panel = Heatmap.render(map: map, mapWidth: mapWidth, mapHeight: mapHeight,
                                   over: Resize.bilinear(image, width: width, height: height),
                                   threshold: threshold, scale: scale)
        if let mask {
            let resized = GroundTruthMask.nearest(mask, width: width, height: height).pixels
            func inside(_ x: Int, _ y: Int) -> Bool {
                x >= 0 && y >= 0 && x < width && y < height && resized[y * width + x] > 127
            }
            // Boundary pixels of the mask and their right/lower neighbours: a 2-pixel line.
            for y in 0..<height {
                for x in 0..<width where inside(x, y) && (!inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1)) {
                    for (px, py) in [(x, y), (x + 1, y), (x, y + 1)] where px < width && py < height {
                        let i = 3 * (py * width + px)
                        panel.pixels[i] = 0.2; panel.pixels[i + 1] = 1; panel.pixels[i + 2] = 0.2
                    }
                }
            }
        }
        return panel
    }
}
