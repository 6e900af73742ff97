import Checkpoints
import Foundation
import Imaging
import OperatorErrors

/// The normal images of one product, decoded once and resized to the input size.
public struct TrainingImages {
    /// The folder the images were read from (CATEGORY/train/good, or the folder given).
    public let folder: URL
    public let files: [URL]
    public let images: [PlanarImage]

    public init(folder: URL, files: [URL], images: [PlanarImage]) {
        precondition(files.count == images.count, "one image per file")
        self.folder = folder
        self.files = files
        self.images = images
    }

    /// Reads every PNG/JPEG/BMP/TIFF of `CATEGORY_DIR/train/good` (or of `directory` itself when it has no
    /// train/good), sorted by name, resized to width x height.
    public static func load(from directory: URL, width: Int, height: Int) throws -> TrainingImages {
        let nested = directory.appendingPathComponent("train/good")
        var isDirectory: ObjCBool = false
        let folder = FileManager.default.fileExists(atPath: nested.path, isDirectory: &isDirectory) && isDirectory.boolValue ? nested : directory
        let files = try imageFiles(in: folder)
        guard !files.isEmpty else {
            throw OperatorError(.empty, path: folder.path, problem: "no PNG, JPEG, BMP or TIFF images found",
                             hint: "pass a category folder with train/good/*.png (MVTec AD layout) or a folder of normal images")
        }
        let images = try files.map { file in
            try ModelInput.decodeResized(ImageDecoder.read(file), name: file.path, width: width, height: height, limits: .default)
        }
        return TrainingImages(folder: folder, files: files, images: images)
    }

    /// PNG/JPEG/BMP/TIFF files (by extension) directly in `folder`, sorted by name.
    public static func imageFiles(in folder: URL) throws -> [URL] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder.path) } catch {
            throw OperatorError(.unreadable, path: folder.path, problem: "cannot list the folder (\(error.localizedDescription))",
                             hint: "check that the path exists and is readable")
        }
        return names.filter { ImageDecoder.hasImageExtension(URL(fileURLWithPath: $0)) }
            .sorted().map { folder.appendingPathComponent($0) }
    }

    /// SHA-256 of the newline-joined file names (which images were used, independent of the path).
    public var fileListSHA256: String {
        sha256Hex(of: Array(files.map(\.lastPathComponent).joined(separator: "\n").utf8))
    }
}

/// Anomaly-source textures from a folder of PNG/JPEG images (DTD-like), decoded on demand and
/// resized to the requested size.
public struct ImageFolderTextureSource: TextureSource {
    public let files: [URL]
    public var count: Int { files.count }

    public init(directory: URL) throws {
        files = try TrainingImages.imageFiles(in: directory)
        guard !files.isEmpty else { throw OperatorError(.empty, path: directory.path, problem: "no images found", hint: "point the texture source at a folder of PNG or JPEG images") }
    }

    public func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage {
        do {
            return try ModelInput.decodeResized(ImageDecoder.read(files[index]), name: files[index].path, width: width, height: height, limits: .default)
        } catch {
            throw OperatorError.unreadableTextures(path: files[index].path, reason: "\(error)")
        }
    }
}

/// Several texture sources one after another.
public struct CombinedTextureSource: TextureSource {
    public let sources: [any TextureSource]
    public var count: Int { sources.reduce(0) { $0 + $1.count } }

    public init(sources: [any TextureSource]) {
        self.sources = sources
    }

    public func texture(at index: Int, width: Int, height: Int) throws -> PlanarImage {
        var offset = index
        for source in sources {
            if offset < source.count { return try source.texture(at: offset, width: width, height: height) }
            offset -= source.count
        }
        preconditionFailure("texture index \(index) outside 0..<\(count)")
    }

    /// The default anomaly sources: `directory` when given; otherwise the GIMP patterns if
    /// installed, plus procedural textures.
    public static func standard(directory: String?) throws -> any TextureSource {
        if let directory { return try ImageFolderTextureSource(directory: URL(fileURLWithPath: directory)) }
        var sources: [any TextureSource] = []
        let gimp = URL(fileURLWithPath: "/usr/share/gimp/2.0/patterns")
        if FileManager.default.fileExists(atPath: gimp.path), let patterns = try? GIMPPatternSource(directory: gimp) {
            sources.append(patterns)
        }
        sources.append(ProceduralTextureSource())
        return CombinedTextureSource(sources: sources)
    }
}
