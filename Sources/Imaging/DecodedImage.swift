/// A decoded file at its own precision (`ImageDecoder.decodeCompact`): bytes for 8-bit files,
/// floats for 16-bit ones. Resizing either gives what `Resize.bilinear` gives on the float
/// image `ImageDecoder.decode` returns for the same file.
public enum DecodedImage: Sendable, Equatable {
    case bytes(RGB8Image)
    case floats(RGBImage)

    public var width: Int {
        switch self {
        case .bytes(let image): return image.width
        case .floats(let image): return image.width
        }
    }

    public var height: Int {
        switch self {
        case .bytes(let image): return image.height
        case .floats(let image): return image.height
        }
    }

    /// Antialiased bilinear to `width` x `height` (the image itself when the size is the same).
    public func resized(width: Int, height: Int) -> RGBImage {
        switch self {
        case .bytes(let image): return Resize.bilinear(image, width: width, height: height)
        case .floats(let image): return Resize.bilinear(image, width: width, height: height)
        }
    }
}
