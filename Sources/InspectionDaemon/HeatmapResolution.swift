/// How large a line's heatmap figure is (`lines[].heatmap_max_side`). The anomaly map behind it
/// is the model's input size (256x256 by default), so a figure at a camera's full resolution
/// shows nothing more, yet costs render, PNG encode and disk time in proportion to its pixels.
public enum HeatmapResolution: Sendable, Equatable {
    /// The original image's size, whatever it is.
    case original
    /// Scaled down (aspect ratio kept) so that the longer side is at most this many pixels;
    /// smaller images keep their size.
    case maximumSide(Int)

    /// Twice the default model's map side: the map's detail stays visible, a 900x900 figure
    /// has a third of the pixels.
    public static let `default` = HeatmapResolution.maximumSide(512)

    /// The figure's size for an image of `width` x `height`.
    public func size(width: Int, height: Int) -> (width: Int, height: Int) {
        guard case .maximumSide(let side) = self, max(width, height) > side else { return (width, height) }
        let scale = Double(side) / Double(max(width, height))
        return (max(1, Int((Double(width) * scale).rounded())), max(1, Int((Double(height) * scale).rounded())))
    }
}
