import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The adversarial corpus of issue #13: hostile images, input names, inbox entry kinds,
/// checkpoints, wheels, model bundles and rstpmd configurations, generated from a seed.
/// `AdversarialCorpusTests` runs every case against the real `rstpm` and `rstpmd`;
/// `scripts/adversarial-corpus.sh` writes it to a folder for manual runs.
public struct AdversarialCorpus {
    /// What must become of an inbox entry after `rstpmd --once`.
    public enum Outcome: String, Sendable {
        /// A readable image: an `ok` or `defect` verdict, archived.
        case archived
        /// Not an image rstpmd reads: an `error` verdict, quarantined.
        case quarantined
        /// One of the two: a damaged image that a decoder may still read.
        case decided
        /// Never taken, left as it is: temporary upload names, links, FIFOs, directories, sockets.
        case untaken
        /// A name that is not UTF-8: quarantined (`non_utf8_name`) under an escaped name, with an
        /// `error` verdict; the raw name lives in the error record.
        case quarantinedUnderEscapedName
    }

    /// A file system entry the corpus lays down. In link targets `@OUTSIDE@` is the corpus's
    /// `outside/` folder (files no run may change) and `@ROOT@` a configuration case's folder.
    public enum Entry: Sendable {
        case file([UInt8])
        /// `header`, then a hole up to `size` bytes: big without using the disk.
        case sparseFile(header: [UInt8], size: Int)
        case symbolicLink(String)
        case hardLink(String)
        case fifo
        case directory
        case socket
    }

    public struct InboxCase: Sendable {
        /// Cases of one batch share an inbox and one `rstpmd --once` run.
        public var batch: String
        /// Raw bytes: some names are not UTF-8.
        public var name: [UInt8]
        public var entry: Entry
        public var outcome: Outcome
    }

    /// How a command given a case must end; it never dies by a signal, never hangs and never
    /// writes outside its folders.
    public enum Expectation: Sendable, Equatable {
        /// Exit status 0.
        case accepted
        /// A non-zero exit status, the output containing the text.
        case refused(String)
        /// Exit status 0, or a non-zero one with a message.
        case either
    }

    /// A file given to a command: a checkpoint to `rstpm classify --weights`, a wheel or a
    /// checkpoint to `rstpm weights fetch --from`.
    public struct FileCase: Sendable {
        public var name: String
        public var entry: Entry
        public var expectation: Expectation
    }

    /// A copy of a good model bundle with its manifest or weights changed, for
    /// `rstpmd --check-config` and `rstpm infer --model`.
    public struct BundleCase: Sendable {
        public var name: String
        /// Manifest key paths (`configuration.inputWidth`) and the raw JSON text put there
        /// (`1e400` and `NaN` included); nil removes the key.
        public var manifestFields: [(path: String, json: String?)] = []
        /// Replaces manifest.json.
        public var manifest: Entry?
        /// Replaces weights.safetensors.
        public var weights: Entry?
        public var expectation: Expectation
    }

    /// An rstpmd.yaml in a folder of its own (`@ROOT@`), which holds the folders of two lines,
    /// `inbox`, `work`, `outbox`, `archive`, `quarantine` and the same ending in `-b`, and
    /// `metrics`; `@MODEL@` is a good bundle.
    public struct ConfigurationCase: Sendable {
        public var name: String
        /// Bytes: some files are not UTF-8.
        public var yaml: [UInt8]
        /// More entries in the case's folder, by relative path.
        public var entries: [(path: String, entry: Entry)] = []
        /// When set, the case has its own teachers' folder (`@ROOT@/weights`) where this is the
        /// Lite0 teacher's file.
        public var lite0Teacher: Entry?
        public var expectation: Expectation
    }

    /// The folders every configuration case's folder holds.
    public static let configurationFolders = ["inbox", "work", "outbox", "archive", "quarantine", "inbox-b", "work-b", "outbox-b", "archive-b", "quarantine-b", "metrics"]
    /// The teachers' file names a good bundle names.
    public static let teacherFiles = ["efficientnet-lite0-57934424.pth", "efficientnet-lite2-9656183e.pth"]

    public var inbox: [InboxCase] = []
    public var checkpoints: [FileCase] = []
    public var wheels: [FileCase] = []
    public var bundles: [BundleCase] = []
    public var configurations: [ConfigurationCase] = []

    public var count: Int { inbox.count + checkpoints.count + wheels.count + bundles.count + configurations.count }

    /// Every case, the same for the same seed; the images start from the committed fixtures.
    public init(seed: UInt64 = 13) throws {
        var random = SplitMix64(state: seed)
        inbox = try Self.imageCases(&random) + Self.nameCases() + Self.entryCases() + Self.nonUTF8Cases()
        checkpoints = try Self.checkpointCases(&random)
        wheels = Self.wheelCases(&random)
        bundles = Self.bundleCases()
        configurations = Self.configurationCases()
    }

    // MARK: writing

    /// Lays the corpus out under `directory`: `outside/`, `inbox/<batch>/`, `checkpoints/`,
    /// `wheels/`, `bundles/<name>/` (copies of `bundle`, the weights hard-linked where they
    /// stay), `configurations/<name>/` (`rstpmd.yaml`, its folders, and `weights/` where the
    /// case has its own teachers, the others linked from `weights`), and `cases.txt`.
    public func write(to directory: URL, bundle: URL, weights: URL) throws {
        let manager = FileManager.default
        let outside = directory.appendingPathComponent("outside")
        try manager.createDirectory(at: outside.appendingPathComponent("folder"), withIntermediateDirectories: true)
        try Data(Self.smallPNG).write(to: outside.appendingPathComponent("image.png"))
        try Data(Self.smallPNG).write(to: outside.appendingPathComponent("folder/image.png"))
        try Data(Self.smallPNG).write(to: outside.appendingPathComponent("hard-link-target.png"))
        let substitutions = ["@OUTSIDE@": outside.path]

        for batch in Set(inbox.map(\.batch)) {
            try manager.createDirectory(at: directory.appendingPathComponent("inbox/\(batch)"), withIntermediateDirectories: true)
        }
        for item in inbox {
            try Self.place(item.entry, at: Array(directory.appendingPathComponent("inbox/\(item.batch)").path.utf8) + [0x2f] + item.name, substitutions)
        }
        for (folder, cases) in [("checkpoints", checkpoints), ("wheels", wheels)] {
            try manager.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
            for item in cases { try Self.place(item.entry, at: directory.appendingPathComponent("\(folder)/\(item.name)"), substitutions) }
        }
        for item in bundles {
            try writeBundle(item, to: directory.appendingPathComponent("bundles/\(item.name)"), from: bundle, substitutions)
        }
        for item in configurations {
            let root = directory.appendingPathComponent("configurations/\(item.name)")
            for folder in Self.configurationFolders { try manager.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true) }
            var local = substitutions
            local["@ROOT@"] = root.path
            local["@MODEL@"] = bundle.path
            for (path, entry) in item.entries { try Self.place(entry, at: root.appendingPathComponent(path), local) }
            try Data(Self.substitute(item.yaml, local)).write(to: root.appendingPathComponent("rstpmd.yaml"))
            if let teacher = item.lite0Teacher {
                let teachers = root.appendingPathComponent("weights")
                try manager.createDirectory(at: teachers, withIntermediateDirectories: true)
                try Self.place(teacher, at: teachers.appendingPathComponent(Self.teacherFiles[0]), local)
                try manager.createSymbolicLink(at: teachers.appendingPathComponent(Self.teacherFiles[1]), withDestinationURL: weights.appendingPathComponent(Self.teacherFiles[1]))
            }
        }
        try Data(listing().utf8).write(to: directory.appendingPathComponent("cases.txt"))
    }

    /// One line per case: kind, name (escaped where it is not plain), what must happen.
    public func listing() -> String {
        func describe(_ expectation: Expectation) -> String {
            switch expectation {
            case .accepted: return "accepted"
            case .refused(let text): return "refused (\(text))"
            case .either: return "accepted or refused"
            }
        }
        var lines = ["# \(count) cases: kind, name, expected outcome"]
        lines += inbox.map { "inbox/\($0.batch)\t\(Self.printable($0.name))\t\($0.outcome.rawValue)" }
        lines += checkpoints.map { "checkpoint\t\($0.name)\t\(describe($0.expectation))" }
        lines += wheels.map { "wheel\t\($0.name)\t\(describe($0.expectation))" }
        lines += bundles.map { "bundle\t\($0.name)\t\(describe($0.expectation))" }
        lines += configurations.map { "configuration\t\($0.name)\t\(describe($0.expectation))" }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A name for messages and listings: control and format characters and backslashes escaped
    /// as in a Swift literal; a name that is not UTF-8 with its bytes from 0x80 as `\x` escapes.
    public static func printable(_ name: [UInt8]) -> String {
        guard let text = String(validating: name, as: UTF8.self) else { return name.map { $0 < 0x80 ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined() }
        return text.unicodeScalars.map { [.control, .format].contains($0.properties.generalCategory) || $0 == "\\" ? $0.escaped(asASCII: true) : String($0) }.joined()
    }

    private func writeBundle(_ item: BundleCase, to folder: URL, from bundle: URL, _ substitutions: [String: String]) throws {
        let manager = FileManager.default
        try manager.createDirectory(at: folder, withIntermediateDirectories: true)
        let manifest = folder.appendingPathComponent("manifest.json"), weights = folder.appendingPathComponent("weights.safetensors")
        if let entry = item.manifest {
            try Self.place(entry, at: manifest, substitutions)
        } else {
            var text = try String(contentsOf: bundle.appendingPathComponent("manifest.json"), encoding: .utf8)
            for (path, json) in item.manifestFields { text = try Self.setting(path, to: json, in: text) }
            try Data(text.utf8).write(to: manifest)
        }
        if let entry = item.weights {
            try Self.place(entry, at: weights, substitutions)
        } else {
            // A hard link saves copying the weights, where the bundle is on the same file system.
            let original = bundle.appendingPathComponent("weights.safetensors")
            do { try manager.linkItem(at: original, to: weights) } catch { try manager.copyItem(at: original, to: weights) }
        }
    }

    /// The manifest text with the value at a dotted key path replaced by raw JSON text.
    static func setting(_ path: String, to json: String?, in text: String) throws -> String {
        guard var root = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw CorpusError("manifest is not an object") }
        let marker = "@@corpus-value@@"
        func set(_ keys: ArraySlice<Substring>, in object: inout [String: Any]) {
            let key = String(keys.first!)
            if keys.count == 1 {
                object[key] = json == nil ? nil : marker
            } else {
                var inner = object[key] as? [String: Any] ?? [:]
                set(keys.dropFirst(), in: &inner)
                object[key] = inner
            }
        }
        set(path.split(separator: ".")[...], in: &root)
        let written = String(decoding: try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
        return json.map { written.replacingOccurrences(of: "\"\(marker)\"", with: $0) } ?? written
    }

    static func substitute(_ bytes: [UInt8], _ substitutions: [String: String]) -> [UInt8] {
        var result = bytes
        for (placeholder, value) in substitutions {
            let pattern = Array(placeholder.utf8), replacement = Array(value.utf8)
            var output: [UInt8] = [], index = 0
            while index < result.count {
                if result[index...].starts(with: pattern) {
                    output += replacement
                    index += pattern.count
                } else {
                    output.append(result[index])
                    index += 1
                }
            }
            result = output
        }
        return result
    }

    static func place(_ entry: Entry, at url: URL, _ substitutions: [String: String]) throws {
        try place(entry, at: Array(url.path.utf8), substitutions)
    }

    /// Creates `entry` at a path given as raw bytes (names need not be UTF-8).
    static func place(_ entry: Entry, at path: [UInt8], _ substitutions: [String: String]) throws {
        let cPath = path + [0]
        func check(_ result: Int32, _ what: String) throws {
            guard result == 0 else { throw CorpusError("\(what) \(printable(path)): errno \(errno)") }
        }
        try cPath.withUnsafeBufferPointer { buffer in
            let pointer = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            switch entry {
            case .file(let bytes):
                try writeFile(bytes, at: pointer, size: bytes.count, path: path)
            case .sparseFile(let header, let size):
                try writeFile(header, at: pointer, size: size, path: path)
            case .symbolicLink(let target):
                try check(symlink(String(decoding: substitute(Array(target.utf8), substitutions), as: UTF8.self), pointer), "symlink")
            case .hardLink(let target):
                try check(link(String(decoding: substitute(Array(target.utf8), substitutions), as: UTF8.self), pointer), "link")
            case .fifo:
                try check(mkfifo(pointer, 0o644), "mkfifo")
            case .directory:
                try check(mkdir(pointer, 0o755), "mkdir")
            case .socket:
                try bindSocket(at: path)
            }
        }
    }

    private static func writeFile(_ bytes: [UInt8], at path: UnsafePointer<CChar>, size: Int, path raw: [UInt8]) throws {
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o644)
        guard descriptor >= 0 else { throw CorpusError("open \(printable(raw)): errno \(errno)") }
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count, ftruncate(descriptor, off_t(size)) == 0 else { throw CorpusError("write \(printable(raw)): errno \(errno)") }
    }

    /// A Unix socket bound at `path` (then closed: the entry stays, as a dead server's does).
    private static func bindSocket(at path: [UInt8]) throws {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw CorpusError("socket: errno \(errno)") }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { throw CorpusError("socket path too long: \(printable(path))") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard bound == 0 else { throw CorpusError("bind \(printable(path)): errno \(errno)") }
    }
}

public struct CorpusError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
