/// Anomaly sources cut from the product's own normal images: another training image, flipped or
/// shifted by half its size, so a pseudo-anomaly is a region of real product surface that does
/// not belong where it is (another part, another grinding pass, another lighting). Textures
/// alone teach "foreign material"; these teach "the product, but wrong here", which is what
/// misplaced parts and uneven surfaces look like. Each image gives four variants.
public struct ProductImageSource: TextureSource {
    public let images: [PlanarImage]
    public var count: Int { images.count * 4 }

    public init(images: [PlanarImage]) {
        precondition(!images.isEmpty, "a product image source needs images")
        self.images = images
    }

    public func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage {
        let image = images[index / 4]
        precondition(image.width == width && image.height == height,
                     "product image \(image.width)x\(image.height), anomaly size \(width)x\(height)")
        var out = image
        for c in 0..<3 {
            for y in 0..<height {
                for x in 0..<width {
                    let (sy, sx): (Int, Int)
                    switch index % 4 {
                    case 0: (sy, sx) = (y, width - 1 - x)
                    case 1: (sy, sx) = (height - 1 - y, x)
                    case 2: (sy, sx) = ((y + height / 2) % height, (x + width / 2) % width)
                    default: (sy, sx) = (height - 1 - y, width - 1 - x)
                    }
                    out[c, y, x] = image[c, sy, sx]
                }
            }
        }
        return out
    }
}

/// Two anomaly sources drawn half and half, whatever their sizes: even indices from `first`,
/// odd ones from `second`.
public struct InterleavedTextureSource: TextureSource {
    public let first: any TextureSource, second: any TextureSource
    public var count: Int { 2 * max(first.count, second.count) }

    public init(_ first: any TextureSource, _ second: any TextureSource) {
        self.first = first
        self.second = second
    }

    public func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage {
        let source = index % 2 == 0 ? first : second
        return try source.texture(at: (index / 2) % source.count, width: width, height: height)
    }
}
