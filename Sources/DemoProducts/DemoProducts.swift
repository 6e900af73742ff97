import Foundation
import Imaging
import OperatorErrors
import SeededRandom

/// Procedural product photos for the out-of-the-box demo: plain-woven fabric with the natural
/// variation of a real roll (thread pitch, slant, tint, thread-to-thread brightness, uneven
/// light, sensor noise), and the same fabric with a drawn defect. Deterministic: the same seed
/// gives the same image on every machine.
public enum DemoProducts {
    public enum Defect: String, CaseIterable, Sendable {
        /// A thin light line across the weave.
        case scratch
        /// A dark ragged hole showing the backing.
        case hole
        /// A soft brownish blot soaked into the threads.
        case stain
    }

    /// A normal fabric image, `size` x `size`.
    public static func fabric(seed: UInt64, size: Int = 256) -> RGBImage {
        var generator = SplitMix64(state: 0xFAB_0000 ^ seed)
        func uniform(_ range: ClosedRange<Float>) -> Float { Float.random(in: range, using: &generator) }
        let pitch = uniform(7.6...8.4)
        let angle = uniform(-2...2) * .pi / 180
        let (phaseX, phaseY) = (uniform(0...pitch), uniform(0...pitch))
        let base: (Float, Float, Float) = (0.30 + uniform(-0.02...0.02), 0.40 + uniform(-0.02...0.02), 0.62 + uniform(-0.02...0.02))
        // Thread-to-thread brightness: each warp and weft thread has its own.
        let threads = Int(Float(size) * 1.5 / pitch) + 4
        let warp = (0..<threads).map { _ in uniform(0.88...1.08) }
        let weft = (0..<threads).map { _ in uniform(0.88...1.08) }
        let light = (uniform(-0.08...0.08), uniform(-0.08...0.08))
        let (cosine, sine) = (cos(angle), sin(angle))
        var pixels = [Float](repeating: 0, count: size * size * 3)
        let centre = Float(size) / 2
        for y in 0..<size {
            for x in 0..<size {
                let (dx, dy) = (Float(x) - centre, Float(y) - centre)
                let u = cosine * dx - sine * dy + centre + phaseX + pitch * 8
                let v = sine * dx + cosine * dy + centre + phaseY + pitch * 8
                let (column, row) = (Int(u / pitch), Int(v / pitch))
                let (fu, fv) = (u / pitch - Float(column), v / pitch - Float(row))
                // Plain weave: the warp lies on top where column + row is even.
                let warpOnTop = (column + row) % 2 == 0
                let across = warpOnTop ? fu : fv
                let along = warpOnTop ? fv : fu
                let profile = sin(Float.pi * across) * (0.75 + 0.25 * sin(Float.pi * along))
                let thread = warpOnTop ? warp[column % threads] : weft[row % threads]
                let shade = (0.55 + 0.5 * profile) * thread * (1 + light.0 * dx / centre + light.1 * dy / centre)
                let noise = Float.random(in: -0.025...0.025, using: &generator)
                let i = 3 * (y * size + x)
                pixels[i] = clamp(base.0 * shade + noise)
                pixels[i + 1] = clamp(base.1 * shade + noise)
                pixels[i + 2] = clamp(base.2 * shade + noise)
            }
        }
        return RGBImage(width: size, height: size, pixels: pixels)
    }

    /// The fabric of `seed` with one `defect`, placed and shaped by `seed` too.
    public static func defective(seed: UInt64, defect: Defect, size: Int = 256) -> RGBImage {
        defectiveWithMask(seed: seed, defect: defect, size: size).image
    }

    /// `defective(seed:defect:size:)` and its ground truth: 255 on every pixel the defect painted
    /// (soft edges included), 0 elsewhere, as MVTec AD's masks.
    public static func defectiveWithMask(seed: UInt64, defect: Defect, size: Int = 256) -> (image: RGBImage, mask: GrayImage) {
        var image = fabric(seed: seed, size: size)
        var mask = GrayImage(width: size, height: size, pixels: [UInt8](repeating: 0, count: size * size))
        var generator = SplitMix64(state: 0xDEF_0000 ^ seed)
        func uniform(_ range: ClosedRange<Float>) -> Float { Float.random(in: range, using: &generator) }
        let s = Float(size)
        let (cx, cy) = (uniform(0.3...0.7) * s, uniform(0.3...0.7) * s)
        switch defect {
        case .scratch:
            let angle = uniform(0...Float.pi)
            let length = uniform(0.35...0.55) * s
            let width = uniform(2.5...3.5) * s / 256
            let bend = uniform(-0.08...0.08) * s
            paint(&image, &mask) { x, y in
                let (dx, dy) = (x - cx, y - cy)
                let along = dx * cos(angle) + dy * sin(angle)
                guard abs(along) < length / 2 else { return nil }
                let t = along / (length / 2)
                let across = -dx * sin(angle) + dy * cos(angle) - bend * (1 - t * t)
                let weight = max(0, 1 - abs(across) / width)
                return weight > 0 ? ((0.92, 0.92, 0.88), weight) : nil
            }
        case .hole:
            let radius = uniform(0.05...0.08) * s
            let lobes = (0..<5).map { _ in (uniform(0.1...0.25), uniform(0...(2 * Float.pi))) }
            paint(&image, &mask) { x, y in
                let (dx, dy) = (x - cx, y - cy)
                let theta = atan2(dy, dx)
                let edge = radius * (1 + lobes.enumerated().reduce(0) { $0 + $1.element.0 * sin(Float($1.offset + 2) * theta + $1.element.1) / 2 })
                let distance = (dx * dx + dy * dy).squareRoot()
                let weight = min(max(edge + 1.5 - distance, 0) / 3, 1)
                return weight > 0 ? ((0.05, 0.04, 0.04), weight) : nil
            }
        case .stain:
            let blobs = (0..<4).map { _ in (uniform(-0.06...0.06) * s, uniform(-0.06...0.06) * s, uniform(0.05...0.09) * s) }
            let strength = uniform(0.7...0.85)
            paint(&image, &mask) { x, y in
                let density = blobs.reduce(Float(0)) { sum, blob in
                    let (dx, dy) = (x - cx - blob.0, y - cy - blob.1)
                    return sum + exp(-(dx * dx + dy * dy) / (2 * blob.2 * blob.2))
                }
                let weight = min(density, 1) * strength
                return weight > 0.02 ? ((0.45, 0.30, 0.12), weight) : nil
            }
        }
        return (image, mask)
    }

    /// Blends `colour` over the image with the weight the closure gives per pixel (nil: untouched)
    /// and marks the pixels it blends in `mask`.
    private static func paint(_ image: inout RGBImage, _ mask: inout GrayImage, _ shade: (Float, Float) -> ((Float, Float, Float), Float)?) {
        for y in 0..<image.height {
            for x in 0..<image.width {
                guard let (colour, weight) = shade(Float(x) + 0.5, Float(y) + 0.5) else { continue }
                mask.pixels[y * image.width + x] = 255
                let i = 3 * (y * image.width + x)
                image.pixels[i] = clamp(image.pixels[i] * (1 - weight) + colour.0 * weight)
                image.pixels[i + 1] = clamp(image.pixels[i + 1] * (1 - weight) + colour.1 * weight)
                image.pixels[i + 2] = clamp(image.pixels[i + 2] * (1 - weight) + colour.2 * weight)
            }
        }
    }

    private static func clamp(_ value: Float) -> Float { min(max(value, 0), 1) }
}

extension DemoProducts {
    /// The fabric product as one MVTec AD category, so that it can be trained on and evaluated like
    /// any other: train/good, test/good and test/<defect> PNGs, ground_truth/<defect>/<name>_mask.png.
    /// Every image has a seed of its own, counted up from `firstSeed` (training, then test good,
    /// then each defect type), so no test image shows a roll the model trained on.
    public struct FabricDataSet: Sendable {
        public static let categoryName = "fabric"

        public var trainImages: Int
        public var testGoodImages: Int
        public var defectiveImagesPerType: Int
        public var size: Int
        public var firstSeed: UInt64

        public init(trainImages: Int = 200, testGoodImages: Int = 40, defectiveImagesPerType: Int = 20, size: Int = 256, firstSeed: UInt64 = 0) {
            self.trainImages = trainImages
            self.testGoodImages = testGoodImages
            self.defectiveImagesPerType = defectiveImagesPerType
            self.size = size
            self.firstSeed = firstSeed
        }

        /// One image of the category: where it goes and what it shows.
        public struct Sample: Sendable, Equatable {
            /// The folder relative to the category, e.g. "train/good" or "test/hole".
            public let folder: String
            /// The file name without extension, e.g. "007".
            public let name: String
            public let seed: UInt64
            /// nil for a normal image.
            public let defect: Defect?
        }

        /// Every image in writing order.
        public var samples: [Sample] {
            var samples: [Sample] = []
            var seed = firstSeed
            func add(_ count: Int, folder: String, defect: Defect?) {
                for index in 0..<count {
                    samples.append(Sample(folder: folder, name: String(format: "%03d", index), seed: seed, defect: defect))
                    seed &+= 1
                }
            }
            add(trainImages, folder: "train/good", defect: nil)
            add(testGoodImages, folder: "test/good", defect: nil)
            for defect in Defect.allCases {
                add(defectiveImagesPerType, folder: "test/\(defect.rawValue)", defect: defect)
            }
            return samples
        }

        /// Writes the category to `parent/fabric` and returns that folder. It is built under a
        /// temporary name and renamed into place, so an interrupted run leaves no partial category
        /// that a later run could take for a complete one. An existing category is an error.
        @discardableResult
        public func write(into parent: URL) throws -> URL {
            let manager = FileManager.default
            let category = parent.appendingPathComponent(Self.categoryName)
            guard !manager.fileExists(atPath: category.path) else {
                throw OperatorError(.conflict, path: category.path, problem: "already exists", hint: "remove it, or write into another folder")
            }
            let temporary = parent.appendingPathComponent(".\(Self.categoryName).tmp-\(UUID().uuidString)")
            do {
                for sample in samples {
                    let folder = temporary.appendingPathComponent(sample.folder)
                    try manager.createDirectory(at: folder, withIntermediateDirectories: true)
                    guard let defect = sample.defect else {
                        try PNGEncoder.encode(fabric(seed: sample.seed, size: size)).write(to: folder.appendingPathComponent(sample.name + ".png"))
                        continue
                    }
                    let (image, mask) = defectiveWithMask(seed: sample.seed, defect: defect, size: size)
                    try PNGEncoder.encode(image).write(to: folder.appendingPathComponent(sample.name + ".png"))
                    let masks = temporary.appendingPathComponent("ground_truth/\(defect.rawValue)")
                    try manager.createDirectory(at: masks, withIntermediateDirectories: true)
                    try PNGEncoder.encode(gray: mask.pixels, width: mask.width, height: mask.height)
                        .write(to: masks.appendingPathComponent(sample.name + "_mask.png"))
                }
                try manager.moveItem(at: temporary, to: category)
            } catch {
                try? manager.removeItem(at: temporary)
                throw OperatorError(.writeFailed, path: category.path, problem: "cannot write the fabric data set (\(error))",
                                 hint: "check free space and write permission of \(parent.path)")
            }
            return category
        }
    }
}
