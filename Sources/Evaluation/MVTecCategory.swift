// The MVTec AD folder layout of one category:
//   ROOT/train/good/*.png                             (optional: evaluation reads only test/)
//   ROOT/test/<good|defect type>/*.png
//   ROOT/ground_truth/<defect type>/<name>_mask.png   (optional: without it, image metrics only)
import Foundation
import Imaging
import OperatorErrors

/// One test image of a category.
public struct MVTecSample: Codable, Equatable {
    public let image: URL
    /// "good" or the defect type (the folder name under test/).
    public let defectType: String
    /// 0 for good, 1 for defective.
    public let label: Int
    /// The ground-truth mask; nil for good images and in categories without ground_truth/.
    public let mask: URL?
}

/// The file listing of one category in the MVTec AD layout.
public struct MVTecCategory {
    public static let goodType = "good"
    static let maskHint = "every defective test image needs ground_truth/<type>/<name>_mask.png; remove the ground_truth folder to evaluate image metrics only"
    public static let imageExtensions = ImageDecoder.fileExtensions

    public let root: URL
    /// The category name: the root folder's name.
    public let name: String
    /// The images of train/good; empty when the folder is absent (evaluation needs only test/).
    public let trainImages: [URL]
    /// Test images sorted by defect type ("good" first), then by file name.
    public let testSamples: [MVTecSample]
    /// Defect types found under test/, sorted, without "good".
    public let defectTypes: [String]
    /// Whether ground_truth/ exists: pixel metrics are possible only then.
    public let hasPixelGroundTruth: Bool

    public init(root: URL) throws {
        let fileManager = FileManager.default
        let train = root.appendingPathComponent("train").appendingPathComponent(Self.goodType)
        let test = root.appendingPathComponent("test")
        let groundTruth = root.appendingPathComponent("ground_truth")
        guard Self.isDirectory(root) else {
            throw OperatorError(.notFound, path: root.path, problem: "folder not found", hint: "expected a category folder with test/<type>, and optionally train/good and ground_truth/<type>")
        }
        guard Self.isDirectory(test) else {
            throw OperatorError(.notFound, path: test.path, problem: "folder not found", hint: "the test images of the MVTec AD layout live in test/<good|defect type>")
        }
        let trainImages = Self.isDirectory(train) ? try Self.images(in: train) : []
        let hasGroundTruth = Self.isDirectory(groundTruth)
        var samples: [MVTecSample] = []
        var defectTypes: [String] = []
        for typeFolder in try Self.subfolders(of: test) {
            let type = typeFolder.lastPathComponent
            let isGood = type == Self.goodType
            if !isGood { defectTypes.append(type) }
            let images = try Self.images(in: typeFolder)
            guard !images.isEmpty else {
                throw OperatorError(.empty, path: typeFolder.path, problem: "no images", hint: "a test/<type> folder needs images (.png, .jpg, .bmp, .tif); remove it if the type has none")
            }
            for image in images {
                var mask: URL?
                if !isGood && hasGroundTruth {
                    let expected = groundTruth.appendingPathComponent(type)
                        .appendingPathComponent(image.deletingPathExtension().lastPathComponent + "_mask.png")
                    guard fileManager.fileExists(atPath: expected.path) else {
                        throw OperatorError(.notFound, path: image.path, problem: "its ground-truth mask \(expected.path) does not exist", hint: Self.maskHint)
                    }
                    mask = expected
                }
                samples.append(MVTecSample(image: image, defectType: type, label: isGood ? 0 : 1, mask: mask))
            }
        }
        guard !samples.isEmpty else {
            throw OperatorError(.empty, path: test.path, problem: "no images", hint: "add test images under test/good and test/<defect type>")
        }
        samples.sort { ($0.label, $0.defectType, $0.image.lastPathComponent) < ($1.label, $1.defectType, $1.image.lastPathComponent) }
        self.root = root
        self.name = root.lastPathComponent
        self.trainImages = trainImages
        self.testSamples = samples
        self.defectTypes = defectTypes
        self.hasPixelGroundTruth = hasGroundTruth
    }

    public var goodTestCount: Int { testSamples.count { $0.label == 0 } }
    public var defectiveTestCount: Int { testSamples.count { $0.label == 1 } }

    /// Test samples of one defect type (or "good").
    public func testSamples(ofType type: String) -> [MVTecSample] {
        testSamples.filter { $0.defectType == type }
    }

    private static func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    private static func contents(of folder: URL) throws -> [URL] {
        // By path, not URL: Foundation's URL listing returns nothing for a symbolic link to a folder.
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }
                .sorted().map { folder.appendingPathComponent($0) }
        } catch {
            throw OperatorError(.unreadable, path: folder.path, problem: "cannot list the folder: \(error.localizedDescription)", hint: "check its permissions")
        }
    }

    private static func images(in folder: URL) throws -> [URL] {
        try contents(of: folder).filter { imageExtensions.contains($0.pathExtension.lowercased()) && !isDirectory($0) }
    }

    private static func subfolders(of folder: URL) throws -> [URL] {
        try contents(of: folder).filter { isDirectory($0) }
    }
}
