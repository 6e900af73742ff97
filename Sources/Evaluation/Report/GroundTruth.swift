// Ground-truth masks for the pixel metrics, and the panels of the report's image rows.
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

extension ImagePanels {
    /// The four panels of an image row. The image is scaled so its longer side is `side`
    /// pixels; the heatmap is `Heatmap.render` over it (outline of the region >= `threshold` in
    /// white) once on `scale` and once on 0 to the map's maximum; the ground truth is the mask
    /// resized nearest and binarised (black without a mask); the predicted mask is the map,
    /// resized bilinear to the panel as the heatmap, >= `threshold`.
    public static func render(image: RGBImage, mask: GrayImage?, map: [Float], mapWidth: Int, mapHeight: Int,
                              threshold: Float?, scale: ClosedRange<Float>, side: Int = 320) throws -> ImagePanels {
        let factor = Double(side) / Double(max(image.width, image.height))
        let width = max(Int((Double(image.width) * factor).rounded()), 1)
        let height = max(Int((Double(image.height) * factor).rounded()), 1)
        let background = Resize.bilinear(image, width: width, height: height)
        let ownMaximum = map.filter(\.isFinite).max() ?? 0
        let heatmap = Heatmap.render(map: map, mapWidth: mapWidth, mapHeight: mapHeight, over: background,
                                     threshold: threshold, scale: scale)
        let ownScale = Heatmap.render(map: map, mapWidth: mapWidth, mapHeight: mapHeight, over: background,
                                      threshold: threshold, scale: 0...max(ownMaximum, .leastNormalMagnitude))
        let truth = mask.map { GroundTruthMask.binarised(GroundTruthMask.nearest($0, width: width, height: height).pixels) }
            ?? [UInt8](repeating: 0, count: width * height)
        let predicted = try threshold.map { threshold -> Data in
            let values = Resize.bilinear(map: map, width: mapWidth, height: mapHeight, toWidth: width, toHeight: height)
            return try PNGEncoder.encode(gray: values.map { $0 >= threshold ? 255 : 0 }, width: width, height: height)
        }
        return ImagePanels(original: try JPEGEncoder.encode(background, quality: 85), heatmap: try JPEGEncoder.encode(heatmap, quality: 85),
                           ownScaleHeatmap: try JPEGEncoder.encode(ownScale, quality: 85), ownScaleMaximum: ImageScore.decimal(ownMaximum),
                           groundTruth: try PNGEncoder.encode(gray: truth, width: width, height: height), predictedMask: predicted)
    }
}
